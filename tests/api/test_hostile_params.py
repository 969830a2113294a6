"""Hostile query and path parameters on every read route, on every backend: never an answer >= 500,
and each value a parameter cannot take is a 400 naming it. The routes and their parameters come from
the running server's router, so a new route is covered as soon as it is registered."""
from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import LiveServer

OVERLONG = "x" * 10_000  # past any parameter's bound (tea.http.params.MAX_PARAM_CHARS)
HOSTILE = ("a\x00b", "\x00", "inf", "-inf", "NaN", "1e999", "-0", "-1", "abc", "9" * 40, "1.5", "",
           "2026-13-01T00:00:00Z", "%", "é\u2028", OVERLONG)
# routes that answer in their protocol's own error shape (CONTRACTS.md): 400s there cannot carry
# TEA's `details.parameter`; PostgREST's name the parameter in its message or details
POSTGREST = "/rest/v1/"
TELEMETRON_SOURCE = "/stats/{source_id}"
# the Prometheus API (Grafana's data source) answers in Prometheus's error shape, and checks its required
# parameters first, as Prometheus does: those are given a good value while another one is tried
PROMETHEUS = "/api/v1/"
PROMETHEUS_REQUIRED = {"query": "up", "match[]": "up", "start": "0", "end": "60", "step": "60"}
BENIGN_PATH = {"relation": "communication_telemetry", "function": "check_registration_gaps", "source_id": "1"}


def benign(param: Any) -> str:
    enum = param.schema.get("enum")
    return str(enum[0]) if enum else BENIGN_PATH.get(param.name, "x")


def refusable(schema: dict[str, Any], value: str) -> bool:
    """Whether ``value`` is not of the parameter's declared type or bounds (so a 400 is due)."""
    kind = schema.get("type")
    if "enum" in schema:
        return value not in [str(v) for v in schema["enum"]]
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]+(\.0+)?", value):
            return True
        number = int(float(value)) if "." in value else int(value)
        return not schema.get("minimum", -math.inf) <= number <= schema.get("maximum", math.inf)
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return True
        return not (math.isfinite(number) and schema.get("minimum", -math.inf) <= number
                    <= schema.get("maximum", math.inf))
    if kind == "boolean":  # true/false in any case, or the numbers 0 and 1
        return value.lower() not in ("true", "false") and not re.fullmatch(r"-?0|1", value)
    return False


def url_for(route: Any, name: str, value: str) -> str:
    path = route.path
    for param in route.params:
        if param.location == "path":
            path = path.replace("{" + param.name + "}", quote(value if param.name == name else benign(param), safe=""))
    if any(p.name == name and p.location == "path" for p in route.params):
        return path
    query = {name: value}
    if route.path.startswith(PROMETHEUS):
        query = {p.name: PROMETHEUS_REQUIRED[p.name] for p in route.params
                 if p.name in PROMETHEUS_REQUIRED and p.name != name} | query
    return path + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())


def problem(route: Any, param: Any, value: str, response: httpx.Response) -> str | None:
    """What is wrong with the answer, or None."""
    if response.status_code >= 500:
        return f"{response.status_code}"
    tea_shape = not route.path.startswith((POSTGREST, PROMETHEUS)) and route.path != TELEMETRON_SOURCE
    due = "\x00" in value or refusable(param.schema, value) or (tea_shape and value is OVERLONG)
    if not due:
        return None
    if response.status_code != 400:
        return f"{response.status_code}, not 400"
    if route.path == TELEMETRON_SOURCE:
        return None if response.text.startswith("Invalid URL: Cannot parse") else "not axum's Path<u64> text"
    body = response.json()
    if route.path.startswith(PROMETHEUS):
        named = f'"{param.name}"' in str(body.get("error"))
        return None if body.get("status") == "error" and body.get("errorType") == "bad_data" and named \
            else f"Prometheus shape {body}"
    if not tea_shape:
        named = param.name in f"{body.get('message')} {body.get('details')}"
        return None if set(body) == {"code", "details", "hint", "message"} and named else f"PostgREST shape {body}"
    if body.get("error") != "invalid_parameter" or body.get("details", {}).get("parameter") != param.name:
        return f"does not name it: {str(body)[:200]}"
    return None


def test_hostile_parameters_on_every_read_route(server: LiveServer, client: httpx.Client) -> None:
    routes = [r for r in server.app.router.routes if r.method == "GET" and r.params]
    assert len(routes) > 40 and sum(len(r.params) for r in routes) > 200  # (the router enumerates them all)
    failures = []
    for route in routes:
        for param in route.params:
            for value in HOSTILE:
                if value == "" and param.location == "path":
                    continue  # an empty path segment is another path (404), not this parameter
                with client.stream("GET", url_for(route, param.name, value)) as response:
                    if response.status_code != 200:  # (a 200 may be an endless stream: the live tail)
                        response.read()
                    found = problem(route, param, value, response)
                if found:
                    failures.append(f"GET {route.path} {param.name}={value[:20]!r}: {found}")
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:60])


def test_the_check_would_see_a_bad_answer() -> None:
    class P:
        name, location, schema = "limit", "query", {"type": "integer", "minimum": 1, "maximum": 10}

    class R:
        path, params = "/v1/x", (P,)

    ok = httpx.Response(400, json={"error": "invalid_parameter", "message": "m", "details": {"parameter": "limit"}})
    assert problem(R, P, "inf", ok) is None
    assert problem(R, P, "inf", httpx.Response(500, json={})) == "500"
    assert problem(R, P, "inf", httpx.Response(200, json={})) == "200, not 400"
    wrong = httpx.Response(400, json={"error": "invalid_parameter", "message": "m", "details": {"parameter": "x"}})
    assert problem(R, P, "-1", wrong).startswith("does not name it")
    assert problem(R, P, "5", httpx.Response(200, json={})) is None
    assert url_for(R, "limit", "a\x00b") == "/v1/x?limit=a%00b"
