"""Record every MCP request a server answers, as the FTL MCP gateway's TEA middleware did.

Two ways in, for two kinds of servers:

* ``instrument(server)`` / ``TeaMiddleware``: a ``Server.middleware`` of the official ``mcp`` SDK
  (``MCPServer`` — FastMCP's name before mcp 2 — and the low-level ``Server``), on every transport:
  stdio, streamable HTTP, SSE.
* ``TeaASGIMiddleware(app)``: any ASGI app serving MCP over HTTP (JSON or SSE answers), whatever
  built it.

On the request's path they take the time and keep references; the event (see
``tea_client._mcp_events``) is built and sent on the client's sender thread, so a slow or absent TEA
never slows a call. Configured like the gateway: ``tea_enabled``, ``tea_endpoint``,
``tea_auth_required`` as arguments, else ``TEA_ENABLED``, ``TEA_ENDPOINT``, ``TEA_AUTH_REQUIRED``
from the environment, else the ``[mcp_gateway]`` section of a TOML file (``config=`` or
``TEA_MCP_CONFIG``), else the gateway's defaults (on, ``http://localhost:3001``, auth required).
``tea_auth_required`` means TEA wants a credential: then ``TEA_TOKEN`` (or ``tea_token`` in the
section) must be set, or the middleware refuses to start.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Mapping, MutableMapping, NamedTuple, Optional

from tea_client import _mcp_events as ev
from tea_client.client import TeaClient, do_not_track

__all__ = ["GatewaySettings", "TeaASGIMiddleware", "TeaMiddleware", "instrument", "load_settings"]

DEFAULT_ENDPOINT = "http://localhost:3001"
_TAIL_BYTES = 4096


class GatewaySettings(NamedTuple):
    enabled: bool
    endpoint: str
    auth_required: bool
    token: Optional[str]
    secret: Optional[str]


def _flag(value: Any, name: str) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("%s must be true or false, got %r" % (name, value))


def _section(path: str) -> Dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]  # novermin (3.11+, tomli below)
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        section = tomllib.load(f).get("mcp_gateway", {})
    if not isinstance(section, dict):
        raise ValueError("%s: [mcp_gateway] must be a table" % path)
    return section


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def load_settings(tea_enabled: Optional[bool] = None, tea_endpoint: Optional[str] = None,
                  tea_auth_required: Optional[bool] = None, config: Optional[str] = None,
                  env: Optional[Mapping[str, str]] = None) -> GatewaySettings:
    """The gateway's TEA settings: argument > environment > ``[mcp_gateway]`` in TOML > default."""
    env = os.environ if env is None else env
    path = config or env.get("TEA_MCP_CONFIG")
    section = _section(path) if path else {}
    enabled = _first(_flag(tea_enabled, "tea_enabled"), _flag(env.get("TEA_ENABLED"), "TEA_ENABLED"),
                     _flag(section.get("tea_enabled"), "[mcp_gateway] tea_enabled"), True)
    auth_required = _first(_flag(tea_auth_required, "tea_auth_required"),
                           _flag(env.get("TEA_AUTH_REQUIRED"), "TEA_AUTH_REQUIRED"),
                           _flag(section.get("tea_auth_required"), "[mcp_gateway] tea_auth_required"), True)
    endpoint = _first(tea_endpoint, env.get("TEA_ENDPOINT") or None, section.get("tea_endpoint"), DEFAULT_ENDPOINT)
    token = env.get("TEA_TOKEN") or section.get("tea_token") or None
    secret = env.get("TEA_SECRET") or section.get("tea_secret") or None
    return GatewaySettings(bool(enabled) and not do_not_track(env), str(endpoint), bool(auth_required), token,
                           secret)


class _Recorder:
    """What both middlewares share: the client, the server's name, how users and tenants are found."""

    def __init__(self, client: Optional[TeaClient], server_name: Optional[str], claims: Optional[ev.Claims],
                 claim_names: ev.ClaimNames, settings: Dict[str, Any], client_kwargs: Dict[str, Any]) -> None:
        if client is None:
            s = load_settings(**settings)
            if s.enabled and s.auth_required and not s.token:
                raise ValueError("tea_auth_required is true but there is no TEA credential: set TEA_TOKEN (or "
                                 "tea_token in [mcp_gateway]), or tea_auth_required = false for a TEA in "
                                 "development mode")
            client = TeaClient(s.endpoint, s.token, s.secret, **client_kwargs) if s.enabled else None
        self.client = client if client is not None and client.enabled else None
        self.server_name = server_name
        self.claims = claims or ev.unverified_claims
        self.claim_names = claim_names
        # stdio carries one client per server process and has no session id: one of ours per process
        self.stdio_session = "stdio-" + uuid.uuid4().hex

    def common(self, fields: Dict[str, Any], authorization: Optional[str], session_id: Optional[str]) -> None:
        if self.server_name:
            fields["source"] = self.server_name
        fields.update(ev.identity(authorization, self.claim_names, self.claims))
        if session_id:
            fields["session_id"] = session_id
            fields["attributes"]["mcp.session.id"] = session_id

    # -------------------------------------------------------- the mcp SDK's middleware seam
    def from_context(self, t: float, p: tuple) -> Dict[str, Any]:
        method, params, request_id, duration_ms, result, exc, request, connection, version = p
        fields = ev.request_fields(method, params, request_id)
        fields["duration_ms"] = duration_ms
        fields["request_size"] = ev.size({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        if exc is not None:
            error = _error_of(exc)
            if error is None:
                fields["status"] = "cancelled"
            else:
                fields.update(ev.outcome(None, error))
                fields["response_size"] = ev.size({"jsonrpc": "2.0", "id": request_id, "error": error})
        else:
            dump = getattr(result, "model_dump", None)
            if dump is not None:
                result = dump(by_alias=True, mode="json", exclude_none=True)
            fields.update(ev.outcome(result, None))
            fields["response_size"] = ev.size({"jsonrpc": "2.0", "id": request_id, "result": result or {}})
        headers = getattr(request, "headers", None)
        attributes = fields["attributes"]
        attributes["mcp.transport"] = "http" if headers is not None else "stdio"
        if version:
            attributes["mcp.protocol.version"] = version
        client_info = getattr(getattr(connection, "client_params", None), "client_info", None)
        if getattr(client_info, "name", None) and "mcp.client.name" not in attributes:
            attributes["mcp.client.name"] = client_info.name
        session_id = (headers.get("mcp-session-id") if headers is not None else None) or getattr(
            connection, "session_id", None) or (self.stdio_session if headers is None else None)
        self.common(fields, headers.get("authorization") if headers is not None else None, session_id)
        return fields

    # -------------------------------------------------------- HTTP exchanges (the ASGI middleware)
    def from_http(self, t: float, x: "_Exchange") -> Optional[List[Dict[str, Any]]]:
        body = b"".join(x.request_parts)
        requests = ev.requests_in(body, x.request_truncated)
        if not requests:
            return None  # a notification, a client's answer, or not JSON-RPC: nothing to record
        head = bytes(x.head)
        responses, unreadable = ev.responses_in(head, x.content_type, x.response_truncated)
        authorization = session_id = None
        for name, value in x.request_headers:
            name = name.lower()
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"mcp-session-id":
                session_id = value.decode("latin-1")
        session_id = session_id or x.session_id
        out = []
        single = len(requests) == 1
        for message in requests:
            fields = ev.request_fields(message["method"], message.get("params"), message.get("id"))
            fields["duration_ms"] = x.duration_ms
            fields["request_size"] = x.request_size if single else ev.size(message)
            response = responses.get(ev.key(message.get("id")))
            if response is not None:
                fields.update(ev.outcome(response.get("result"), response.get("error")))
                fields["response_size"] = x.response_size if single and len(responses) == 1 and not \
                    x.content_type.startswith("text/event-stream") else ev.size(response)
            elif x.error is not None:
                fields.update(status="error", status_code=-32603, error_type="internal_error",
                              error_message=str(x.error)[:1000] or type(x.error).__name__)
            elif x.status >= 400:
                fields.update(status="error", status_code=x.status, error_type="http_error")
            elif unreadable:
                fields.update(ev.truncated_outcome(head, bytes(x.tail)))
                fields["response_size"] = x.response_size
            else:
                fields["status"] = "ok"
            fields["attributes"].update({"mcp.transport": "http", "http.response.status_code": x.status})
            self.common(fields, authorization, session_id)
            out.append(fields)
        return out


def _error_of(exc: BaseException) -> Optional[Dict[str, Any]]:
    """The JSON-RPC error an exception out of the handler chain becomes; None for a cancellation."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return {"code": code, "message": str(getattr(error, "message", "") or "")}
    kind = type(exc)
    if kind.__name__ == "ValidationError" and kind.__module__.startswith("pydantic"):
        return {"code": -32602, "message": "Invalid request parameters"}
    if kind.__name__ in ("CancelledError", "Cancelled") or not isinstance(exc, Exception):
        return None
    return {"code": -32603, "message": str(exc) or kind.__name__}


class TeaMiddleware:
    """A ``ServerMiddleware`` for the official ``mcp`` SDK (``Server.middleware`` / ``MCPServer(middleware=)``).

    ``client``: a ``TeaClient`` to send through (else one is made from the gateway settings);
    ``server_name``: the ``source`` of the events; ``claims(token) -> dict``: verify and decode a
    JWT (default: read its claims unverified — attribution only, the server's auth checks tokens);
    other keywords: ``tea_enabled``, ``tea_endpoint``, ``tea_auth_required``, ``config``, then
    ``TeaClient`` options."""

    def __init__(self, client: Optional[TeaClient] = None, *, server_name: Optional[str] = None,
                 claims: Optional[ev.Claims] = None, claim_names: ev.ClaimNames = ev.ClaimNames(),
                 tea_enabled: Optional[bool] = None, tea_endpoint: Optional[str] = None,
                 tea_auth_required: Optional[bool] = None, config: Optional[str] = None,
                 **client_kwargs: Any) -> None:
        settings = dict(tea_enabled=tea_enabled, tea_endpoint=tea_endpoint, tea_auth_required=tea_auth_required,
                        config=config)
        self.recorder = _Recorder(client, server_name, claims, claim_names, settings, client_kwargs)

    @property
    def client(self) -> Optional[TeaClient]:
        return self.recorder.client

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        recorder = self.recorder
        client = recorder.client
        if client is None or ctx.request_id is None:  # off, or a notification
            return await call_next(ctx)
        start = time.perf_counter()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            client._defer(recorder.from_context, (
                ctx.method, ctx.params, ctx.request_id, (time.perf_counter() - start) * 1000.0, None, exc,
                ctx.request, getattr(ctx.session, "_connection", None), ctx.protocol_version))
            raise
        client._defer(recorder.from_context, (
            ctx.method, ctx.params, ctx.request_id, (time.perf_counter() - start) * 1000.0, result, None,
            ctx.request, getattr(ctx.session, "_connection", None), ctx.protocol_version))
        return result


def instrument(server: Any, client: Optional[TeaClient] = None, **kwargs: Any) -> TeaMiddleware:
    """Add a ``TeaMiddleware`` to an ``MCPServer`` or low-level ``Server`` (innermost, so it times the
    handler and params validation); its events are named after the server unless ``server_name`` is given."""
    chain = getattr(server, "middleware", None)
    if not isinstance(chain, list):
        raise TypeError("%r has no Server.middleware list (the mcp SDK's seam, from mcp 2): over HTTP, wrap its "
                        "ASGI app in TeaASGIMiddleware instead" % (server,))
    kwargs.setdefault("server_name", getattr(server, "name", None))
    middleware = TeaMiddleware(client, **kwargs)
    chain.append(middleware)
    return middleware


# ---------------------------------------------------------------- any ASGI app
class _Exchange:
    """One HTTP request and its answer, as much as the middleware keeps (bounded)."""

    __slots__ = ("request_headers", "request_parts", "request_size", "request_truncated", "status",
                 "content_type", "session_id", "head", "tail", "response_size", "response_truncated",
                 "start", "end", "error", "cap")

    def __init__(self, headers: List[Any], cap: int) -> None:
        self.request_headers, self.cap = headers, cap
        self.request_parts: List[bytes] = []
        self.request_size = self.response_size = self.status = 0
        self.request_truncated = self.response_truncated = False
        self.content_type = ""
        self.session_id: Optional[str] = None
        self.head, self.tail = bytearray(), bytearray()
        self.start, self.end = time.perf_counter(), 0.0
        self.error: Optional[BaseException] = None

    @property
    def duration_ms(self) -> float:
        return ((self.end or time.perf_counter()) - self.start) * 1000.0


class TeaASGIMiddleware:
    """ASGI middleware recording each JSON-RPC request POSTed to an MCP endpoint (``paths``: only these paths;
    default all). Keeps at most ``max_capture_bytes`` of each request and answer (a larger answer is judged
    from its first bytes and its last 4 KiB). Other keywords as ``TeaMiddleware``."""

    def __init__(self, app: Callable[..., Awaitable[None]], client: Optional[TeaClient] = None, *,
                 server_name: Optional[str] = None, paths: Optional[List[str]] = None,
                 max_capture_bytes: int = 256 * 1024, **kwargs: Any) -> None:
        self.app = app
        self.paths = frozenset(paths) if paths else None
        self.cap = max_capture_bytes
        self.middleware = TeaMiddleware(client, server_name=server_name, **kwargs)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        recorder = self.middleware.recorder
        client = recorder.client
        if client is None or scope.get("type") != "http" or scope.get("method") != "POST" or (
                self.paths is not None and scope.get("path") not in self.paths):
            await self.app(scope, receive, send)
            return
        x = _Exchange(scope.get("headers") or [], self.cap)

        async def receive_tapped() -> Any:
            message = await receive()
            if message.get("type") == "http.request":
                chunk = message.get("body", b"")
                x.request_size += len(chunk)
                if x.request_size <= x.cap:
                    x.request_parts.append(chunk)
                else:
                    x.request_truncated = True
            return message

        async def send_tapped(message: Any) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                x.status = message.get("status", 0)
                for name, value in message.get("headers") or ():
                    name = name.lower()
                    if name == b"content-type":
                        x.content_type = value.decode("latin-1").lower()
                    elif name == b"mcp-session-id":
                        x.session_id = value.decode("latin-1")
            elif kind == "http.response.body":
                _keep(x, message.get("body", b""))
                if not message.get("more_body", False):
                    x.end = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive_tapped, send_tapped)
        except BaseException as exc:
            x.error = exc
            raise
        finally:
            client._defer(recorder.from_http, x)


def _keep(x: _Exchange, chunk: bytes) -> None:
    x.response_size += len(chunk)
    room = x.cap - len(x.head)
    if room > 0:
        x.head += chunk[:room]
    if len(chunk) > room:
        x.response_truncated = True
        x.tail += chunk[-_TAIL_BYTES:]
        del x.tail[:-_TAIL_BYTES]
