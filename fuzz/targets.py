"""The fuzz targets over tea._otlpfast's entry points, each with its oracle.

- ``map_traces``: an ExportTraceServiceRequest body behind a configuration byte, through the receiver's
  ``map_native`` and checked against the Python path (fuzz/oracle.py); a protobuf-aware mutator.
- ``map_metrics``: the same for an ExportMetricsServiceRequest (fuzz/seeds_metrics.py), the same mutator
  walking the metrics schema.
- ``find_any``: buffers and needles; the index found must name a needle that occurs (the earliest one when
  the needles are searched together), -1 only when none does.
- ``find_exponent``: a buffer; where the first exponent of three digits starts, as the regular expression finds it.
- ``format_double``: 8 bytes as a double, written exactly as msgspec writes it.
- ``group_lines``: a key and NDJSON-like chunks; the lines grouped exactly as ``group_lines_reference`` groups them.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
KEPT = ROOT / "fuzz" / "corpus"        # the minimized corpus kept in git (fuzz/README in docs/development.md)
WORK = ROOT / "build" / "fuzz"
ARTIFACTS = WORK / "artifacts"     # crash-<sha1>, timeout-..., oom-...: what to replay and keep as a regression


def map_traces_one(data: bytes) -> None:
    from fuzz import oracle
    oracle.check(data)


def map_metrics_one(data: bytes) -> None:
    from fuzz import oracle
    oracle.check(data, "metrics")


def find_any_one(data: bytes) -> None:
    """data: [needle count][flags][needle lengths...][text]; flags bit 0: the text as a list of chunks."""
    from tea import _otlpfast
    if len(data) < 2:
        return
    k, as_list, at = data[0] % 10, data[1] & 1, 2
    lengths = list(data[at:at + k])
    at += k
    needles = []
    for n in lengths:
        needles.append(data[at:at + n % 12])
        at += n % 12
    text = data[at:]
    chunks = [text[i:i + 37] for i in range(0, len(text), 37)] or [b""] if as_list else [text]
    found = _otlpfast.find_any(chunks if as_list else text, tuple(needles))
    occurs = [any(n in c for c in chunks) for n in needles]
    if found == -1:
        assert not any(occurs), (needles, chunks)
        return
    assert 0 <= found < k and occurs[found], (found, needles, chunks)
    if 2 <= k <= 8 and all(needles):  # searched together: the earliest occurrence in the first chunk with one
        chunk = next(c for c in chunks if any(n in c for n in needles))
        assert chunk.find(needles[found]) == min(chunk.find(n) for n in needles if n in chunk), (found, needles)


def find_exponent_one(data: bytes) -> None:
    import re

    from tea import _otlpfast
    found = re.search(rb"[eE]\+?[0-9]{3}", data)
    assert _otlpfast.find_exponent(data) == (found.start() if found else -1), data


def format_double_one(data: bytes) -> None:
    import msgspec

    from tea import _otlpfast
    if len(data) < 8:
        return
    x = struct.unpack("<d", data[:8])[0]
    assert _otlpfast.format_double(x) == msgspec.json.encode(x), x


def group_lines_one(data: bytes) -> None:
    """data: [key length][chunk length][key][text], the text cut into chunks of that length (1-64 bytes)."""
    from tea import _otlpfast
    if len(data) < 2:
        return
    key_len, size = 1 + data[0] % 16, 1 + data[1] % 64
    key, text = data[2:2 + key_len], data[2 + key_len:]
    if len(key) < key_len:
        return
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    if b"\n" in key:
        try:
            _otlpfast.group_lines(chunks, key)
        except ValueError:
            return
        raise AssertionError(f"a key with a newline was taken: {key!r}")
    assert _otlpfast.group_lines(chunks, key) == group_lines_reference(chunks, key), (key, chunks)


_VALUE_END = re.compile(rb'(?:[^"\\]|\\.)*"', re.S)


def group_lines_reference(chunks: list[bytes], key: bytes) -> list[bytes] | None:
    """What the extension's ``group_lines`` answers (None: the lines as they are), line by line in Python."""
    from tea import scan
    groups: dict[bytes | None, list[bytes]] = {}
    runs, last = 0, object()
    for chunk in chunks:
        text = bytes(chunk)
        lines = text.split(b"\n")
        if text.endswith(b"\n") or not text:
            lines.pop()  # (after the last newline: no line)
        for line in lines:
            at = line.find(key)
            end = _VALUE_END.match(line, at + len(key)) if at >= 0 else None
            value = line[at + len(key):end.end() - 1] if end is not None else None
            if value not in groups:
                if len(groups) == scan.GROUP_MAX:
                    return None
                groups[value] = []
            groups[value].append(line + b"\n")
            runs += value != last
            last = value
    if runs <= len(groups):
        return None
    return [b"".join(lines) for lines in groups.values()]


def _map_traces_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    from fuzz.mutator import mutate
    return mutate(data, max_size, seed)


def _map_metrics_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    from fuzz.mutator import METRICS_ROOT, mutate
    return mutate(data, max_size, seed, METRICS_ROOT)


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[bytes, int, int], bytes] | None]] = {
    "map_traces": (map_traces_one, _map_traces_mutator),
    "map_metrics": (map_metrics_one, _map_metrics_mutator),
    "find_any": (find_any_one, None),
    "find_exponent": (find_exponent_one, None),
    "format_double": (format_double_one, None),
    "group_lines": (group_lines_one, None),
}


def seed_dir(target: str) -> Path:
    """The seeds, written afresh (map_traces: fuzz/seeds.py, map_metrics: fuzz/seeds_metrics.py; the others
    start from nothing)."""
    directory = WORK / "seeds" / target
    if target == "map_traces":
        from fuzz.seeds import write
        write(directory)
    elif target == "map_metrics":
        from fuzz import seeds_metrics
        seeds_metrics.write(directory)
    else:
        directory.mkdir(parents=True, exist_ok=True)
    return directory


def corpus(given: list[str], target: str) -> list[str]:
    """The corpus directories: the first one takes new inputs; seeds and the kept corpus are read.
    Files given (a crash to replay) are run as they are."""
    if any(Path(g).is_file() for g in given):
        return given
    work = Path(given[0]) if given else WORK / "corpus" / target
    work.mkdir(parents=True, exist_ok=True)
    dirs = [str(work), *given[1:], str(seed_dir(target))]
    if (KEPT / target).is_dir():
        dirs.append(str(KEPT / target))
    return dirs


def default_flags(target: str, given: list[str]) -> list[str]:
    """libFuzzer flags unless given: the dictionary, the input size, a per-input timeout, final stats."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    defaults = {"-max_len": "16384", "-timeout": "20", "-rss_limit_mb": "4096", "-print_final_stats": "1",
                "-artifact_prefix": f"{ARTIFACTS}/"}
    if target in ("map_traces", "map_metrics"):
        defaults["-dict"] = str(ROOT / "fuzz" / "otlp.dict")
    if target in ("find_any", "find_exponent"):  # long texts from the start: the 16-lane loops need 16 bytes and more
        defaults.update({"-max_len": "4096", "-len_control": "0"})
    named = {f.split("=", 1)[0] for f in given}
    return [f"{k}={v}" for k, v in defaults.items() if k not in named]
