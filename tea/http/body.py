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
