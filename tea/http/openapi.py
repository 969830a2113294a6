"""The OpenAPI 3.1 document, built from the routes' own declarations and msgspec types.

An operation documents the responses its route declares and, derived from the rest of its declaration,
the ones every route of its kind answers (``common_responses``): what the HTTP edge answers to any
request, 400 for parameters not as declared, 400/413/415 for a body, 401/403/429/503 for a route that
needs a scope, and for a read (``is_read``) the ``TEA-Consistency`` request and response headers, 400
``invalid_consistency`` and 503 ``storage_unavailable`` — in the route's own error shape where it answers
in its protocol's (``Route.errors``). A route added later gets them without naming them.
"""
from __future__ import annotations

import re
from types import UnionType
from typing import Any, Iterable, Union, get_args, get_origin

import msgspec

from tea.http.router import Route
from tea.http.schemas import ErrorBody

# every 429 and 503 TEA answers carries it (errors.RateLimited, errors.Unavailable, /readyz, the edge)
RETRY_AFTER = {"description": "seconds to wait before retrying", "required": True,
               "schema": {"type": "integer", "minimum": 0}}
ERROR = {"application/json": ErrorBody}
# answered by the HTTP server to a request on any route, before the route runs: the HTTP parser's 400 (text),
# the edge's (tea.http.edge) 408, 431 and 503 in TEA's error shape, the connection closed
EDGE = {400: ("The request is not valid HTTP (the HTTP server's own text answer)", {"text/plain": {"type": "string"}}),
        408: ("The request's headers or body did not arrive in time (http.header_timeout_s, http.body_timeout_s)",
              ERROR),
        431: ("The request's header section exceeds http.max_header_bytes", ERROR),
        503: ("Too many open connections (`too_many_connections`); retry after Retry-After seconds", ERROR)}
# read-your-writes (tea.query.consistency, whose names these are): what a read asks for, and what its answer says
# when storage had not caught up within reads.max_wait_ms
CONSISTENCY_HEADER = "TEA-Consistency"
CONSISTENCY_MODES = ("read_your_writes", "eventual")
CONSISTENCY_PARAM = {
    "name": CONSISTENCY_HEADER, "in": "header", "required": False,
    "description": "`read_your_writes`: the answer includes every event this node acknowledged before the request "
                   "(waiting at most reads.max_wait_ms for storage); `eventual`: what storage holds now, without "
                   "waiting. Default: reads.consistency",
    "schema": {"type": "string", "enum": list(CONSISTENCY_MODES)}}
CONSISTENCY_RESPONSE = {"description": "`stale` when storage had not caught up with this node's acknowledged events "
                                       "within reads.max_wait_ms: the answer is what storage holds",
                        "required": False, "schema": {"type": "string", "enum": ["stale"]}}
# the credentials every route that needs a scope takes (tea.auth.chain), for the document's ``security``
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "an API token (tk_…), a JWT, or the admin token: Authorization: Bearer …"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an API token (tk_…)"},
    "supabaseKey": {"type": "apiKey", "in": "header", "name": "apikey",
                    "description": "an API token as Supabase clients send it"},
}
Documented = dict[int, tuple[list[str], dict[str, list[Any]]]]  # status -> (descriptions, media -> shapes)


def is_read(route: Route) -> bool:
    """Whether requests to ``route`` are reads that wait for this node's writes (tea.auth.gate.Gate.settle):
    admitted with a scope, GET (or needing ``events:read``), over storage (not the live tail)."""
    return (route.scope is not None and route.consistency != "none" and
            (route.scope == "events:read" or route.method in ("GET", "HEAD")))


def common_responses(route: Route) -> list[tuple[int, str, dict[str, Any]]]:
    """``(status, description, media map)`` of the answers ``route`` gives because of what it declares."""
    own = route.errors or ERROR
    out = [(status, text, media) for status, (text, media) in EDGE.items()]
    if route.query is not None:  # parsed by the dispatcher, before the handler runs
        out.append((400, "A parameter is not as declared (`invalid_parameter`, naming it)", ERROR))
    elif route.params:
        out.append((400, "A parameter is not as declared", own))
    if route.request_body is not None:
        out += [(400, "The body is not as declared (empty, not UTF-8, not valid, or a corrupt gzip stream)", own),
                (413, "The body is larger than the route's bound, raw or decompressed", own),
                (415, "Unsupported Content-Type or Content-Encoding", own)]
    if route.scope is not None:
        refusal = own if route.admits_itself else ERROR
        out += [(401, "Missing or invalid credentials", refusal),
                (403, f"The credential lacks the `{route.scope}` scope (`insufficient_scope`), or names another "
                      "tenant (`forbidden_tenant`)", refusal),
                (429, "Rate limit or quota exceeded; retry after Retry-After seconds", refusal),
                (503, "Unavailable for now (durable buffer full, storage or shared state unreachable); retry "
                      "after Retry-After seconds", refusal)]
    if is_read(route):
        out += [(400, f"`{CONSISTENCY_HEADER}` is neither {' nor '.join(CONSISTENCY_MODES)} (`invalid_consistency`)",
                 refusal),
                (503, "Storage is unreachable or did not answer within storage.read_timeout_s (`storage_unavailable`); "
                      "retry after Retry-After seconds", refusal)]
    return out


def documented_responses(route: Route) -> Documented:
    """The route's declared responses, then the common ones merged in: several shapes under one status
    and media type are each documented (``anyOf``)."""
    merged: Documented = {}
    declared = [(status, text, media) for status, (text, media) in route.responses.items()]
    for status, text, media in declared + common_responses(route):
        texts, shapes = merged.setdefault(status, ([], {}))
        if text not in texts:
            texts.append(text)
        for media_type, shape in media.items():
            found = shapes.setdefault(media_type, [])
            if not any(shape is s or shape == s for s in found):
                found.append(shape)
    return merged


def build_openapi(routes: Iterable[Route], title: str, version: str, description: str = "",
                  auth: bool = True) -> dict[str, Any]:
    """The document; ``auth``: credentials are checked (else development mode: no ``security``)."""
    routes = [r for r in routes if r.include_in_schema]
    types: list[Any] = []

    def slot(value: Any) -> Any:
        if isinstance(value, dict):
            return value
        if get_origin(value) in (Union, UnionType):
            # msgspec cannot describe unions of untagged Structs as one type: describe each member
            return ("anyOf", [slot(member) for member in get_args(value)])
        types.append(value)
        return len(types) - 1

    def slots(shapes: list[Any]) -> Any:
        return slot(shapes[0]) if len(shapes) == 1 else ("anyOf", [slot(s) for s in shapes])

    planned = []
    for route in routes:
        body = {m: slot(t) for m, t in (route.request_body or {}).items()}
        responses = {status: ("; ".join(texts), {m: slots(shapes) for m, shapes in media.items()})
                     for status, (texts, media) in documented_responses(route).items()}
        planned.append((route, body, responses))
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")

    def resolve(value: Any) -> dict[str, Any]:
        if isinstance(value, tuple):
            return {"anyOf": [resolve(member) for member in value[1]]}
        return value if isinstance(value, dict) else schemas[value]

    paths: dict[str, dict[str, Any]] = {}
    for route, body, responses in planned:
        read = is_read(route)
        operation: dict[str, Any] = {
            "operationId": _operation_id(route), "summary": route.summary, "tags": list(route.tags),
            "responses": {
                str(status): {"description": text,
                              **_headers(status, read),
                              **({"content": {m: {"schema": resolve(s)} for m, s in media.items()}} if media else {})}
                for status, (text, media) in sorted(responses.items())},
        }
        parameters = [{"name": p.name, "in": p.location, "required": p.required or p.location == "path",
                       "description": p.description, "schema": p.schema} for p in route.params]
        if parameters or read:
            operation["parameters"] = parameters + ([CONSISTENCY_PARAM] if read else [])
        if body:
            operation["requestBody"] = {"required": route.body_required,
                                        "content": {m: {"schema": resolve(s)} for m, s in body.items()}}
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES] if auth and route.scope else []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {"openapi": "3.1.0", "info": {"title": title, "version": version, "description": description},
            "paths": paths, "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES}}


def _headers(status: int, consistency: bool) -> dict[str, Any]:
    """The documented response headers: Retry-After on every 429 and 503; TEA-Consistency (optional) on every
    answer of a read: once a read has waited, whatever it answers says so (a 503 from storage down included)."""
    headers = {**({"Retry-After": RETRY_AFTER} if status in (429, 503) else {}),
               **({CONSISTENCY_HEADER: CONSISTENCY_RESPONSE} if consistency else {})}
    return {"headers": headers} if headers else {}


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace("/", "_").replace("-", "_") or "root"
    return f"{route.method.lower()}_{words}"
