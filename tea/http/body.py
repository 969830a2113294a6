"""Request bodies checked the same way everywhere: UTF-8, and a JSON object where one is expected."""
from __future__ import annotations

from typing import Any

import msgspec

from tea.errors import BadRequest

_json_object = msgspec.json.Decoder(dict[str, Any])


def check_utf8(body: bytes) -> None:
    if body.isascii():  # the common case, checked without building a str as big as the body
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})", code="invalid_utf8") from None


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: 400 ``empty_body``, ``invalid_utf8`` or ``invalid_json`` otherwise."""
    if not body.strip():
        raise BadRequest("request body is empty", code="empty_body")
    check_utf8(body)
    try:
        return _json_object.decode(body)
    except msgspec.ValidationError:
        raise BadRequest("body must be a JSON object", code="invalid_json") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None


def pop_text(body: dict[str, Any], name: str) -> str | None:
    """``body[name]`` removed from ``body``: a string, or None when absent or null (400 otherwise)."""
    value = body.pop(name, None)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"`{name}` must be a string", code="invalid_field", details={"field": name})
    return value


_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_EXACT_FLOAT = 2**53  # past this a float may not spell the integer it stands for


def decode(decoder: msgspec.json.Decoder, body: bytes | msgspec.Raw) -> Any:
    """``decoder.decode(body)``, reading a whole number written with a fraction (``2.0``) where an integer
    is expected as that integer: JSON Schema (and so the OpenAPI document) counts ``2.0`` as an integer.
    The second decode runs only after the first failed on such a number."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise
        rewritten = whole_numbers(body)
        if rewritten is None:
            raise
        return decoder.decode(rewritten)


def whole_numbers(body: bytes | msgspec.Raw) -> bytes | None:
    """``body`` (JSON) with its whole floats written as integers; None when it has none."""
    try:
        value = _any.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    changed = [False]

    def walk(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer() and -_EXACT_FLOAT <= item <= _EXACT_FLOAT:
            changed[0] = True
            return int(item)
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    try:
        value = walk(value)
    except RecursionError:
        return None
    return _encoder.encode(value) if changed[0] else None
