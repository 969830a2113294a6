"""What a client connection may cost, from the settings and the process's open-file limit.

Every accepted connection is a file descriptor. The buffer's segment files, the storage backend's
files and sockets, the writer and outbound calls (webhooks, JWKS, Redis) need descriptors too, and
when the process runs out, ``accept`` and ``open`` fail alike (``EMFILE``) — so ``tea serve`` raises
its soft limit toward the hard one at start, keeps ``fd_reserve`` descriptors out of the connection
bounds, and gives the HTTP ports three quarters of the rest and OTLP/gRPC one quarter.
"""
from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Raising the soft limit further costs nothing TEA needs: the connection bounds' defaults stop at
# HTTP_MAX_DEFAULT + GRPC_MAX_DEFAULT, a fraction of this.
OPEN_FILES_TARGET = 65536
HTTP_MAX_DEFAULT = 10_000   # × http.max_header_bytes (64 KiB) = 640 MiB at worst for partial headers
GRPC_MAX_DEFAULT = 2_500
LINGER_S = 1.0              # how long a refused connection's further bytes are read and dropped


def raise_open_files_limit(target: int = OPEN_FILES_TARGET) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``target`` or the hard limit, whichever is lower; never lower
    it. Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:  # e.g. a sandbox that refuses: run with what there is
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, want, exc)
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_files_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return OPEN_FILES_TARGET if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class EdgeLimits:
    """The HTTP edge's bounds (both HTTP ports share them)."""

    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    body_total_timeout_s: float
    max_connections: int
    # connections answered 503 while they linger (at most LINGER_S each); past these, closed unanswered
    max_refusing: int
    linger_s: float = LINGER_S

    @property
    def tick_s(self) -> float:
        """How often deadlines are checked: a timeout fires at most this late."""
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.body_total_timeout_s, self.linger_s)
        return min(max(shortest / 4, 0.02), 1.0)


def connection_bounds(settings: Any, open_files: int) -> tuple[int, int]:
    """(HTTP, OTLP/gRPC) connection bounds: the settings, or by default shares of the descriptors
    left after ``fd_reserve`` (HTTP's share leaves room for the connections it answers 503)."""
    spare = max(open_files - settings.fd_reserve, 0)
    http = settings.http.max_connections
    if http is None:
        http = max(16, min(HTTP_MAX_DEFAULT, spare * 3 // 4 * 15 // 16))
    grpc = settings.otlp.grpc_max_connections
    if grpc is None:
        grpc = max(4, min(GRPC_MAX_DEFAULT, spare // 4))
    return http, grpc


def edge_limits(settings: Any, open_files: int) -> EdgeLimits:
    http_max, _ = connection_bounds(settings, open_files)
    h = settings.http
    return EdgeLimits(h.max_header_bytes, h.header_timeout_s, h.body_timeout_s, h.body_total_timeout_s, http_max,
                      max_refusing=_refusing_bound(http_max))


def _refusing_bound(http_max: int) -> int:
    return max(8, http_max // 16)


def grpc_options(settings: Any, open_files: int) -> list[tuple[str, int]]:
    """grpcio server options with the same bounds as the HTTP edge: metadata (gRPC's headers) size,
    the connection handshake's deadline (a silent or trickling connection), connections, calls per
    connection, idle connections closed, and keepalive pings that find peers gone without a FIN."""
    _, grpc_max = connection_bounds(settings, open_files)
    metadata = settings.http.max_header_bytes
    return [("grpc.max_metadata_size", metadata),
            ("grpc.absolute_max_metadata_size", metadata),  # the same: no probabilistic band between the two
            ("grpc.server_handshake_timeout_ms", max(1, int(settings.http.header_timeout_s * 1000))),
            ("grpc.max_allowed_incoming_connections", grpc_max),
            ("grpc.max_concurrent_streams", settings.otlp.grpc_max_concurrent_streams),
            ("grpc.max_connection_idle_ms", max(1, int(settings.otlp.grpc_idle_timeout_s * 1000))),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000)]


def log_bounds(settings: Any, before: int, after: int) -> None:
    http_max, grpc_max = connection_bounds(settings, after)
    raised = f" (raised from {before})" if after != before else ""
    log.info("open-file limit %d%s: HTTP connections <= %d, OTLP/gRPC connections <= %d, %d kept in reserve",
             after, raised, http_max, grpc_max, settings.fd_reserve)
    needed = http_max + _refusing_bound(http_max) + (grpc_max if settings.otlp.grpc_port else 0) + settings.fd_reserve
    if needed > after:
        log.warning("the connection bounds (http.max_connections=%d, otlp.grpc_max_connections=%d) and "
                    "fd_reserve=%d need %d file descriptors, more than the open-file limit %d: at the bounds, "
                    "storage and the buffer may fail with 'Too many open files'", http_max, grpc_max,
                    settings.fd_reserve, needed, after)
