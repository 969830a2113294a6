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


def contains_any(data: bytes | list[bytes], needles: tuple[bytes, ...]) -> bool:
    """Whether any of ``needles`` occurs in ``data`` (bytes, or a list of chunks searched each on its own:
    a needle never spans two chunks of complete NDJSON lines)."""
    if _find_any is not None:
        return _find_any(data, needles) >= 0
    chunks = data if isinstance(data, list) else [data]
    return any(needle in chunk for needle in needles for chunk in chunks)
