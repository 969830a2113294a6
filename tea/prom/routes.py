"""The Prometheus HTTP query API under ``/api/v1`` (GET, or POST with a form body, as Grafana sends),
answering in Prometheus's JSON and error shapes, scoped to the tenant of the credential."""
from __future__ import annotations

from typing import Awaitable, Callable

import numpy as np

from tea.auth.gate import Gate
from tea.auth.principal import READ
from tea.errors import ClientError
from tea.http import Param, Request, Response, Route
from tea.prom import wire
from tea.prom.engine import NAME, Engine, Labels
from tea.prom.events import EventSource, catalogue
from tea.prom.otlp import OtlpSource, Sources
from tea.prom.plan import Matcher, PromError, Selector, parse
from tea.query.readers import Readers
from tea.settings import Settings
from tea.timeutil import MAX_US

Handler = Callable[[Request, wire.Params], Awaitable[Response]]
_ANY = Selector((Matcher(NAME, "=~", ".+"),))
_TAGS = ("prometheus",)
_ANSWER = {200: ("{status: success, data}", {"application/json": {"type": "object"}}),
           400: ("{status: error, errorType: bad_data, error}", {"application/json": {"type": "object"}}),
           401: ("{status: error, errorType: unauthorized, error}", {"application/json": {"type": "object"}}),
           422: ("{status: error, errorType: execution, error}", {"application/json": {"type": "object"}})}
_TIME = "RFC 3339 or Unix seconds"


def _selectors(params: wire.Params) -> list[Selector]:
    out = []
    for text in params.all("match[]"):
        node = parse(text, "match[]")
        if not isinstance(node, Selector):
            raise PromError(f"invalid parameter \"match[]\": {text!r} is not a series selector")
        out.append(node)
    return out


def routes(readers: Readers, gate: Gate, settings: Settings, clock: Callable[[], int]) -> list[Route]:
    metrics = catalogue(settings.prometheus.duration_buckets_ms)

    def source(request: Request) -> Sources:
        reader = readers.of(request)
        return Sources(EventSource(reader, metrics), OtlpSource(reader.signals) if reader.signals is not None else None)

    def now_ms() -> int:
        now = clock()
        return now - now % 1000  # (Prometheus's times are milliseconds)

    def answer(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                await gate.admit(request, READ)
                return await handler(request, await wire.Params.read(request))
            except PromError as exc:
                return wire.failure(exc.message, exc.kind, exc.status)
            except ClientError as exc:
                kind = {401: "unauthorized", 403: "forbidden", 429: "unavailable"}.get(exc.status, "bad_data")
                response = wire.failure(exc.message, kind, exc.status)
                response.headers = exc.headers or None
                return response
        return run

    async def query(request: Request, params: wire.Params) -> Response:
        node = parse(params.required("query"))
        at = params.time("time", now_ms())
        steps = np.array([at], dtype=np.int64)
        value = await Engine(source(request), steps).run(node)
        return wire.success(wire.instant_data(value, at))

    async def query_range(request: Request, params: wire.Params) -> Response:
        node = parse(params.required("query"))
        start = wire.parse_time(params.required("start"), "start")
        end = wire.parse_time(params.required("end"), "end")
        steps = wire.steps_of(start, end, wire.parse_step(params.required("step")))
        value = await Engine(source(request), steps).run(node)
        return wire.success(wire.range_data(value, steps))

    async def found(request: Request, params: wire.Params, selectors: list[Selector]) -> list[Labels]:
        now = now_ms()
        start = max(0, params.time("start", 0))
        end = min(MAX_US, params.time("end", now + 1000))
        events = source(request)
        seen: dict[Labels, None] = {}
        for selector in selectors or [_ANY]:
            for labels in await events.series(selector, start, end):
                seen[labels] = None
        return list(seen)

    async def series(request: Request, params: wire.Params) -> Response:
        selectors = _selectors(params)
        if not selectors:
            raise PromError("no match[] parameter provided")
        return wire.success([dict(labels) for labels in sorted(await found(request, params, selectors))])

    async def labels(request: Request, params: wire.Params) -> Response:
        names = {name for labels in await found(request, params, _selectors(params)) for name, _ in labels}
        return wire.success(sorted(names))

    async def label_values(request: Request, params: wire.Params) -> Response:
        name = request.path_params["name"]
        if not name or "\x00" in name:
            raise PromError(f"invalid parameter \"name\": invalid label name {name!r}")
        values = {v for labels in await found(request, params, _selectors(params)) for k, v in labels if k == name}
        return wire.success(sorted(values))

    async def metadata(request: Request, params: wire.Params) -> Response:
        now = now_ms()
        return wire.success(await source(request).metadata(max(0, params.time("start", now - 86_400_000_000)),
                                                           min(MAX_US, params.time("end", now + 1000))))

    async def buildinfo(request: Request, params: wire.Params) -> Response:
        from tea import __version__
        return wire.success({"version": "2.42.0", "revision": f"tea-{__version__}", "branch": "tea",
                             "buildUser": "tea", "buildDate": "", "goVersion": ""})

    async def exemplars(request: Request, params: wire.Params) -> Response:
        return wire.success([])

    def both(path: str, handler: Handler, summary: str, params: tuple[Param, ...] = ()) -> list[Route]:
        run = answer(handler)
        return [Route(method, path, run, summary + ("" if method == "GET" else " (form body)"), tags=_TAGS,
                      params=params, responses=_ANSWER, scope=None,
                      request_body={wire.FORM: {"type": "object"}} if method == "POST" else None)
                for method in ("GET", "POST")]

    span = (Param("start", f"start of the range ({_TIME}); default: every stored event"),
            Param("end", f"end of the range ({_TIME}); default: now"),
            Param("match[]", "series selector (repeatable)"))
    return [
        *both("/api/v1/query", query, "Prometheus instant query: the PromQL subset at one time",
              (Param("query", "PromQL expression", required=True), Param("time", f"{_TIME}; default now"))),
        *both("/api/v1/query_range", query_range, "Prometheus range query: the PromQL subset at every step",
              (Param("query", "PromQL expression", required=True), Param("start", _TIME, required=True),
               Param("end", _TIME, required=True), Param("step", "seconds or a duration (15s)", required=True))),
        *both("/api/v1/series", series, "Prometheus series: the label sets matching match[]", span),
        *both("/api/v1/labels", labels, "Prometheus label names", span),
        Route("GET", "/api/v1/label/{name}/values", answer(label_values), "Prometheus label values", tags=_TAGS,
              params=(Param("name", "label name", location="path", required=True), *span), responses=_ANSWER,
              scope=None),
        Route("GET", "/api/v1/metadata", answer(metadata), "Prometheus metric metadata (type, help, unit)",
              tags=_TAGS, responses=_ANSWER, scope=None),
        *both("/api/v1/query_exemplars", exemplars, "Prometheus exemplars (TEA keeps none: always empty)"),
        Route("GET", "/api/v1/status/buildinfo", answer(buildinfo), "Prometheus build information (what Grafana "
              "reads to pick its query features)", tags=_TAGS, responses=_ANSWER, scope=None),
    ]

