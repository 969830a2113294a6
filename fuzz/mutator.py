"""A protobuf-aware mutator for map_traces and map_metrics inputs (a configuration byte + an
ExportTraceServiceRequest or an ExportMetricsServiceRequest).

libFuzzer's byte mutations mostly break a length prefix, so most of what they make dies in the first
varint. This mutator knows the OTLP schema (the descriptors of the installed opentelemetry-proto) and
walks down from the request along a random path of sub-messages (a resource, a scope, a span or a metric and
its data point, an attribute, its value, ...), reading one message level at a time — what a level holds stays bytes until the walk enters
it, so a mutation costs the fields on the path, not the size of the input. At the level where it stops it
drops, repeats, swaps or grafts a field (sub-messages met in other inputs), gives a string, key, number or
timestamp a value the mapper treats specially, turns an attribute value into another kind or nests it
deeper, changes a field's number or wire type, or adds an unknown field; then it writes the path back with
correct lengths. Half of the time, and for anything it cannot read or that is large, it leaves the input to
libFuzzer's own byte mutator (``atheris.Mutate``), which is what finds the malformed wire data.
"""
from __future__ import annotations

import random
import struct

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = ExportTraceServiceRequest.DESCRIPTOR.full_name
METRICS_ROOT = ExportMetricsServiceRequest.DESCRIPTOR.full_name
ANY = "opentelemetry.proto.common.v1.AnyValue"
KV = "opentelemetry.proto.common.v1.KeyValue"
NOW_NS = 1_763_800_000_000_000_000
BYTE_SHARE = 0.5              # of the mutations left to libFuzzer's byte mutator
STRUCTURED_MAX_BYTES = 8192   # larger inputs: bytes only
DONORS_PER_TYPE = 64

KEYS = [b"http.request.method", b"http.method", b"http.route", b"url.path", b"http.target",
        b"http.response.status_code", b"http.status_code", b"rpc.grpc.status_code", b"rpc.system",
        b"mcp.method.name", b"gen_ai.tool.name", b"gen_ai.usage.input_tokens", b"gen_ai.usage.output_tokens",
        b"enduser.id", b"user.id", b"mcp.session.id", b"session.id", b"error.type", b"service.name", b"tenant.id",
        b"span.name", b"span.kind", b"scope", b"span.events", b"name", b"time_unix_nano", b"k", b""]
STRINGS = [b"", b"grpc", b"GET", b"_internal", b"acme", b"tools/call", b"\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80",
           b"a\"b\\c\n\x00\x1f\x7f", b"x" * 1030, b"\xc3\xa9" * 600, b"\xff", b"\xc0\x80", b"\xed\xa0\x80",
           b"\xf4\x90\x80\x80", b"\xe2\x80", b"\xf0\x9f\x98", b"True", b"12"]
VARINTS = [0, 1, 2, 3, 5, 6, 7, 200, 404, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]
FIXED64 = [0, 1, NOW_NS, NOW_NS - 10**9, NOW_NS + 2 * 10**9, NOW_NS + 2 * 86400 * 10**9, 2**63, 2**64 - 1,
           *(struct.unpack("<Q", struct.pack("<d", d))[0] for d in
             (0.0, -0.0, 1.5, 1e-5, 1.5e-5, 1e16, 1e300, 5e-324, float("nan"), float("inf"), -float("inf")))]

Field = list  # [number, wire type, int | bytes]: a sub-message's value stays its bytes


def _schema() -> dict[str, dict[int, str | None]]:
    """Per message type: field number -> the sub-message type (None for a scalar field)."""
    out: dict[str, dict[int, str | None]] = {}

    def walk(d: Descriptor) -> None:
        if d.full_name in out:
            return
        out[d.full_name] = {}
        for f in d.fields:
            sub = f.message_type if f.type == FieldDescriptor.TYPE_MESSAGE else None
            out[d.full_name][f.number] = sub.full_name if sub else None
            if sub:
                walk(sub)
    walk(ExportTraceServiceRequest.DESCRIPTOR)
    walk(ExportMetricsServiceRequest.DESCRIPTOR)
    return out


SCHEMA = _schema()
# packed repeated numbers (a histogram's bounds and counts, an exponential histogram's buckets): the wire type
# of their elements, per (message type, field number)
PACKED = {(name, f.number): 0 if f.type == FieldDescriptor.TYPE_UINT64 else 1
          for name in ("opentelemetry.proto.metrics.v1.HistogramDataPoint",
                       "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint.Buckets")
          for f in ExportMetricsServiceRequest.DESCRIPTOR.file.pool.FindMessageTypeByName(name).fields
          if f.is_repeated and f.type != FieldDescriptor.TYPE_MESSAGE}
_donors: dict[str, list[bytes]] = {}


# ------------------------------------------------------------------ one message level
def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            return value, at


def fields(data: bytes) -> list[Field]:
    """The fields of one message, not entering sub-messages."""
    out: list[Field] = []
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        wt = tag & 7
        if wt == 0:
            value, at = _varint(data, at)
        elif wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            if at + size > len(data):
                raise ValueError("truncated fixed")
            value, at = int.from_bytes(data[at:at + size], "little"), at + size
        elif wt == 2:
            n, at = _varint(data, at)
            if at + n > len(data):
                raise ValueError("truncated length")
            value, at = data[at:at + n], at + n
        else:
            raise ValueError("group or invalid wire type")
        out.append([tag >> 3, wt, value])
    return out


def _varint_bytes(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(fs: list[Field]) -> bytes:
    parts = []
    for number, wt, value in fs:
        parts.append(_varint_bytes((number << 3) | wt))
        if wt == 0:
            parts.append(_varint_bytes(value if isinstance(value, int) else 0))
        elif wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            parts.append(((value if isinstance(value, int) else 0) & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
        else:
            raw = value if isinstance(value, bytes) else b""
            parts.append(_varint_bytes(len(raw)))
            parts.append(raw)
    return b"".join(parts)


# ------------------------------------------------------------------ values worth trying
def any_value(rng: random.Random, depth: int = 0) -> bytes:
    """An AnyValue of a random kind: scalars, empty, arrays and key/value lists (nested a little)."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return encode([[1, 2, rng.choice(STRINGS)]])
    if kind == 1:
        return encode([[2, 0, rng.choice([0, 1, 2])]])
    if kind == 2:
        return encode([[3, 0, rng.choice(VARINTS)]])
    if kind == 3:
        return encode([[4, 1, rng.choice(FIXED64)]])
    if kind == 4:
        return encode([[7, 2, rng.choice(STRINGS)]])
    if kind == 5:
        return b""  # empty: None
    if kind in (6, 7):
        return encode([[5, 2, encode([[1, 2, any_value(rng, depth + 1)] for _ in range(rng.randrange(3))])]])
    return encode([[6, 2, encode([[1, 2, _key_value(rng.choice(KEYS), any_value(rng, depth + 1))]
                                  for _ in range(rng.randrange(3))])]])


def packed(wt: int, rng: random.Random) -> bytes:
    """A packed repeated field's bytes: a few varints (wire type 0) or 8-byte numbers (1), now and then cut."""
    if wt == 0:
        out = b"".join(_varint_bytes(rng.choice(VARINTS)) for _ in range(rng.randrange(6)))
    else:
        out = b"".join(rng.choice(FIXED64).to_bytes(8, "little") for _ in range(rng.randrange(6)))
    return out[:rng.randrange(len(out))] if out and rng.random() < 0.1 else out


def _key_value(key: bytes, value: bytes) -> bytes:
    return encode([[1, 2, key], [2, 2, value]])


def _nested(value: bytes, rng: random.Random) -> bytes:
    """The AnyValue ``value`` one level deeper, in an array or a key/value list."""
    if rng.random() < 0.5:
        return encode([[5, 2, encode([[1, 2, value]])]])
    return encode([[6, 2, encode([[1, 2, _key_value(rng.choice(KEYS), value)]])]])


def _remember(type_name: str, value: bytes, rng: random.Random) -> None:
    pool = _donors.setdefault(type_name, [])
    if len(pool) < DONORS_PER_TYPE:
        pool.append(value)
    elif rng.random() < 0.05:
        pool[rng.randrange(DONORS_PER_TYPE)] = value


# ------------------------------------------------------------------ mutations of one level
def _change_value(type_name: str, fs: list[Field], rng: random.Random) -> bool:
    if not fs:
        return False
    field = rng.choice(fs)
    number, wt, value = field
    sub = SCHEMA.get(type_name, {}).get(number)
    if wt == 2 and sub == ANY:
        field[2] = any_value(rng) if rng.random() < 0.7 else _nested(value, rng)
    elif wt == 2 and sub:
        pool = _donors.get(sub)
        if not pool:
            return False
        field[2] = rng.choice(pool)
    elif wt == 2 and (type_name, number) in PACKED:
        field[2] = packed(PACKED[type_name, number], rng)
    elif wt == 2:
        field[2] = rng.choice(KEYS if type_name == KV and number == 1 and rng.random() < 0.8 else STRINGS)
    elif wt == 0:
        field[2] = rng.choice(VARINTS)
    elif wt == 1:
        field[2] = rng.choice(FIXED64)
    else:
        field[2] = rng.getrandbits(32)
    return True


def _change_structure(type_name: str, fs: list[Field], rng: random.Random) -> bool:
    op = rng.randrange(6)
    if op == 0 and fs:  # drop
        del fs[rng.randrange(len(fs))]
    elif op == 1 and fs:  # repeat: a repeated singular field, a duplicate key
        fs.insert(rng.randrange(len(fs) + 1), list(rng.choice(fs)))
    elif op == 2 and len(fs) > 1:  # swap
        i, j = rng.randrange(len(fs)), rng.randrange(len(fs))
        fs[i], fs[j] = fs[j], fs[i]
    elif op == 3:  # graft a sub-message (from another input) of a type this message holds
        subs = [(n, t) for n, t in SCHEMA.get(type_name, {}).items() if t and _donors.get(t)]
        if not subs:
            return False
        number, sub = rng.choice(subs)
        fs.insert(rng.randrange(len(fs) + 1), [number, 2, rng.choice(_donors[sub])])
    elif op == 4 and fs:  # another field number or wire type
        field = rng.choice(fs)
        if rng.random() < 0.5:
            field[0] = rng.choice([*SCHEMA.get(type_name, {1: None}), field[0] + 1, 3, 16, 19])
        else:
            field[1] = rng.choice([0, 1, 2, 5])
            if field[1] != 2 and not isinstance(field[2], int):
                field[2] = rng.choice(VARINTS)
            elif field[1] == 2 and isinstance(field[2], int):
                field[2] = rng.choice(STRINGS)
    elif op == 5:  # an unknown field
        wt = rng.choice([0, 1, 2, 5])
        fs.insert(rng.randrange(len(fs) + 1), [rng.choice([17, 99, 1000, 2**29 - 1]), wt,
                                               rng.choice(STRINGS) if wt == 2 else rng.choice(VARINTS)])
    else:
        return False
    return True


def mutate_body(body: bytes, rng: random.Random, type_name: str = ROOT, depth: int = 0) -> bytes:
    """``body`` (a message of ``type_name``) with one change somewhere down a random path; ValueError when
    it is not readable as that message."""
    fs = fields(body)
    subs = [f for f in fs if f[1] == 2 and SCHEMA.get(type_name, {}).get(f[0])]
    for f in subs:
        _remember(SCHEMA[type_name][f[0]], f[2], rng)  # type: ignore[arg-type]
    if subs and depth < 40 and rng.random() < 0.75:
        field = rng.choice(subs)
        try:
            field[2] = mutate_body(field[2], rng, SCHEMA[type_name][field[0]], depth + 1)  # type: ignore[arg-type]
            return encode(fs)
        except ValueError:
            pass  # a sub-message that is not one: changed at this level instead
    if not (_change_value(type_name, fs, rng) if rng.random() < 0.5 else _change_structure(type_name, fs, rng)):
        _change_structure(type_name, fs, rng)
    return encode(fs)


def mutate(data: bytes, max_size: int, seed: int, root: str = ROOT) -> bytes:
    """One libFuzzer mutation of ``data`` (a configuration byte + a request of type ``root``)."""
    import atheris
    rng = random.Random(seed)
    if not data or len(data) > STRUCTURED_MAX_BYTES or rng.random() < BYTE_SHARE:
        return atheris.Mutate(data, max_size)
    config, body = data[:1], data[1:]
    if rng.random() < 0.05:
        config = bytes([rng.randrange(256)])
    try:
        for _ in range(1 + int(rng.expovariate(1.0))):
            body = mutate_body(body, rng, root)
    except (ValueError, RecursionError):
        return atheris.Mutate(data, max_size)
    out = config + body
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)
