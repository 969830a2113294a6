"""Routes with the metadata OpenAPI needs, and dispatch by exact path first, then by pattern."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from tea.errors import MethodNotAllowed, NotFound
from tea.http.params import Params, describe
from tea.http.request import Request
from tea.http.response import Response

# handler(request), or handler(request, params) for a route that declares its parameters (``query``)
Handler = Callable[..., Awaitable[Response]]
_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


@dataclass(frozen=True)
class Param:
    """A query or path parameter, for the OpenAPI document."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    # media type -> Python type (msgspec-describable) or a literal JSON schema dict
    request_body: dict[str, Any] | None = None
    # status -> (description, {media type: type or schema dict}) ; empty media map = no body
    responses: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    include_in_schema: bool = True
    scope: str | None = "events:read"  # the scope a caller needs; None: public
    # the route's query and path parameters, declared once: parsed for the handler, documented in ``params``
    query: type[Params] | None = None
    # what a read-your-writes read waits for (tea.query.consistency): "stored" — storage has what this node
    # acknowledged; "derived" — the processors have passed it too (registry counts, analytics tables);
    # "none" — nothing (the live tail, which streams acknowledged events before storage has them)
    consistency: str = "stored"

    def __post_init__(self) -> None:
        if self.query is None:
            return
        in_path = frozenset(_PARAM.findall(self.path))
        if in_path != self.query.PATH:
            raise ValueError(f"{self.method} {self.path}: {self.query.__name__}.PATH must be {sorted(in_path)}")
        if not self.params:
            object.__setattr__(self, "params", params_of(self.query))


@functools.cache  # (a declaration never changes: described once per process, not once per app built)
def params_of(cls: type[Params]) -> tuple[Param, ...]:
    """The OpenAPI parameters of a parameter declaration."""
    described = sorted(describe(cls), key=lambda d: not d[4])  # path parameters first
    return tuple(Param(name, text, schema, "path" if path else "query", required)
                 for name, text, schema, required, path in described)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._exact: dict[str, dict[str, Route]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        self._pattern_index: dict[str, dict[str, Route]] = {}

    def add(self, route: Route) -> None:
        self.routes.append(route)
        if "{" not in route.path:
            methods = self._exact.setdefault(route.path, {})
        else:
            methods = self._pattern_index.get(route.path)
            if methods is None:
                regex = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", route.path) + "$"
                methods = self._pattern_index[route.path] = {}
                self._patterns.append((re.compile(regex), methods))
        if route.method in methods:
            raise ValueError(f"duplicate route {route.method} {route.path}")
        methods[route.method] = route

    def mount(self, prefix: str, routes: list[Route]) -> None:
        """Serve the same handlers again under ``prefix`` (the seed's /tea/... Spin route), documented too."""
        for route in routes:
            self.add(Route(route.method, prefix + route.path, route.handler, f"{route.summary} (under {prefix}/)",
                           route.tags, route.params, route.request_body, route.responses,
                           include_in_schema=route.include_in_schema, scope=route.scope, query=route.query,
                           consistency=route.consistency))

    def match(self, request: Request) -> Route:
        methods = self._exact.get(request.path)
        if methods is None:
            for regex, candidate in self._patterns:
                found = regex.match(request.path)
                if found:
                    methods = candidate
                    request.path_params = found.groupdict()
                    break
        if methods is None:
            raise NotFound(f"no route for {request.path}")
        method = "GET" if request.method == "HEAD" else request.method
        route = methods.get(method)
        if route is None:
            allow = sorted(set(methods) | ({"HEAD"} if "GET" in methods else set()))
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}",
                                   headers={"allow": ", ".join(allow)})
        return route
