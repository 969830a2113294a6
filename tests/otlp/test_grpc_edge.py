"""The OTLP/gRPC listener's edge, from the same settings as HTTP's: oversize metadata refused, silent
or trickling connections closed at the handshake deadline, connections past the bound closed."""
from __future__ import annotations

import socket

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

from tests.conftest import free_port, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def export(port: int, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            trace_grpc.TraceServiceStub(channel).Export(trace_svc.ExportTraceServiceRequest(), metadata=metadata,
                                                        timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def read_until_closed(sock: socket.socket, timeout_s: float = 15) -> bool:
    """True once the server closed the connection (what it sent is read and dropped); socket.timeout
    when it did not within ``timeout_s``."""
    sock.settimeout(timeout_s)
    while sock.recv(65536):
        pass
    return True


def test_grpc_metadata_past_http_max_header_bytes_is_refused(serve) -> None:
    port = free_port()
    serve(storage_backend="memory", otlp__grpc_port=port, http__max_header_bytes=16384)
    assert export(port, (("x-pad", "a" * 15_000),)) == grpc.StatusCode.OK
    assert export(port, (("x-pad", "a" * 32_768),)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert export(port, tuple((f"x-pad-{i}", "a" * 1000) for i in range(40))) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert export(port) == grpc.StatusCode.OK


def test_grpc_connections_that_never_finish_the_handshake_are_closed(serve) -> None:
    port = free_port()
    serve(storage_backend="memory", otlp__grpc_port=port, http__header_timeout_s=1.0)
    with socket.create_connection(("127.0.0.1", port)) as silent, \
            socket.create_connection(("127.0.0.1", port)) as trickling:
        trickling.sendall(PREFACE[:10])
        assert read_until_closed(silent) and read_until_closed(trickling)  # (1 s here; grpcio alone: 120 s)
    assert export(port) == grpc.StatusCode.OK


def test_grpc_connections_past_the_bound_are_closed(serve) -> None:
    port = free_port()
    serve(storage_backend="memory", otlp__grpc_port=port, otlp__grpc_max_connections=2,
          http__header_timeout_s=30.0)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    for sock in held:
        sock.sendall(PREFACE)
    with socket.create_connection(("127.0.0.1", port)) as third:
        assert read_until_closed(third)
    assert export(port) == grpc.StatusCode.UNAVAILABLE
    for sock in held:
        sock.close()
    assert wait_for(lambda: export(port), lambda code: code == grpc.StatusCode.OK) == grpc.StatusCode.OK
