"""tea._otlpfast fuzzed: the regressions the fuzzer found, its seeds through the differential oracle, and
short coverage-guided runs of every target under AddressSanitizer + UndefinedBehaviorSanitizer (fuzz/run.py).

The short runs need clang (scripts/test installs it) and atheris (the test extra); without them they skip,
or fail when TEA_REQUIRE_SERVICES=1. The long run and its last result: docs/development.md.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from fuzz import mutator, oracle, seeds, seeds_metrics
from fuzz.mutator import encode
from tea.receive import otlp
from tests.otlp.test_otlp import otel  # noqa: F401  (the fixture: a live server with OTLP/gRPC)

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = ROOT / "fuzz" / "regressions"
REQUIRE = os.environ.get("TEA_REQUIRE_SERVICES") == "1"

if not otlp.NATIVE_AVAILABLE:
    if REQUIRE:
        pytest.fail("tea._otlpfast is not built but TEA_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip("tea._otlpfast is not built", allow_module_level=True)

TRACE_ID, SPAN_ID = b"\x01" * 16, b"\x02" * 8
NOW_NS = oracle.NOW_US * 1000
BAD = b"\xf4\x90\x80\x80"  # past U+10FFFF: upb refuses it in any string field


def _request(scope: list, span: list, resource: list | None = None) -> bytes:
    """An ExportTraceServiceRequest from raw fields ([number, wire type, value]): repeated singular fields
    and the like, which the protobuf runtime cannot write."""
    span_fields = [[1, 2, TRACE_ID], [2, 2, SPAN_ID], [7, 1, NOW_NS - 10**9], [8, 1, NOW_NS], *span]
    scope_spans = [[1, 2, encode(scope)], [2, 2, encode(span_fields)]]
    resource_spans = [[1, 2, encode(resource or [])], [2, 2, encode(scope_spans)]]
    return encode([[1, 2, encode(resource_spans)]])


def _kv(key: bytes, value: list) -> bytes:
    return encode([[1, 2, key], [2, 2, encode(value)]])


# ------------------------------------------------------------------ regressions (each found by the fuzzer)
# A string field repeated, an invalid occurrence before a valid one: upb refuses the request (it checks every
# occurrence) and so must the native mapper; it checked only the last one, handled the request and stored it.
REPEATED_STRINGS = {
    "scope name": _request([[1, 2, BAD], [1, 2, b"lib"]], [[5, 2, b"op"]]),
    "span name": _request([[1, 2, b"lib"]], [[5, 2, BAD], [5, 2, b"op"]]),
    "status message": _request([[1, 2, b"lib"]], [[5, 2, b"op"], [15, 2, encode([[2, 2, BAD], [2, 2, b"ok"]])]]),
    "event name": _request([[1, 2, b"lib"]], [[5, 2, b"op"], [11, 2, encode([[2, 2, BAD], [2, 2, b"e"]])]]),
    "attribute key": _request([[1, 2, b"lib"]], [[5, 2, b"op"], [9, 2, encode([[1, 2, BAD], [1, 2, b"k"]])]]),
    "resource key": _request([[1, 2, b"lib"]], [[5, 2, b"op"]],
                             [[1, 2, encode([[1, 2, BAD], [1, 2, b"service.name"], [2, 2, encode([[1, 2, b"s"]])]])]]),
}


@pytest.mark.parametrize("case", sorted(REPEATED_STRINGS))
def test_an_invalid_string_before_a_valid_one_is_declined_as_upb_refuses_it(case: str) -> None:
    body = REPEATED_STRINGS[case]
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(body)
    for config in oracle.CONFIGS[:4]:
        assert oracle.native(config, body) is None, case
    fixed = body.replace(BAD, "éé".encode())  # the same request with valid text: handled, identical
    assert oracle.check(b"\x00" + fixed) is True, case


def _padded(value: int, size: int) -> bytes:
    """``value`` as a varint of ``size`` bytes (zero-padded: 0x80 continuation bytes, then 0x00)."""
    out = bytearray()
    for i in range(size):
        out.append((value >> (7 * i)) & 0x7F | (0x80 if i < size - 1 else 0))
    return bytes(out)


@pytest.mark.parametrize("where", ["tag", "length"])
def test_a_tag_or_length_longer_than_5_bytes_is_declined_as_upb_refuses_it(where: str) -> None:
    """upb reads tags and lengths as 32-bit varints of at most 5 bytes; the native mapper read them as 64-bit
    ones (up to 10 bytes) and handled a zero-padded 6-byte tag or length."""
    resource_spans = mutator.fields(_request([[1, 2, b"lib"]], [[5, 2, b"op"]]))[0][2]

    def body(size: int) -> bytes:
        tag = _padded(0x0A, size) if where == "tag" else b"\x0a"
        length = _padded(len(resource_spans), size) if where == "length" else bytes([len(resource_spans)])
        return tag + length + resource_spans
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(body(6))
    assert oracle.native(oracle.CONFIGS[0], body(6)) is None
    assert oracle.check(b"\x00" + body(5)) is True  # 5 bytes: both read it, identically


@pytest.mark.parametrize("value", [[[1, 2, b""]], [[7, 2, b""]]], ids=["string", "bytes"])
def test_an_empty_service_name_is_mapped_like_python(value: list) -> None:
    """``service.name`` "" (or empty bytes): an empty write into a buffer never grown was memcpy(NULL, src, 0)
    or NULL + 0 (UBSan, fuzz/regressions/map_traces/empty-*); the sanitized replay of the regressions covers
    the sanitizer side, this the output."""
    body = _request([[1, 2, b"lib"]], [[5, 2, b"op"]], [[1, 2, _kv(b"service.name", value)]])
    assert oracle.check(b"\x00" + body) is True
    assert b'"source":""' in oracle.native(oracle.CONFIGS[0], body)[0]


def test_the_regression_inputs_agree_with_the_python_path() -> None:
    files = sorted((REGRESSIONS / "map_traces").iterdir())
    assert len(files) >= 2
    for path in files:
        oracle.check(path.read_bytes())  # raises oracle.Finding on any difference


def _metrics_request(point: list) -> bytes:
    """An ExportMetricsServiceRequest of one exponential histogram point, from raw fields."""
    metric = encode([[1, 2, b"m"], [10, 2, encode([[1, 2, encode([[3, 1, NOW_NS], *point])]])]])
    return encode([[1, 2, encode([[2, 2, encode([[2, 2, metric]])]])]])


@pytest.mark.parametrize("where", ["scale", "bucket offset"])
def test_a_sint32_varint_with_bit_32_set_is_read_as_upb_reads_it(where: str) -> None:
    """A sint32 is the varint cut to 32 bits, then zigzag-decoded; the native mapper decoded first, then cut:
    with bit 32 set (a 10-byte varint) it wrote scale 0 where the Python path stores -2147483648
    (fuzz/regressions/map_metrics/sint32-*)."""
    for raw, expected in ((2**63 - 1, -(2**31)), (2**32 + 5, -3), (2**33, 0), (2**31, 2**30)):
        point = [[6, 0, raw]] if where == "scale" else [[8, 2, encode([[1, 0, raw], [2, 2, b"\x01"]])]]
        body = _metrics_request(point)
        parsed = ExportMetricsServiceRequest.FromString(body).resource_metrics[0].scope_metrics[0].metrics[0]
        got = parsed.exponential_histogram.data_points[0]
        assert (got.scale if where == "scale" else got.positive.offset) == expected
        assert oracle.check(b"\x00" + body, "metrics") is True, raw
        key = b'"scale":' if where == "scale" else b'"positive_offset":'
        assert key + str(expected).encode() + b"," in oracle.native(oracle.CONFIGS[0], body, "metrics")[0]


def test_the_metrics_regression_inputs_agree_with_the_python_path() -> None:
    """(The sanitized short run replays them too: an exponential histogram point without buckets, or with empty
    ones, was pointer arithmetic on NULL — UBSan.)"""
    files = sorted((REGRESSIONS / "map_metrics").iterdir())
    assert len(files) >= 4
    for path in files:
        assert oracle.check(path.read_bytes(), "metrics") is True, path.name


# ------------------------------------------------------------------ the seeds and the mutator
def test_every_seed_agrees_with_the_python_path_and_most_are_native() -> None:
    handled = [oracle.check(bytes([config]) + body) for body in seeds.bodies() for config in seeds.CONFIG_BYTES]
    assert len(handled) >= 100 and sum(1 for h in handled if h) >= 0.6 * len(handled)


def test_every_metrics_seed_agrees_with_the_python_path_and_most_are_native() -> None:
    handled = [oracle.check(bytes([config]) + body, "metrics")
               for body in seeds_metrics.bodies() for config in seeds.CONFIG_BYTES]
    assert len(handled) >= 60 and sum(1 for h in handled if h) >= 0.6 * len(handled)


@pytest.mark.parametrize("signal", ["traces", "metrics"])
def test_the_mutator_writes_readable_requests_that_differ(signal: str) -> None:
    rng = random.Random(1)
    source, request, root = ((seeds, ExportTraceServiceRequest, mutator.ROOT) if signal == "traces" else
                             (seeds_metrics, ExportMetricsServiceRequest, mutator.METRICS_ROOT))
    bodies = [b for b in source.bodies() if 0 < len(b) < mutator.STRUCTURED_MAX_BYTES]
    readable = changed = 0
    for i in range(600):
        body = bodies[i % len(bodies)]
        out = mutator.mutate_body(body, rng, root)
        changed += out != body
        try:
            request.FromString(out)
            readable += 1
        except DecodeError:
            pass
    assert changed >= 500 and readable >= 300, (changed, readable)


# ------------------------------------------------------------------ the sanitized, coverage-guided runs
def _fuzzer_ready() -> None:
    missing = [what for what, ok in (("clang", shutil.which("clang")), ("atheris", _has_atheris())) if not ok]
    if missing:
        reason = f"{' and '.join(missing)} not installed (scripts/test installs clang; atheris is in the test extra)"
        if REQUIRE:
            pytest.fail(reason + " but TEA_REQUIRE_SERVICES=1")
        pytest.skip(reason)


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _fuzz(tmp_path: Path, target: str, runs: int, *extra: str) -> str:
    _fuzzer_ready()
    done = subprocess.run([sys.executable, "-m", "fuzz.run", f"--target={target}", f"-runs={runs}", "-seed=1",
                           f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus"), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert f"Done {runs} runs" in out and "ERROR:" not in out and "runtime error" not in out, out[-6000:]
    assert not list(tmp_path.glob("crash-*")), out[-6000:]
    return out


@pytest.mark.timeout(900)
def test_a_short_fuzz_run_of_map_traces_finds_nothing(tmp_path: Path) -> None:
    """100 000 inputs (seeds, regressions, the kept corpus, then mutations) through the sanitized build and
    the differential oracle: no crash, no sanitizer report, no difference from the Python path."""
    out = _fuzz(tmp_path, "map_traces", 100_000, str(REGRESSIONS / "map_traces"))
    assert "Loaded 1 modules" in out and "cov: " in out  # the C code's coverage guided it


@pytest.mark.timeout(900)
def test_a_short_fuzz_run_of_map_metrics_finds_nothing(tmp_path: Path) -> None:
    """The same for the metrics mapper: 100 000 inputs of ExportMetricsServiceRequests."""
    out = _fuzz(tmp_path, "map_metrics", 100_000, str(REGRESSIONS / "map_metrics"))
    assert "Loaded 1 modules" in out and "cov: " in out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["find_any", "find_exponent", "format_double", "group_lines"])
def test_a_short_fuzz_run_of_the_other_entry_points_finds_nothing(tmp_path: Path, target: str) -> None:
    _fuzz(tmp_path, target, 50_000)


# ------------------------------------------------------------------ the Python path (the fallback's findings)
def _tokens_request(value: float) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=TRACE_ID, span_id=SPAN_ID, name="chat", start_time_unix_nano=NOW_NS - 10**9,
        end_time_unix_nano=NOW_NS)
    span.attributes.add(key="gen_ai.usage.input_tokens").value.double_value = value
    span.attributes.add(key="gen_ai.usage.output_tokens").value.int_value = 7
    return request


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 2.5])
def test_token_counts_that_are_not_finite_are_not_counted(value: float) -> None:
    """``int(nan)`` raised in the Python mapper (a 500 for the request); the native mapper leaves float token
    counts to it. A finite float counts, truncated, as before."""
    body = _tokens_request(value).SerializeToString()
    assert oracle.check(b"\x00" + body) is False  # declined by the native mapper, mapped by Python
    [event] = oracle.python(oracle.CONFIGS[0], ExportTraceServiceRequest.FromString(body))[0].splitlines()
    assert b'"tokens_used":%d' % (7 + (2 if value == 2.5 else 0)) in event


def test_a_span_with_nan_tokens_is_stored_over_http(otel) -> None:  # type: ignore[no-untyped-def]
    import time

    import httpx

    from tests.auth.conftest import bearer
    request = _tokens_request(float("nan"))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.start_time_unix_nano, span.end_time_unix_nano = time.time_ns() - 10**9, time.time_ns()
    r = httpx.post(otel.url + "/v1/traces", content=request.SerializeToString(),
                   headers={**bearer(otel.token), "content-type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    json_body = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "03" * 16, "spanId": "04" * 8, "name": "chat", "startTimeUnixNano": str(span.start_time_unix_nano),
        "endTimeUnixNano": str(span.end_time_unix_nano),
        "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"doubleValue": "NaN"}}]}]}]}]}
    r = httpx.post(otel.url + "/v1/traces", json=json_body, headers=bearer(otel.token))
    assert r.status_code == 200, r.text
    otel.wait_stored(2)
    events = httpx.get(otel.url + "/v1/events", params={"method": "chat"}, headers=bearer(otel.token)).json()["events"]
    assert sorted(e["tokens_used"] for e in events) == [0, 7]
