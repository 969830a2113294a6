"""The OpenAPI 3.1 document, built from the routes' own metadata and msgspec types."""
from __future__ import annotations

import re
from types import UnionType
from typing import Any, Iterable, Union, get_args, get_origin

import msgspec

from tea.http.router import Route


# every 429 and 503 TEA answers carries it (errors.RateLimited, errors.Unavailable, /readyz)
RETRY_AFTER = {"description": "seconds to wait before retrying", "required": True,
               "schema": {"type": "integer", "minimum": 0}}


def build_openapi(routes: Iterable[Route], title: str, version: str, description: str = "") -> dict[str, Any]:
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

    planned = []
    for route in routes:
        body = {m: slot(t) for m, t in (route.request_body or {}).items()}
        responses = {status: (text, {m: slot(t) for m, t in media.items()})
                     for status, (text, media) in route.responses.items()}
        planned.append((route, body, responses))
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")

    def resolve(value: Any) -> dict[str, Any]:
        if isinstance(value, tuple):
            return {"anyOf": [resolve(member) for member in value[1]]}
        return value if isinstance(value, dict) else schemas[value]

    paths: dict[str, dict[str, Any]] = {}
    for route, body, responses in planned:
        operation: dict[str, Any] = {
            "operationId": _operation_id(route), "summary": route.summary, "tags": list(route.tags),
            "responses": {
                str(status): {"description": text,
                              **({"headers": {"Retry-After": RETRY_AFTER}} if status in (429, 503) else {}),
                              **({"content": {m: {"schema": resolve(s)} for m, s in media.items()}} if media else {})}
                for status, (text, media) in sorted(responses.items())},
        }
        if route.params:
            operation["parameters"] = [
                {"name": p.name, "in": p.location, "required": p.required or p.location == "path",
                 "description": p.description, "schema": p.schema} for p in route.params]
        if body:
            operation["requestBody"] = {"required": True,
                                        "content": {m: {"schema": resolve(s)} for m, s in body.items()}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {"openapi": "3.1.0", "info": {"title": title, "version": version, "description": description},
            "paths": paths, "components": {"schemas": components}}


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace("/", "_").replace("-", "_") or "root"
    return f"{route.method.lower()}_{words}"
