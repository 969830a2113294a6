"""MCP and GenAI semantic conventions → promoted columns, one set of rules for every receiver.

* ``tool`` ← ``gen_ai.tool.name``; ``model`` ← ``gen_ai.request.model`` (else ``gen_ai.response.model``);
  ``input_tokens`` / ``output_tokens`` ← ``gen_ai.usage.input_tokens`` / ``output_tokens`` (whole
  numbers >= 0; a float counts as its integer part, as for ``tokens_used``).
* the JSON-RPC error code — ``rpc.jsonrpc.error_code`` (an integer), else ``rpc.response.status_code``
  or ``error.type`` written as a negative integer ("-32602") — is the ``status_code`` when no HTTP/gRPC
  code is, and makes the status ``error`` when the span (or event) gave none.
* ``method`` ← ``mcp.method.name`` and ``session_id`` ← ``mcp.session.id`` (OTLP's span mapping does
  these itself, with its HTTP and span-name fallbacks).

OTLP spans are mapped in tea/receive/otlp_map.py (and tea/_otlpfast.c, byte for byte); events of the
other receivers (native, the seed TEA's README shape, the FTL gateway) carry the same keys in their
attributes / metadata and get the same columns from ``lift`` in the Normaliser.
"""
from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from tea.scan import find_any
from tea.types import COUNT_MAX, INT32_MAX, INT32_MIN, Event

JSONRPC_KEYS = ("rpc.jsonrpc.error_code", "rpc.response.status_code", "error.type")
_CODE = re.compile(r"-[0-9]{1,9}")  # (ASCII digits only: the native mapper reads exactly these)
# a key any rule reads: one C-level search per event, over the attributes' bytes as they are (no copy)
_MARKER_KEYS = (b'"gen_ai.', b'"mcp.', b'"rpc.', b'"error.type"')  # (find_any's needles over a batch)
_MARKERS = re.compile(b"|".join(re.escape(key) for key in _MARKER_KEYS))  # (the same keys, searched in one event)
_decode = msgspec.json.Decoder(dict[str, Any])


def jsonrpc_code(attrs: dict[str, Any]) -> int | None:
    for key in JSONRPC_KEYS:
        value = attrs.get(key)
        if type(value) is int and key == JSONRPC_KEYS[0] and INT32_MIN <= value <= INT32_MAX:
            return value
        if type(value) is str and _CODE.fullmatch(value):
            return int(value)
    return None


def token_count(value: Any) -> int | None:
    if type(value) is int:
        return value if 0 <= value <= COUNT_MAX else None
    if type(value) is float and math.isfinite(value) and 0 <= value < 2**63:
        return int(value)
    return None


def text(value: Any) -> str | None:
    return None if value is None else str(value)[:1024]


def token_sum(input_tokens: int | None, output_tokens: int | None) -> int:
    """``tokens_used`` of two token counts (either may be absent): their sum, at most what the column holds."""
    return min((input_tokens or 0) + (output_tokens or 0), COUNT_MAX)


def genai(attrs: dict[str, Any]) -> tuple[str | None, str | None, int | None, int | None]:
    """(tool, model, input_tokens, output_tokens) of a span's or event's attributes."""
    return (text(attrs.get("gen_ai.tool.name")),
            text(attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model")),
            token_count(attrs.get("gen_ai.usage.input_tokens")), token_count(attrs.get("gen_ai.usage.output_tokens")))


def marked(attributes: Any) -> bool:
    """Whether any of a batch's raw attributes (as ``tea.pipeline.storable.attributes_of`` gives them) may hold
    a key ``lift`` reads: one search over them all (False: ``lift`` would change none of their events). A
    vector search for each key: ~5x cheaper than the regular expression over a batch's attributes, which
    stops at every quote."""
    return find_any(attributes, _MARKER_KEYS) >= 0


def lift(event: Event) -> None:
    """Fill the columns an event left empty from the conventions' keys in its attributes (in place)."""
    raw = event.attributes
    if _MARKERS.search(raw) is None:
        return
    try:
        attrs = _decode.decode(raw)
    except msgspec.DecodeError:
        return
    tool, model, input_tokens, output_tokens = genai(attrs)
    event.tool = event.tool if event.tool is not None else tool
    event.model = event.model if event.model is not None else model
    event.input_tokens = event.input_tokens if event.input_tokens is not None else input_tokens
    event.output_tokens = event.output_tokens if event.output_tokens is not None else output_tokens
    if event.tokens_used is None and (event.input_tokens is not None or event.output_tokens is not None):
        event.tokens_used = token_sum(event.input_tokens, event.output_tokens)
    if event.method is None and attrs.get("mcp.method.name"):
        event.method = text(attrs["mcp.method.name"])
    if event.session_id is None and attrs.get("mcp.session.id"):
        event.session_id = text(attrs["mcp.session.id"])
    code = jsonrpc_code(attrs)
    if code is not None:
        if event.status_code is None:
            event.status_code = code
        if event.status is None:
            event.status = "error"
