"""Byte-string probes over NDJSON: processors' ``wants_any`` and ``wants_lines``, the signal router's search for
metric and log lines, the ingestion screen's search for out-of-range numbers.

``contains_any`` searches with the native extension's ``find_any`` (glibc memmem, without the GIL from
256 KiB on) when it is built, so a writer batch of 200 000 spans (~200 MB) is scanned in a worker thread while
the event loop keeps serving requests; without the extension, Python's ``in`` (same answer, GIL held).
``find_exponent`` finds an exponent of three digits (the ingestion screen's test for a number past the float range)
with the extension's vector search for the e/E bytes, or a regular expression without it.
``select_lines`` finds the lines a processor's ``wants_lines`` picks with the extension's ``select_lines`` (the
chunks searched for the needles, only the lines they occur in bounded; without the GIL from 256 KiB on), or
splits and searches every line without it (same answer).
``group_lines`` regroups NDJSON lines by the value of a key (the DuckDB writer's lines by tenant) with the
extension's ``group_lines`` (without the GIL from 256 KiB on); without it the lines stay in their order.
"""
from __future__ import annotations

import re
from typing import Any

try:
    from tea._otlpfast import (find_any as _find_any, find_exponent as _find_exponent, group_lines as _group_lines,
                               select_lines as _select_lines)
except ImportError:  # the optional extension was not built
    _find_any = _find_exponent = _select_lines = _group_lines = None


def _find_any_py(data: Any, needles: tuple[bytes, ...]) -> int:
    for chunk in data if isinstance(data, list) else [data]:
        chunk = bytes(chunk)  # (any buffer: msgspec.Raw has no find)
        for needle in needles:
            at = chunk.find(needle)
            if at >= 0:
                return at
    return -1


# ``find_any(data, needles) >= 0``: whether any of ``needles`` occurs in ``data`` (``contains_any``, one Python
# call fewer where a request pays for each)
find_any = _find_any if _find_any is not None else _find_any_py


_THREE_DIGIT_EXPONENT = re.compile(rb"[eE]\+?[0-9]{3}")


def _find_exponent_py(data: Any) -> int:
    found = _THREE_DIGIT_EXPONENT.search(data)
    return -1 if found is None else found.start()


# ``find_exponent(data)``: where the first exponent of three digits or more (``[eE]+?[0-9]{3}``) starts in ``data``
# (bytes, or any buffer such as msgspec.Raw), or -1
find_exponent = _find_exponent if _find_exponent is not None else _find_exponent_py


def contains_any(data: bytes | list[bytes], needles: tuple[bytes, ...]) -> bool:
    """Whether any of ``needles`` occurs in ``data`` (bytes, or a list of chunks searched each on its own:
    a needle never spans two chunks of complete NDJSON lines)."""
    return find_any(data, needles) >= 0


def select_lines(chunks: list[bytes], required: bytes,
                 any_of: tuple[bytes, ...]) -> list[list[tuple[int, int, int]]]:
    """For each of ``chunks`` (NDJSON lines separated by b"\\n"), the ``(index, start, end)`` of each of its lines
    ``chunk[start:end]`` — the ``index``-th of ``chunk.split(b"\\n")`` — that holds ``required`` and any of
    ``any_of`` (so none when ``any_of`` is empty), in order."""
    if _select_lines is not None:
        return _select_lines(chunks, required, any_of)  # type: ignore[no-any-return]
    return _split_lines(chunks, required, any_of)


def _split_lines(chunks: list[bytes], required: bytes,
                 any_of: tuple[bytes, ...]) -> list[list[tuple[int, int, int]]]:
    """``select_lines`` without the extension: every line split out and searched."""
    found: list[list[tuple[int, int, int]]] = []
    for chunk in chunks:
        lines: list[tuple[int, int, int]] = []
        start = 0
        for index, line in enumerate(bytes(chunk).split(b"\n")):
            end = start + len(line)
            if required in line and any(needle in line for needle in any_of):
                lines.append((index, start, end))
            start = end + 1
        found.append(lines)
    return found


GROUP_MAX = 64  # more distinct values than this: the lines are left in their order (the extension's GROUP_MAX)


def group_lines(chunks: list[bytes], key: bytes) -> list[bytes]:
    """The NDJSON lines of ``chunks`` grouped by the string value that follows the first ``key`` in each line
    (``b'"tenant_id":"'``: up to the next unescaped quote, not unescaped), the lines without it a group of
    their own; groups in the order of their first line, each group's lines in order, each line ending with a
    newline. ``chunks`` themselves when their lines lie grouped already, hold more than GROUP_MAX values, or
    the extension is not built (line by line in Python, grouping costs ~2 µs a line: more than a DuckDB write
    saves by it). The extension is checked against ``fuzz.targets.group_lines_reference``."""
    grouped = _group_lines(chunks, key) if _group_lines is not None else None
    return chunks if grouped is None else grouped  # type: ignore[no-any-return]
