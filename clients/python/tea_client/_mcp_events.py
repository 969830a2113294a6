"""MCP requests → TEA events, built on the sender thread from what the middlewares saw.

One event per JSON-RPC request (notifications are not requests and are skipped), ``event_type``
``mcp_request``:

* ``method`` the MCP method (``tools/call``), ``target`` what it names: the tool, the prompt or the
  resource URI; ``source`` the server's name; ``protocol`` ``mcp``.
* ``duration_ms``; ``request_size`` / ``response_size`` in bytes of the JSON-RPC messages.
* ``status`` ``ok``, ``error`` (a JSON-RPC error: ``status_code`` is its code, ``error_type`` its
  name; or a tool result with ``isError``: ``error_type`` ``tool_error``) or ``cancelled``.
* ``session_id`` the MCP session (``Mcp-Session-Id``; one id per connection on stdio).
* ``user_id``, ``tenant_id``, ``organization`` from the claims of the request's JWT (``sub``,
  ``tenant`` then ``tenant_id``, ``org``; names configurable).
* ``attributes``: OpenTelemetry's MCP names — ``mcp.method.name``, ``gen_ai.tool.name``,
  ``gen_ai.prompt.name``, ``mcp.resource.uri``, ``jsonrpc.request.id``, ``mcp.session.id``,
  ``mcp.protocol.version``, ``mcp.client.name``, ``mcp.transport``.
"""
from __future__ import annotations

import base64
import re
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import msgspec

EVENT_TYPE = "mcp_request"
ERROR_NAMES = {-32700: "parse_error", -32600: "invalid_request", -32601: "method_not_found",
               -32602: "invalid_params", -32603: "internal_error"}
_MAX_MESSAGE = 1000
_json = msgspec.json.Encoder(enc_hook=str)
_decode = msgspec.json.Decoder()

Claims = Callable[[str], Optional[Mapping[str, Any]]]


class ClaimNames(NamedTuple):
    user: str = "sub"
    tenant: Tuple[str, ...] = ("tenant", "tenant_id")
    org: str = "org"


def unverified_claims(token: str) -> Optional[Mapping[str, Any]]:
    """The payload of a JWT, not verified: for attribution only (the server's auth layer verifies tokens)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = _decode.decode(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, msgspec.DecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def identity(authorization: Optional[str], names: ClaimNames, claims: Claims) -> Dict[str, Any]:
    """user_id / tenant_id / organization from ``Authorization: Bearer <JWT>``."""
    if not authorization or not authorization[:7].lower() == "bearer ":
        return {}
    found = claims(authorization[7:].strip())
    if not found:
        return {}
    out: Dict[str, Any] = {}
    if isinstance(found.get(names.user), str):
        out["user_id"] = found[names.user]
    for claim in names.tenant:
        if isinstance(found.get(claim), str):
            out["tenant_id"] = found[claim]
            break
    if isinstance(found.get(names.org), str):
        out["organization"] = found[names.org]
    return out


def size(obj: Any) -> Optional[int]:
    try:
        return len(_json.encode(obj))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return None


def request_fields(method: str, params: Any, request_id: Any) -> Dict[str, Any]:
    """Columns and attributes every MCP request event has, from the method and its params."""
    attributes: Dict[str, Any] = {"mcp.method.name": method}
    target = None
    if isinstance(params, Mapping):
        name, uri = params.get("name"), params.get("uri")
        if method == "tools/call" and isinstance(name, str):
            target = attributes["gen_ai.tool.name"] = name
        elif method == "prompts/get" and isinstance(name, str):
            target = attributes["gen_ai.prompt.name"] = name
        elif isinstance(uri, str):
            target = attributes["mcp.resource.uri"] = uri
        meta = params.get("_meta")
        if isinstance(meta, Mapping):
            client = meta.get("io.modelcontextprotocol/clientInfo")
            if isinstance(client, Mapping) and isinstance(client.get("name"), str):
                attributes["mcp.client.name"] = client["name"]
    if request_id is not None:
        attributes["jsonrpc.request.id"] = str(request_id)
    return {"event_type": EVENT_TYPE, "method": method, "target": target, "protocol": "mcp",
            "attributes": attributes}


def outcome(result: Any, error: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """status / status_code / error_type / error_message from a JSON-RPC result or error object."""
    if error is not None:
        code = error.get("code")
        code = code if isinstance(code, int) else None
        return {"status": "error", "status_code": code, "error_type": ERROR_NAMES.get(code, "jsonrpc_error"),
                "error_message": str(error.get("message") or "")[:_MAX_MESSAGE] or None}
    if isinstance(result, Mapping) and result.get("isError") is True:
        return {"status": "error", "error_type": "tool_error", "error_message": _first_text(result.get("content"))}
    return {"status": "ok"}


def _first_text(content: Any) -> Optional[str]:
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                return part["text"][:_MAX_MESSAGE]
    return None


# ---------------------------------------------------------------- HTTP bodies (the ASGI middleware)
_METHOD = re.compile(rb'"method"\s*:\s*"([^"]{1,200})"')
_NAME = re.compile(rb'"(?:name|uri)"\s*:\s*"([^"]{1,1000})"')
_ID = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,20})')
_ERROR_CODE = re.compile(rb'"error"\s*:\s*\{[^{}]*?"code"\s*:\s*(-?\d{1,10})')
_IS_ERROR = re.compile(rb'"isError"\s*:\s*true')


def requests_in(body: bytes, truncated: bool) -> List[Dict[str, Any]]:
    """The JSON-RPC requests (with ``method`` and ``id``) of a POST body; a truncated body is read with
    patterns for its first request."""
    if not truncated:
        try:
            message = _decode.decode(body)
        except msgspec.DecodeError:
            return []
        messages = message if isinstance(message, list) else [message]
        return [m for m in messages if isinstance(m, dict) and isinstance(m.get("method"), str) and "id" in m]
    method, rid = _METHOD.search(body), _ID.search(body)
    if not method or not rid:
        return []
    name = _NAME.search(body)
    params = {"name": name.group(1).decode("utf-8", "replace")} if name else {}
    return [{"method": method.group(1).decode("utf-8", "replace"), "id": _decode.decode(rid.group(1)),
             "params": params}]


def responses_in(body: bytes, content_type: str, truncated: bool) -> Tuple[Dict[Any, Dict[str, Any]], bool]:
    """JSON-RPC responses by id from a JSON or SSE body; the flag says the body could not be read whole."""
    if truncated:
        return {}, True
    payloads: List[bytes] = []
    if content_type.startswith("text/event-stream"):
        data: List[bytes] = []
        for line in body.split(b"\n") + [b""]:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and data:
                payloads.append(b"\n".join(data))
                data = []
    elif body:
        payloads.append(body)
    found: Dict[Any, Dict[str, Any]] = {}
    for payload in payloads:
        try:
            message = _decode.decode(payload)
        except msgspec.DecodeError:
            continue
        for m in (message if isinstance(message, list) else [message]):
            if isinstance(m, dict) and "id" in m and ("result" in m or "error" in m):
                found[key(m["id"])] = m
    return found, False


def truncated_outcome(head: bytes, tail: bytes) -> Dict[str, Any]:
    """The outcome of a response too large to keep whole, from its first and last bytes."""
    code = _ERROR_CODE.search(head)
    if code:
        value = int(code.group(1))
        return {"status": "error", "status_code": value, "error_type": ERROR_NAMES.get(value, "jsonrpc_error")}
    if _IS_ERROR.search(tail) or _IS_ERROR.search(head):
        return {"status": "error", "error_type": "tool_error"}
    return {"status": "ok"}


def key(request_id: Any) -> str:
    """Ids compared as JSON values: 1 and \"1\" are different requests."""
    return repr(request_id)
