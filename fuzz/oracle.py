"""The differential oracle for tea._otlpfast.map_traces and map_metrics: one fuzz input, checked against the
Python path.

An input is one configuration byte and the body of an ExportTraceServiceRequest (``signal`` "traces") or an
ExportMetricsServiceRequest ("metrics"). The byte picks the caller (admin, a tenant, dev mode, a tenant TEA
refuses), the clock-skew limit, the default tenant and the source protocol, so the fuzzer explores them with
the bytes. What must hold, as the receiver relies on it (tea.receive.otlp.ingest_pb):

- the native mapper never crashes (the sanitizers watch the C side);
- whatever it handles, the protobuf runtime (upb) accepts: the receiver does not parse such a request;
- whatever it handles, it maps to exactly what ``pb_spans`` (``pb_metrics``) + ``Normaliser`` + ``encode_lines``
  store (NDJSON bytes, counts, timestamp range, refusals with their messages);
- whatever it declines, the receiver's fallback handles: upb refuses it (a 400) or the Python path maps it
  without an exception (an exception there would be a 500).

A broken rule raises ``Finding``; fuzz/run.py lets it escape, so libFuzzer saves the input as a crash.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tea.auth.principal import SCOPES, WRITE, Principal
from tea.pipeline.normalise import Normaliser
from tea.receive import otlp
from tea.receive.otlp_map import pb_spans
from tea.receive.otlp_signals import pb_metrics
from tea.types import encode_lines

NOW_US = 1_763_800_000_000_000  # the fuzz clock: fixed, so that every finding replays
PRINCIPALS = (Principal(tenant_id=None, scopes=frozenset(SCOPES)),                 # admin: tenant from resource
              Principal(tenant_id="acme", scopes=frozenset({WRITE})),              # a tenant's credential
              Principal(tenant_id=None, scopes=frozenset(SCOPES), method="dev"),   # dev mode
              Principal(tenant_id="_x", scopes=frozenset({WRITE})))                # a tenant TEA refuses
SKEWS_S = (86400.0, 1.0, 0.0, 3600.0)  # 0: no future limit
DEFAULT_TENANTS = ("default", "t\u00e9\"\\\x01")
SOURCE_PROTOCOLS = ("otlp", "otlp/\u00e9")
SIGNALS = {"traces": (ExportTraceServiceRequest, pb_spans),      # the request type, the Python mapper
           "metrics": (ExportMetricsServiceRequest, pb_metrics)}


class Finding(AssertionError):
    """The native mapper and the Python path disagree, or the fallback would fail."""


@dataclass(frozen=True)
class Config:
    principal: Principal
    normaliser: Normaliser
    source_protocol: str


def _configs() -> tuple[Config, ...]:
    out = []
    for byte in range(64):
        normaliser = Normaliser(default_tenant=DEFAULT_TENANTS[(byte >> 4) & 1],
                                max_future_skew_s=SKEWS_S[(byte >> 2) & 3], clock=lambda: NOW_US)
        out.append(Config(PRINCIPALS[byte & 3], normaliser, SOURCE_PROTOCOLS[(byte >> 5) & 1]))
    return tuple(out)


CONFIGS = _configs()


def config_of(data: bytes) -> tuple[Config, bytes]:
    """The configuration an input names (its first byte) and the request body (the rest)."""
    return CONFIGS[data[0] & 63], data[1:]


def native(config: Config, body: bytes, signal: str = "traces") -> tuple | None:
    mapped = otlp.map_native(config.normaliser, body, config.principal, config.source_protocol, signal)
    if mapped is None:
        return None
    return (mapped.ndjson, mapped.accepted, mapped.total, mapped.low, mapped.high,
            [(e.index, e.error, e.message, e.event_id, e.field) for e in mapped.errors])


def python(config: Config, message: Any, signal: str = "traces") -> tuple:
    """What the receiver stores without the native mapper: the calls of otlp.ingest + Ingestor.submit."""
    principal = config.principal
    events = list(SIGNALS[signal][1](message, principal.is_admin))
    only = principal.tenant_id if not principal.is_admin else None
    accepted, errors, low, high = config.normaliser(events, None, config.source_protocol, None, only, True)
    return (encode_lines(accepted) if accepted else b"", len(accepted), len(events), low, high,
            [(e.index, e.error, e.message, e.event_id, e.field) for e in errors])


def check(data: bytes, signal: str = "traces") -> bool | None:
    """Checks one input; returns whether the native mapper handled it (None: the input names no config)."""
    if not data:
        return None
    config, body = config_of(data)
    got = native(config, body, signal)
    try:
        message = SIGNALS[signal][0].FromString(body)
    except DecodeError as exc:
        if got is not None:
            raise Finding(f"the native mapper handled a request upb refuses ({exc})") from None
        return False
    try:
        expected = python(config, message, signal)
    except Exception as exc:
        raise Finding(f"the Python fallback fails on a request upb accepts: {exc!r}") from exc
    if got is not None and got != expected:
        raise Finding(describe(got, expected))
    return got is not None


def describe(got: tuple, expected: tuple) -> str:
    """The first difference, readably."""
    names = ("ndjson", "accepted", "total", "low", "high", "rejections")
    for name, a, b in zip(names, got, expected):
        if a == b:
            continue
        if name == "ndjson":
            for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())):
                if x != y:
                    return f"line {i} differs:\n native: {x[:2000]!r}\n python: {y[:2000]!r}"
            return f"ndjson differs in line count: native {len(a.splitlines())}, python {len(b.splitlines())}"
        return f"{name} differs: native {a!r}, python {b!r}"
    return "no difference"
