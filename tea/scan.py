"""Byte-string probes over NDJSON: processors' ``wants_any``, the signal router's search for metric and log
lines, the ingestion screen's search for out-of-range numbers.

``contains_any`` searches with the native extension's ``find_any`` (glibc memmem, without the GIL from
256 KiB on) when it is built, so a writer batch of 200 000 spans (~200 MB) is scanned in a worker thread while
the event loop keeps serving requests; without the extension, Python's ``in`` (same answer, GIL held).
"""
from __future__ import annotations

try:
    from tea._otlpfast import find_any as _find_any
except ImportError:  # the optional extension was not built
    _find_any = None


def _find_any_py(data: bytes | list[bytes], needles: tuple[bytes, ...]) -> int:
    for chunk in data if isinstance(data, list) else [data]:
        for needle in needles:
            at = chunk.find(needle)
            if at >= 0:
                return at
    return -1


# ``find_any(data, needles) >= 0``: whether any of ``needles`` occurs in ``data`` (``contains_any``, one Python
# call fewer where a request pays for each)
find_any = _find_any if _find_any is not None else _find_any_py


def contains_any(data: bytes | list[bytes], needles: tuple[bytes, ...]) -> bool:
    """Whether any of ``needles`` occurs in ``data`` (bytes, or a list of chunks searched each on its own:
    a needle never spans two chunks of complete NDJSON lines)."""
    return find_any(data, needles) >= 0
