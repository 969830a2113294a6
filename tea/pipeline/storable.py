"""Values JSON can carry that some backend cannot store, refused before TEA acknowledges them.

U+0000 in any string (PostgreSQL's text and jsonb cannot hold it, and no query parameter may carry it,
so such an event could never be filtered), and numbers in ``attributes`` past the float range
(``1e999``: read back they would be infinite, which JSON cannot write). Typed columns refuse these at
decoding already; ``attributes`` is kept as raw JSON text, so it is checked here. The whole batch's
NDJSON is searched once (under 1 ms per MB); only a batch with a suspect is looked at event by event.
"""
from __future__ import annotations

import re
from typing import Any

import msgspec

from tea.scan import find_exponent

_NUL = b"\\u0000"
# an exponent of 300 or more: how a JSON float leaves the double range. A hit is a suspect only when it
# ends a number token (digits after ':', ',' or '['): an 'e' and digits inside a string — in nearly every
# hex trace or span id — are not. (A suspect is then decoded: the exact check.) A float spelled with more
# than 308 digits before its point is not searched for: a regular expression for it costs 60 ms a MB
_EXPONENT = re.compile(rb"[eE]\+?0*(?:[3-9][0-9]{2}|[1-9][0-9]{3})")
_MANTISSA = frozenset(b"0123456789.-")
_BEFORE_NUMBER = frozenset(b":,[")
_SPACE = frozenset(b" \t\r\n")


def _huge_number(data: Any) -> bool:
    """Whether ``data`` (bytes, or a buffer such as msgspec.Raw) holds a number past the float range."""
    if find_exponent(data) < 0:
        return False  # (a vector search for the e/E bytes: ~10x cheaper than the regular expression)
    data = bytes(data)
    for hit in _EXPONENT.finditer(data):
        i = hit.start() - 1
        while i >= 0 and data[i] in _MANTISSA:
            i -= 1
        if i == hit.start() - 1:
            continue  # (no digit before the 'e': a word)
        while i >= 0 and data[i] in _SPACE:
            i -= 1
        if i >= 0 and data[i] in _BEFORE_NUMBER:
            return True
    return False


def _may_hold_nul(ndjson: bytes) -> bool:
    """Whether ``ndjson`` may spell U+0000. (``find``, not ``in``: on bytes ``in`` first tries its operand as an
    integer, raising and clearing a TypeError each time in CPython 3.11 — 0.4 µs, once per request.)"""
    return ndjson.find(b"\\") >= 0 and ndjson.find(_NUL) >= 0


_ESCAPED_NUL = re.compile(rb'(?<!\\)(?:\\\\)*\\u0000')


def suspect(ndjson: bytes, numbers: bool = True) -> bool:
    """Whether the batch may hold an unstorable value (False: it holds none, but for the float above).
    ``numbers=False`` for NDJSON TEA encoded itself from typed values (the OTLP mappers): a finite double
    is written within the range, so only a NUL can be there."""
    return _may_hold_nul(ndjson) or (numbers and _huge_number(ndjson))


def joined_attributes(attributes: list[Any]) -> bytes:
    """Events' raw ``attributes`` in one buffer, each after a NUL byte but the first: the batch-wide searches
    (``suspect_events``, ``semconv.marked``, ``all_objects``) read it, joined once per request. JSON text
    never holds a raw NUL (a string spells it ``\\u0000``; decoding refuses the byte), so the NULs are the
    separators. (msgspec.Raw is a buffer, joined as it is.)"""
    return b"\x00".join(attributes)


def attributes_of(events: list[Any]) -> Any:
    """The raw ``attributes`` of ``events`` (decoded Events) as the batch-wide searches read them: a single event's
    as they are (msgspec.Raw, a buffer: nothing joined or copied for the request of one event), several events'
    joined (``joined_attributes``)."""
    if len(events) == 1:
        return events[0].attributes
    return joined_attributes([e.attributes for e in events])


_NOT_AN_OBJECT = re.compile(rb"\x00(?!\{)")  # a separator some other byte (or the end) follows


def all_objects(joined: bytes) -> bool:
    """Whether each attributes joined in ``joined`` starts as a JSON object (False: look at each). Exact even
    were a NUL inside some attributes: every separator is a NUL, so each is followed by an attributes' first
    byte. (One search: ~16 µs for a 1 000-event batch, where a look at each attributes costs ~90.)"""
    return joined[:1] == b"{" and _NOT_AN_OBJECT.search(joined) is None


def suspect_events(ndjson: bytes, attributes: Any) -> bool:
    """``suspect`` for events decoded from a client's JSON: a NUL anywhere in their NDJSON, or a number past
    the float range in their raw ``attributes`` (``attributes_of``: the one part decoding left unchecked)
    — searched there only, not through ids, times and typed columns."""
    return _may_hold_nul(ndjson) or _huge_number(attributes)


def refusal(line: bytes) -> tuple[str, str] | None:
    """Why the event encoded as ``line`` (one JSON object) cannot be stored, as (message, field), or None."""
    try:
        data = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return "a number in attributes is out of range (JSON has no infinity to read it back as)", "attributes"
    if _ESCAPED_NUL.search(line) is None:
        return None
    for key, value in data.items():
        if _has_nul(value):
            return f"`{key}` contains U+0000 (a NUL character), which TEA does not store", key
    return None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
