"""Decode request bodies into canonical events with per-item errors.

The common case — a well-formed batch — is decoded in one msgspec call. Only when that fails is
the batch decoded item by item, so that every bad item is reported with its index and field while
the good ones are still accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec

from tea.errors import BadRequest, TooLarge, UnsupportedMediaType
from tea.pipeline.normalise import ItemError
from tea.types import Event

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


class _IdProbe(msgspec.Struct):
    event_id: str | None = None


_id_probe = msgspec.json.Decoder(_IdProbe)


@dataclass
class Decoded:
    events: list[Event]
    indexes: list[int] | None  # None when events[i] is item i (no item failed to decode)
    errors: list[ItemError] = field(default_factory=list)
    total: int = 0


def check_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})", code="invalid_utf8") from None


def decode_json(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    """Decode with syntax and nesting errors mapped to 400 ``invalid_json``."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply", code="invalid_json") from None


def decode_events(body: bytes, media_type: str, max_events: int) -> Decoded:
    if not body.strip():
        raise BadRequest("request body is empty", code="empty_body")
    if media_type in NDJSON_TYPES:
        items = [line for line in body.split(b"\n") if line.strip()]
        _check_count(len(items), max_events)
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
        events = _batch.decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass  # a bad item (or bad syntax, which decode_json below reports for the whole body)
    else:
        _check_count(len(events), max_events)
        if not events:
            raise BadRequest("the batch holds no events", code="empty_batch")
        return Decoded(events, None, [], len(events))
    # item by item, so every bad item is reported and the good ones kept (NDJSON: line by line)
    return _decode_items(lines if lines is not None else decode_json(_raw_list, body), max_events)


def _decode_items(items: list, max_events: int) -> Decoded:
    _check_count(len(items), max_events)
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
            event = _single.decode(raw)
        except msgspec.ValidationError as exc:
            errors.append(ItemError(index, "invalid_event", _message(exc), _event_id(raw), error_field(exc)))
            continue
        except (msgspec.DecodeError, RecursionError) as exc:
            text = "JSON is nested too deeply" if isinstance(exc, RecursionError) else f"invalid JSON: {exc}"
            errors.append(ItemError(index, "invalid_json", text, None))
            continue
        events.append(event)
        indexes.append(index)
    return Decoded(events, indexes, errors, len(items))


def _check_count(count: int, max_events: int) -> None:
    if count > max_events:
        raise TooLarge(f"batch holds {count} events; max_batch_events is {max_events}",
                       code="too_many_events", details={"max_batch_events": max_events, "events": count})


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
