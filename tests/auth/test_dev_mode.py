"""Development mode (``TEA_AUTH_VALIDATION=false``) with the credentials real clients send: supabase-py's
anon key, an OpenTelemetry exporter configured only by ``OTEL_*`` variables with ``x-api-key``, a
telemetry-kit SDK's token TEA never issued. What TEA cannot verify runs as the development principal;
what it can verify (its own tokens, JWTs from its issuer) still scopes to its tenant."""
from __future__ import annotations

import logging
import time

import httpx
import jwt
import pytest

from tests.api.test_telemetry_kit import APP, ORG, PATH, Client, tk_event
from tests.auth.conftest import ADMIN_TOKEN, bearer, create_token
from tests.comms.test_postgrest import a2a_row
from tests.conftest import free_port, wait_for
from tests.otlp.test_otlp import emit_trace

SECRET = "tea-issuer-secret-" + "s" * 32
SUPABASE_ANON_KEY = jwt.encode({"iss": "supabase", "ref": "abcdefghij", "role": "anon", "iat": 1700000000,
                                "exp": 2000000000}, "the-supabase-projects-own-secret-" + "x" * 16, "HS256")


@pytest.fixture
def dev(serve):  # type: ignore[no-untyped-def]
    """Development mode, with an admin token (to issue real tokens), a JWT issuer and OTLP/gRPC."""
    port = free_port()
    live = serve(storage_backend="memory", auth_validation=False, admin_token=ADMIN_TOKEN, auth__jwt_secret=SECRET,
                 otlp__grpc_port=port, processing__batch_timeout_ms=20)
    live.grpc_port = port
    return live


def events(live, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = httpx.get(live.url + "/v1/events", params=params, headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 200, r.text
    return r.json()["events"]


@pytest.mark.filterwarnings("ignore:The '(timeout|verify)' parameter is deprecated:DeprecationWarning")
@pytest.mark.parametrize("key", ["some-anon-key", SUPABASE_ANON_KEY], ids=["opaque", "supabase-jwt"])
def test_supabase_py_with_an_anon_key_inserts_and_selects(dev, key: str) -> None:
    supabase = pytest.importorskip("supabase")
    client = supabase.create_client(dev.url, key)
    try:
        inserted = client.table("communication_telemetry").insert(a2a_row(source="anon-team")).execute().data
        assert len(inserted) == 1 and inserted[0]["source_id"] == "anon-team"
        assert inserted[0]["tenant_id"] == "default"  # the development principal writes the default tenant
        found = client.table("communication_telemetry").select("id,source_id").eq("id", inserted[0]["id"]) \
            .execute().data  # (at once: read-your-writes)
        assert found == [{"id": inserted[0]["id"], "source_id": "anon-team"}]
    finally:
        client.postgrest.aclose()


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_an_otel_sdk_configured_by_environment_with_any_x_api_key(dev, monkeypatch, transport: str) -> None:
    """The exporter as `opentelemetry-instrument` builds it: every setting from OTEL_* variables."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=anything")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", transport)
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{dev.grpc_port}")
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", dev.url)
    exporter = OTLPSpanExporter()
    trace_id = emit_trace(exporter, service=f"env-{transport}")
    spans = wait_for(lambda: events(dev, trace_id=trace_id), lambda found: len(found) == 3)
    assert len(spans) == 3 and {s["tenant_id"] for s in spans} == {"default"}
    assert {s["source"] for s in spans} == {f"env-{transport}"}


def test_a_valid_credential_still_scopes_to_its_tenant(dev) -> None:
    token = create_token(dev.url, "acme")["token"]
    reader = create_token(dev.url, "acme", scopes=["events:read"])["token"]
    issued = jwt.encode({"tenant": "globex", "sub": "u1", "exp": int(time.time()) + 600}, SECRET, "HS256")
    assert httpx.post(dev.url + "/v1/events", json={"event_type": "mine"}, headers=bearer(token)).status_code == 200
    other = httpx.post(dev.url + "/v1/events", json=[{"event_type": "mine"}, {"event_type": "theirs",
                                                                              "tenant_id": "globex"}],
                       headers=bearer(token))
    assert other.status_code == 207 and other.json()["errors"][0]["error"] == "forbidden_tenant", other.text
    assert httpx.post(dev.url + "/v1/events", json={"event_type": "jwt"}, headers=bearer(issued)).status_code == 200
    assert httpx.post(dev.url + "/v1/events", json={"event_type": "anon", "tenant_id": "chosen"},
                      headers=bearer("anything")).status_code == 200
    # the same through apikey (PostgREST) and x-api-key (OTLP/HTTP)
    assert httpx.post(dev.url + "/rest/v1/communication_telemetry", json=a2a_row(source="pg"),
                      headers={"apikey": token}).status_code == 201
    wait_for(lambda: events(dev), lambda found: len(found) == 5)
    mine = httpx.get(dev.url + "/v1/events", headers={"x-api-key": token}).json()["events"]
    assert sorted(e["event_type"] for e in mine) == ["communication", "mine", "mine"]
    assert {e["tenant_id"] for e in mine} == {"acme"}
    assert [e["event_type"] for e in httpx.get(dev.url + "/v1/events", headers=bearer(issued)).json()["events"]] \
        == ["jwt"]
    assert {e["tenant_id"] for e in events(dev)} == {"acme", "globex", "chosen"}
    # a verified credential keeps its scopes: a read-only token writes nothing
    refused = httpx.post(dev.url + "/v1/events", json={"event_type": "x"}, headers=bearer(reader))
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


def test_each_kind_of_unverifiable_credential_is_logged_once_and_never_shown(dev, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="tea.auth.chain")
    secrets = ["opaque-key-1", "opaque-key-2", "tk_unknown_token_value", SUPABASE_ANON_KEY]
    for value in secrets:
        for headers in (bearer(value), {"apikey": value}, {"x-api-key": value}):
            r = httpx.get(dev.url + "/v1/events", headers=headers)
            assert r.status_code == 200, (headers, r.text)
    assert httpx.get(dev.url + "/v1/events", headers={"authorization": "Basic dXNlcjpwYXNz"}).status_code == 200
    expired = jwt.encode({"tenant": "acme", "exp": int(time.time()) - 3600}, SECRET, "HS256")
    assert httpx.get(dev.url + "/v1/events", headers=bearer(expired)).status_code == 200
    logged = [r.getMessage() for r in caplog.records if "development mode" in r.getMessage()]
    kinds = [m.split(" that TEA")[0] for m in logged]
    assert len(kinds) == len(set(kinds)), logged  # once per kind
    assert {"development mode: a key in the Authorization: Bearer", "development mode: a JWT in the apikey header",
            "development mode: an API token in the X-API-Key header",
            "development mode: a Basic Authorization header"} <= set(kinds)
    text = "\n".join(logged)
    for value in (*secrets, expired, "dXNlcjpwYXNz"):
        assert value not in text


def test_telemetry_kit_in_development_mode(dev) -> None:
    """An SDK's token TEA never issued (its own telemetry-kit server's) is taken, unsigned checks and all;
    a token TEA issued is checked as always: a wrong signature is still a 401."""
    foreign = Client(dev.url, "tk_" + "0" * 32 + "_fromanotherserver", "its-own-secret")
    first = tk_event()
    r = foreign.post({"events": [first]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    again = foreign.post({"events": [first]})  # a resend: a duplicate, counted as accepted, stored once
    assert again.status_code == 200 and again.json()["accepted"] == 1
    unsigned = httpx.post(dev.url + PATH, json={"events": [tk_event(1)]})
    assert unsigned.status_code == 200, unsigned.text
    stored = wait_for(lambda: events(dev, event_type="command_execution"), lambda found: len(found) == 2)
    time.sleep(0.2)  # (nothing more arrives: the resend was not stored twice)
    assert len(events(dev, event_type="command_execution")) == 2
    assert {e["tenant_id"] for e in stored} == {"default"} and {e["organization"] for e in stored} == {ORG}
    issued = create_token(dev.url, "acme", org_id=ORG, app_id=APP)
    ours = Client(dev.url, issued["token"], issued["secret"])
    wrong = ours.post({"events": [tk_event(2)]}, signature="0" * 64)
    assert wrong.status_code == 401 and wrong.json()["message"] == "Invalid HMAC signature"
    signed = tk_event(3)
    assert ours.post({"events": [signed]}).status_code == 200
    acme = wait_for(lambda: events(dev, tenant_id="acme"), lambda found: len(found) == 1)
    assert [e["event_id"] for e in acme] == [signed["event_id"]]
