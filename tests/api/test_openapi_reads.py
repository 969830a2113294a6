"""/openapi.json on read routes: the ``TEA-Consistency`` request header (read-your-writes or eventual), the
``TEA-Consistency: stale`` response header, 400 ``invalid_consistency`` and 503 ``storage_unavailable`` with
Retry-After are documented for every read — and real answers match what is documented. (The 503 answers of
every read route with PostgreSQL or ClickHouse down are checked against the document in
tests/e2e/test_storage_outage.py.)"""
from __future__ import annotations

import httpx

from tea.http.openapi import is_read
from tea.query import consistency
from tests.api.openapi_doc import assert_documented
from tests.api.test_read_your_writes import DownStorage
from tests.conftest import LiveServer, one_backend
from tests.e2e.test_storage_outage import NO_STORAGE


@one_backend
def test_every_read_route_documents_consistency_and_storage_unavailable(client: httpx.Client,
                                                                      server: LiveServer) -> None:
    doc = client.get("/openapi.json").json()
    reads = 0
    for route in server.app.router.routes:
        if not route.include_in_schema:
            continue
        operation = doc["paths"][route.path][route.method.lower()]
        header = [p for p in operation.get("parameters", ()) if p["name"].lower() == consistency.HEADER]
        if not is_read(route):
            assert not header, (route.method, route.path)
            assert route.method != "GET" or route.scope is None or route.consistency == "none", route.path
            continue
        reads += 1
        [param] = header
        assert (param["in"], param["required"], param["schema"]["enum"]) == ("header", False, list(consistency.MODES))
        responses = operation["responses"]
        for status, response in responses.items():
            stale = {k.lower(): v for k, v in response.get("headers", {}).items()}[consistency.HEADER]
            assert stale["required"] is False and stale["schema"]["enum"] == [consistency.STALE], (route.path, status)
        assert "`invalid_consistency`" in responses["400"]["description"], route.path
        unavailable = responses["503"]
        assert "`storage_unavailable`" in unavailable["description"], route.path
        assert unavailable["headers"]["Retry-After"]["required"] is True
    storage_reads = [r for r in server.app.router.routes if r.method == "GET" and r.include_in_schema and
                     r.path not in NO_STORAGE and not r.path.startswith("/ui")]
    assert reads >= len(storage_reads) > 50 and all(is_read(r) for r in storage_reads)


# every protocol's read routes: TEA's own, PostgREST's, Prometheus', Telemetron's
READS = [("/v1/events", "/v1/events", {}), ("/v1/registry", "/v1/registry", {}),
         ("/rest/v1/{relation}", "/rest/v1/communication_telemetry", {}),
         ("/api/v1/query", "/api/v1/query", {"query": "up"}), ("/stats", "/stats", {})]


def test_real_answers_of_read_routes_match_the_document(serve) -> None:  # type: ignore[no-untyped-def]
    """Storage that does not take writes: every read waits reads.max_wait_ms and says stale; a consistency
    the server does not know is a 400 in the route's own error shape."""
    live = serve(storage=DownStorage(), reads__max_wait_ms=100, writer__max_backoff_s=0.05, telemetron__tenant="iot")
    with httpx.Client(base_url=live.url, timeout=30) as c:
        doc = c.get("/openapi.json").json()
        assert c.post("/v1/events", json={"event_type": "e", "event_id": "down-1"}).status_code == 200
        for template, path, query in READS:
            stale = c.get(path, params=query)
            assert stale.status_code == 200 and stale.headers["tea-consistency"] == "stale", (path, stale.text[:300])
            assert_documented(doc, template, "get", stale)
            refused = c.get(path, params=query, headers={"TEA-Consistency": "linearizable"})
            assert refused.status_code == 400, (path, refused.text[:300])
            assert_documented(doc, template, "get", refused)
