"""Decode request bodies into canonical events with per-item errors.

The common case — a well-formed batch — is decoded in one msgspec call. Only when that fails is
the batch decoded item by item, so that every bad item is reported with its index and field while
the good ones are still accepted (an ISO 8601 timestamp that is not RFC 3339, e.g. ``2024-01-15``,
is read then, off the hot path).

``max_batch_events`` bounds the work of a request: a body that could hold more than twice that many
events is counted before anything is built from it (a 20 MiB array of tiny events would otherwise become
a million structs, ~440 MB, just to be refused); a smaller one is decoded, then counted, which costs at
most twice a full batch and keeps the common batch free of a second pass.
"""
from __future__ import annotations

import re
from functools import lru_cache
from itertools import islice

import msgspec

from tea.errors import BadRequest, TooLarge, UnsupportedMediaType
from tea.http.body import check_utf8, decode
from tea.timeutil import parse_iso
from tea.types import Decoded, Event, ItemError

JSON_TYPES = frozenset({"application/json", "text/json", ""})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"})

_batch = msgspec.json.Decoder(list[Event])
_single = msgspec.json.Decoder(Event)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any = msgspec.json.Decoder()
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_PATH = re.compile(r" - at `\$(?:\[\d+\])?\.?([^`]*)`$")
_NON_BLANK_LINE = re.compile(rb"\S[^\n]*")
_encoder = msgspec.json.Encoder()
_string = msgspec.json.Decoder(str)
# the shortest JSON array item that can decode into an Event
_MIN_EVENT_BYTES = len(b'{"event_type":"x"},')


class _IdProbe(msgspec.Struct):
    event_id: str | None = None


_id_probe = msgspec.json.Decoder(_IdProbe)



def decode_json(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    """Decode with syntax and nesting errors mapped to 400 ``invalid_json``."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply", code="invalid_json") from None


def decode_events(body: bytes, media_type: str, max_events: int) -> Decoded:
    if not body or body.isspace():  # (not strip(): that copies every NDJSON body for its last newline)
        raise BadRequest("request body is empty", code="empty_body")
    if media_type in NDJSON_TYPES:
        if _roomy(body, max_events) and body.count(b"\n") >= max_events:  # count before splitting
            if next(islice(_NON_BLANK_LINE.finditer(body), max_events, None), None) is not None:
                raise _too_many(max_events)
        items = [line for line in body.split(b"\n") if line.strip()]
        try:
            check_utf8(body)
        except BadRequest:
            return _decode_items(items, max_events)  # report the bad lines, keep the good ones
        return _decode_array(b"[" + b",".join(items) + b"]", max_events, items)
    check_utf8(body)
    if media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type!r}; send application/json or application/x-ndjson")
    first = body.lstrip()[:1]
    if first == b"[":
        return _decode_array(body, max_events)
    if first == b"{":
        try:
            return Decoded([_single.decode(body)], None, [], 1)  # the common case: one valid event
        except (msgspec.DecodeError, RecursionError):
            pass  # an envelope, or a bad event: find out which below
        keys = decode_json(_raw_object, body)
        if set(keys) == {"events"}:
            inner = bytes(keys["events"])
            if inner.lstrip()[:1] != b"[":
                raise BadRequest("`events` must be an array", code="invalid_json", details={"field": "events"})
            return _decode_array(inner, max_events)
        return _decode_items([body], max_events)
    raise BadRequest("body must be a JSON object, an array of objects, or {\"events\": [...]}",
                     code="invalid_json")


def _decode_array(body: bytes, max_events: int, lines: list[bytes] | None = None) -> Decoded:
    """A JSON array of events; with ``lines`` (NDJSON), body is those lines joined into an array."""
    try:
        if lines is None and _roomy(body, max_events):
            events = _leading(_first_items(Event, max_events).decode(body))  # builds at most one too many
        else:
            events = _batch.decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass  # a bad item (or bad syntax, which decode_json below reports for the whole body)
    else:
        if len(events) > max_events:
            raise _too_many(max_events)
        if not events:
            raise BadRequest("the batch holds no events", code="empty_batch")
        return Decoded(events, None, [], len(events))
    # item by item, so every bad item is reported and the good ones kept (NDJSON: line by line)
    if lines is None:
        lines = raw_items(body, max_events, decode_json)
    return _decode_items(lines, max_events)


def _decode(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    return decoder.decode(body)


def raw_items(body: bytes, max_items: int, decode=_decode) -> list[msgspec.Raw]:  # type: ignore[no-untyped-def]
    """A JSON array's items, unparsed — at most ``max_items + 1`` of them, so a caller refusing more than
    ``max_items`` never builds the rest of a huge array. Bad syntax raises ``msgspec.DecodeError`` (with
    ``decode=decode_json``: the 400 ``invalid_json``)."""
    if _roomy(body, max_items):
        return _leading(decode(_first_items(msgspec.Raw, max_items), body))
    return decode(_raw_list, body)


def _roomy(body: bytes, max_events: int) -> bool:
    """Whether ``body`` could hold more than twice ``max_events`` events: then it is counted before decoding."""
    return len(body) >= 2 * _MIN_EVENT_BYTES * (max_events + 1)


@lru_cache(maxsize=8)
def _first_items(item: type, max_events: int) -> msgspec.json.Decoder:
    """Decodes a JSON array into its first ``max_events + 1`` items of type ``item``; the rest are skipped,
    never built, so refusing 20 MiB of ``{},`` (7 M items) costs one scan and no memory. It is an
    ``array_like`` Struct with a field per item: msgspec skips the trailing items of such a Struct."""
    fields = [(f"i{n}", item, None) for n in range(max_events + 1)]
    return msgspec.json.Decoder(msgspec.defstruct("FirstItems", fields, array_like=True, gc=False))


def _leading(first: msgspec.Struct) -> list:
    """The items a FirstItems holds: the fields set come first (an item is never None: a JSON null is an
    invalid Event, or a Raw), so find where the unset ones start."""
    values = msgspec.structs.astuple(first)
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if values[middle] is None:
            high = middle
        else:
            low = middle + 1
    return list(values[:low])


def prepare(max_events: int) -> None:
    """Build the decoders for ``max_events`` at start-up (~0.1 s at 10 000) rather than on a request."""
    _first_items(Event, max_events)
    _first_items(msgspec.Raw, max_events)


def _decode_items(items: list, max_events: int) -> Decoded:
    if len(items) > max_events:
        raise _too_many(max_events)
    if not items:
        raise BadRequest("the batch holds no events", code="empty_batch")
    events: list[Event] = []
    indexes: list[int] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(items):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(ItemError(index, "invalid_utf8", f"not valid UTF-8 (byte {exc.start})"))
            continue
        try:
            event = decode(_single, raw)
        except msgspec.ValidationError as exc:
            event, exc = _retry_iso_timestamp(raw, exc)
            if event is None:
                errors.append(ItemError(index, "invalid_event", _message(exc), _event_id(raw), error_field(exc)))
                continue
        except (msgspec.DecodeError, RecursionError) as exc:
            text = "JSON is nested too deeply" if isinstance(exc, RecursionError) else f"invalid JSON: {exc}"
            errors.append(ItemError(index, "invalid_json", text, None))
            continue
        events.append(event)
        indexes.append(index)
    return Decoded(events, indexes, errors, len(items))


def _too_many(max_events: int) -> TooLarge:
    return TooLarge(f"batch holds more than {max_events} events (max_batch_events)",
                    code="too_many_events", details={"max_batch_events": max_events})


def iso_timestamp(raw: bytes | msgspec.Raw) -> bytes | None:
    """``raw`` (a JSON object) with its string ``timestamp`` read as a query parameter is: any ISO 8601 form
    (``2024-01-15``, ``2024-01-15T10:30Z``, ``20240115T103000Z`` …) rewritten to the RFC 3339 msgspec decodes,
    digits to epoch milliseconds. None when it is no such string. Only called after a decode failed."""
    try:
        fields = _raw_object.decode(raw)
        text = _string.decode(fields["timestamp"]).strip()
        value = int(text) if text.lstrip("-").isdigit() else parse_iso(text).isoformat()
    except (msgspec.DecodeError, RecursionError, KeyError, ValueError):
        return None
    fields["timestamp"] = msgspec.Raw(_encoder.encode(value))
    return _encoder.encode(fields)


def _retry_iso_timestamp(raw: bytes | msgspec.Raw, exc: msgspec.ValidationError,
                         ) -> tuple[Event | None, msgspec.ValidationError]:
    """The event, when only its timestamp's ISO 8601 form failed; else None and the error to report."""
    rewritten = iso_timestamp(raw) if error_field(exc) == "timestamp" else None
    if rewritten is None:
        return None, exc
    try:
        return decode(_single, rewritten), exc
    except msgspec.ValidationError as other:  # another field is bad too
        return None, other


def _message(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    if _UNKNOWN.search(text):
        return text + "; put custom data under `attributes`"
    name = error_field(exc)
    return _PATH.sub("", text) + (f" (field `{name}`)" if name else "")


def error_field(exc: msgspec.ValidationError) -> str | None:
    """The field a msgspec validation error names: an unknown field, or the path it happened at."""
    text = str(exc)
    unknown = _UNKNOWN.search(text)
    if unknown:
        return unknown.group(1)
    match = _PATH.search(text)
    return (match.group(1) or None) if match else None


def _event_id(raw: bytes | msgspec.Raw) -> str | None:
    try:
        return _id_probe.decode(raw).event_id
    except (msgspec.DecodeError, RecursionError):
        return None
