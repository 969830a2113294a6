"""PostgREST ``/rest/v1`` with the real supabase-py client (what the unmodified ElfAutomations client
uses) and raw HTTP: inserts, the seed's functions, views and tables with filters, errors in
PostgREST's shape, ``apikey`` authentication and tenant isolation."""
from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from tests.auth.conftest import ADMIN_TOKEN, admin_headers, create_token
from tests.conftest import wait_for

# supabase-py passes options its own postgrest client deprecates (a warning inside the library)
pytestmark = pytest.mark.filterwarnings("ignore:The '(timeout|verify)' parameter is deprecated:DeprecationWarning")
supabase = pytest.importorskip("supabase")

SECRET = "hs256-secret-" + "p" * 32
TABLE = "/rest/v1/communication_telemetry"


def elf_jwt(tenant: str, **claims: Any) -> str:
    return jwt.encode({"tenant": tenant, "sub": "elf", "exp": int(time.time()) + 3600, **claims}, SECRET, "HS256")


# the rows TelemetryClient.record_a2a / record_mcp / record_n8n build (CONTRACTS.md 1.5.3)
def a2a_row(source: str = "marketing-team", target: str = "sales-team", **extra: Any) -> dict[str, Any]:
    return {"protocol": "a2a", "source_id": source, "source_type": "team", "target_id": target, "target_type": "team",
            "operation": "send_task", "status": "success", "duration_ms": 420,
            "task_description": "Generate proposal"[:500], "error_message": None,
            "correlation_id": str(uuid.uuid4()), "metadata": {}, **extra}


def mcp_row(**extra: Any) -> dict[str, Any]:
    return {"protocol": "mcp", "source_id": "marketing-team", "source_type": "team", "target_id": "github",
            "target_type": "mcp", "operation": "tool_call", "status": "success", "duration_ms": 900,
            "tool_name": "create_issue", "tokens_used": 120, "error_message": None,
            "correlation_id": str(uuid.uuid4()), "metadata": {"repo": "elf"}, **extra}


def n8n_row(**extra: Any) -> dict[str, Any]:
    return {"protocol": "n8n", "source_id": "wf_001", "source_type": "workflow", "target_id": "crm",
            "target_type": "external", "operation": "workflow_step", "status": "success", "duration_ms": 50,
            "workflow_id": "wf_001", "workflow_name": "Onboarding", "workflow_node": "Create Account",
            "error_message": None, "correlation_id": str(uuid.uuid4()), "metadata": {}, **extra}


def rows(url: str, path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = httpx.get(url + "/rest/v1/" + path, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(params=["duckdb", "memory"])
def secured(request, secure):  # type: ignore[no-untyped-def]
    return secure(storage_backend=request.param, auth__jwt_secret=SECRET, processing__batch_timeout_ms=20)


@pytest.fixture
def connect():  # type: ignore[no-untyped-def]
    """``supabase.create_client(url, key)`` as the ElfAutomations client calls it; closed at the end."""
    made: list[Any] = []

    def make(url: str, key: str) -> Any:
        made.append(supabase.create_client(url, key))
        return made[-1]
    yield make
    for client in made:
        if client._postgrest is not None:
            client.postgrest.aclose()  # (the sync client's close is named aclose)


@pytest.fixture
def dev(serve):  # type: ignore[no-untyped-def]
    return serve(storage_backend="memory", processing__batch_timeout_ms=20)


# ---------------------------------------------------------------- the real client
def test_the_elf_client_records_through_supabase_py(secured, connect) -> None:
    client = connect(secured.url, elf_jwt("elf"))
    written = []
    for row in (a2a_row(), mcp_row(), n8n_row()):
        result = client.table("communication_telemetry").insert(row).execute()
        assert len(result.data) == 1
        written.append(result.data[0])
    for given, stored in zip((a2a_row(), mcp_row(), n8n_row()), written):
        uuid.UUID(stored["id"])
        assert stored["timestamp"].endswith("Z") and stored["created_at"].endswith("Z")
        assert {k: stored[k] for k in given if k != "correlation_id"} == \
            {k: v for k, v in given.items() if k != "correlation_id"}
        assert stored["tenant_id"] == "elf"
    assert written[2]["workflow_id"] == "wf_001"
    # an array insert (supabase-py adds ?columns=...)
    batch = client.table("communication_telemetry").insert([a2a_row(target="ops-team"), a2a_row(target="ops-team")])
    assert len(batch.execute().data) == 2

    found = wait_for(lambda: client.table("communication_telemetry").select("*").execute().data,
                     lambda data: len(data) == 5)
    assert len(found) == 5 and found[0]["timestamp"] >= found[-1]["timestamp"]  # newest first
    n8n = client.table("communication_telemetry").select("workflow_id, workflow_node").eq("protocol", "n8n").execute()
    assert n8n.data == [{"workflow_id": "wf_001", "workflow_node": "Create Account"}]
    pairs = client.table("top_communication_pairs").select("*").execute().data
    assert {(p["source"], p["target"], p["call_count"]) for p in pairs} == {
        ("marketing-team (team)", "sales-team (team)", 1), ("marketing-team (team)", "github (mcp)", 1),
        ("wf_001 (workflow)", "crm (external)", 1), ("marketing-team (team)", "ops-team (team)", 2)}
    top = client.table("top_communication_pairs").select("target, call_count").gt("call_count", 1) \
        .order("call_count", desc=True).limit(1).execute().data
    assert top == [{"target": "ops-team (team)", "call_count": 2}]
    health = client.table("system_health_overview").select("*").eq("protocol", "a2a").execute().data
    assert health[0]["total_requests_5min"] == 3 and health[0]["active_targets"] == 2


def test_the_seed_functions_through_supabase_py(secured, connect) -> None:
    client = connect(secured.url, elf_jwt("elf"))
    args = {"p_entity_id": "marketing-team", "p_entity_type": "team", "p_entity_name": "Marketing",
            "p_registered_by": "elf", "p_metadata": {"framework": "crewai"}, "p_capabilities": ["copy"]}
    first = client.rpc("register_entity", args).execute().data
    assert isinstance(first, str) and uuid.UUID(first)
    assert client.rpc("register_entity", {**args, "p_entity_name": "Marketing Team"}).execute().data == first
    client.rpc("register_entity", {"p_entity_id": "copy-crew", "p_entity_type": "team", "p_entity_name": "Copy",
                                   "p_registered_by": "elf", "p_parent_entity_id": "marketing-team"}).execute()
    assert client.rpc("update_entity_state", {"p_entity_id": "marketing-team", "p_entity_type": "team",
                                              "p_new_state": "active", "p_health_status": "healthy",
                                              "p_reason": "deployed"}).execute().data is True
    assert client.rpc("update_entity_state", {"p_entity_id": "ghost", "p_entity_type": "team",
                                              "p_new_state": "active"}).execute().data is False
    void = client.rpc("record_entity_activity", {"p_entity_id": "marketing-team", "p_entity_type": "team",
                                                 "p_is_error": True}).execute()
    assert void.data == []

    entity = client.table("unified_registry").select("*").eq("entity_id", "marketing-team").execute().data
    assert len(entity) == 1 and entity[0]["id"] == first
    assert (entity[0]["entity_name"], entity[0]["current_state"], entity[0]["health_status"]) == \
        ("Marketing Team", "active", "healthy")
    assert (entity[0]["activity_count"], entity[0]["error_count"], entity[0]["capabilities"]) == (1, 1, ["copy"])
    transitions = client.table("registry_state_transitions").select("from_state,to_state,transition_reason") \
        .eq("entity_id", "marketing-team").execute().data
    assert transitions == [{"from_state": "registered", "to_state": "active", "transition_reason": "deployed"}]
    audit = client.table("registration_audit").select("action").eq("entity_id", "marketing-team") \
        .order("action").execute().data
    assert [a["action"] for a in audit] == ["registered", "updated"]
    hierarchy = client.table("entity_hierarchy").select("entity_id,level,path").execute().data
    assert hierarchy == [{"entity_id": "marketing-team", "level": 0, "path": "marketing-team"},
                         {"entity_id": "copy-crew", "level": 1, "path": "marketing-team > copy-crew"}]
    state = client.table("system_entity_state").select("*").eq("current_state", "active").execute().data
    assert state == [{"entity_type": "team", "current_state": "active", "health_status": "healthy", "count": 1,
                      "active_last_5min": 1, "healthy_count": 1, "unhealthy_count": 0}]
    gaps = client.rpc("check_registration_gaps", {}).execute().data
    assert {(g["gap_type"], g["entity_identifier"]) for g in gaps} == {("stale_registration", "copy-crew")}
    assert set(gaps[0]) == {"gap_type", "entity_identifier", "details"}


def test_record_functions_write_the_seed_rows(dev) -> None:
    u = dev.url + "/rest/v1/rpc/"
    r = httpx.post(u + "record_telemetry", json={
        "p_protocol": "a2a", "p_source_id": "a", "p_source_type": "team", "p_target_id": "b", "p_target_type": "team",
        "p_operation": "discover_teams", "p_status": "success", "p_duration_ms": 7, "p_metadata": {"k": 1}})
    assert r.status_code == 200, r.text
    telemetry_id = r.json()
    uuid.UUID(telemetry_id)
    r = httpx.post(u + "record_a2a_telemetry", json={"p_source_team": "a", "p_target_team": "c",
                                                     "p_task_description": "t", "p_status": "error",
                                                     "p_duration_ms": 30, "p_correlation_id": "corr-1"})
    assert (r.status_code, r.content) == (204, b"")
    r = httpx.post(u + "record_mcp_telemetry", json={"p_source_id": "a", "p_mcp_name": "github", "p_tool_name": "x",
                                                     "p_status": "success", "p_duration_ms": 5, "p_tokens_used": 9})
    assert r.status_code == 204, r.text
    found = wait_for(lambda: rows(dev.url, "communication_telemetry?order=operation"), lambda d: len(d) == 3)
    by_op = {row["operation"]: row for row in found}
    assert by_op["discover_teams"]["id"] == telemetry_id and by_op["discover_teams"]["metadata"] == {"k": 1}
    a2a = by_op["send_task"]
    assert (a2a["protocol"], a2a["source_type"], a2a["target_type"], a2a["task_description"], a2a["status"],
            a2a["duration_ms"], a2a["correlation_id"]) == ("a2a", "team", "team", "t", "error", 30, "corr-1")
    mcp = by_op["tool_call"]
    assert (mcp["protocol"], mcp["source_type"], mcp["target_id"], mcp["target_type"], mcp["tool_name"],
            mcp["tokens_used"]) == ("mcp", "team", "github", "mcp", "x", 9)
    # an invalid value is the column's constraint; a wrong argument set is "no such function"
    bad = httpx.post(u + "record_a2a_telemetry", json={"p_source_team": "a", "p_target_team": "c",
                                                       "p_task_description": "t", "p_status": "fine",
                                                       "p_duration_ms": 1})
    assert bad.status_code == 400 and bad.json()["code"] == "23514" and "status" in bad.json()["details"]
    missing = httpx.post(u + "record_a2a_telemetry", json={"p_source_team": "a"})
    assert missing.status_code == 404 and missing.json()["code"] == "PGRST202"
    assert "p_duration_ms" in missing.json()["hint"]
    unknown = httpx.post(u + "drop_everything", json={})
    assert unknown.status_code == 404 and set(unknown.json()) == {"code", "details", "hint", "message"}
    assert unknown.json()["code"] == "PGRST202"
    typed = httpx.post(u + "record_entity_activity", json={"p_entity_id": "a", "p_entity_type": "team",
                                                          "p_is_error": "maybe"})
    assert typed.status_code == 400 and typed.json()["code"] == "22P02"
    wrong_type = httpx.post(u + "register_entity", json={"p_entity_id": "a", "p_entity_type": "robot",
                                                        "p_entity_name": "A", "p_registered_by": "me"})
    assert wrong_type.status_code == 400 and wrong_type.json()["code"] == "23514"
    assert httpx.get(u + "record_telemetry").status_code == 405
    assert httpx.get(u + "check_registration_gaps").status_code == 200
    time.sleep(0.2)
    assert len(rows(dev.url, "communication_telemetry")) == 3  # the refused calls stored nothing


# ---------------------------------------------------------------- raw HTTP: inserts
def test_prefer_return_modes(dev) -> None:
    minimal = httpx.post(dev.url + TABLE, json=a2a_row(), headers={"prefer": "return=minimal"})
    assert (minimal.status_code, minimal.content) == (201, b"")
    plain = httpx.post(dev.url + TABLE, json=a2a_row())
    assert (plain.status_code, plain.content) == (201, b"")
    given = str(uuid.uuid4())
    full = httpx.post(dev.url + TABLE, json=a2a_row(id=given), headers={"prefer": "return=representation"})
    assert full.status_code == 201 and isinstance(full.json(), list) and full.json()[0]["id"] == given
    assert set(full.json()[0]) >= {"id", "timestamp", "created_at", "metadata", "protocol", "estimated_cost"}
    chosen = httpx.post(dev.url + TABLE + "?select=id,status", json=[a2a_row(), mcp_row()],
                        headers={"prefer": "return=representation"})
    assert chosen.status_code == 201 and [set(r) for r in chosen.json()] == [{"id", "status"}] * 2
    located = httpx.post(dev.url + TABLE, json=a2a_row(), headers={"prefer": "return=headers-only"})
    assert located.status_code == 201 and located.headers["location"].startswith("/communication_telemetry?id=eq.")
    assert wait_for(lambda: rows(dev.url, "communication_telemetry"), lambda d: len(d) == 6)


@pytest.mark.parametrize("bad, code, column", [
    ({"status": "fine"}, "23514", "status"),
    ({"protocol": "smtp"}, "23514", "protocol"),
    ({"source_id": None}, "23502", "source_id"),
    ({"target_id": "x" * 300}, "22001", "target_id"),
    ({"duration_ms": "slow"}, "22P02", "duration_ms"),
    ({"colour": "red"}, "PGRST204", "colour"),
])
def test_a_bad_row_refuses_the_whole_insert(dev, bad: dict[str, Any], code: str, column: str) -> None:
    body = [a2a_row(), a2a_row(), {**a2a_row(), **bad}]
    r = httpx.post(dev.url + TABLE, json=body, headers={"prefer": "return=representation"})
    assert r.status_code == 400
    error = r.json()
    assert set(error) == {"code", "details", "hint", "message"} and error["code"] == code
    assert "row 2" in error["details"] and column in error["details"]
    sentinel = httpx.post(dev.url + TABLE, json=a2a_row(source="sentinel"))
    assert sentinel.status_code == 201
    wait_for(lambda: rows(dev.url, "communication_telemetry"), lambda d: len(d) >= 1)
    time.sleep(0.1)
    assert [r["source_id"] for r in rows(dev.url, "communication_telemetry")] == ["sentinel"]


def test_body_and_missing_column_errors(dev) -> None:
    r = httpx.post(dev.url + TABLE, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "PGRST102"
    r = httpx.post(dev.url + TABLE, json={k: v for k, v in a2a_row().items() if k != "operation"})
    assert r.status_code == 400 and r.json()["code"] == "23502" and "operation" in r.json()["message"]
    r = httpx.post(dev.url + TABLE + '?columns="protocol","nope"', json=[a2a_row()])
    assert r.status_code == 400 and r.json()["code"] == "PGRST204"
    # columns= keeps only the listed keys: the others are NULL (here: a NOT NULL column)
    r = httpx.post(dev.url + TABLE + '?columns="protocol","source_id"', json=[a2a_row()])
    assert r.status_code == 400 and r.json()["code"] == "23502"
    assert httpx.post(dev.url + TABLE, json=[]).status_code == 201


def test_unknown_tables_columns_and_operators(dev) -> None:
    r = httpx.get(dev.url + "/rest/v1/teams")
    assert r.status_code == 404 and r.json()["code"] == "PGRST205"
    r = httpx.post(dev.url + "/rest/v1/teams", json={})
    assert r.status_code == 404 and r.json()["code"] == "PGRST205"
    view = httpx.post(dev.url + "/rest/v1/top_communication_pairs", json={})
    assert view.status_code == 403 and view.json()["code"] == "42501"  # a view takes no writes
    for query, code in (("colour=eq.red", "42703"), ("select=id,colour", "42703"), ("order=colour.desc", "42703"),
                        ("status=approx.ok", "PGRST100"), ("limit=many", "PGRST100"),
                        ("duration_ms=gt.slow", None), ("timestamp=gt.yesterday", "22007")):
        r = httpx.get(dev.url + TABLE + "?" + query)
        if code is None:
            assert r.status_code == 200  # no rows: nothing to compare with
            continue
        assert r.status_code == 400 and r.json()["code"] == code, (query, r.text)


# ---------------------------------------------------------------- raw HTTP: reads
def test_filters_order_paging_and_select(dev) -> None:
    base = [a2a_row(target=f"t{i}", duration_ms=i * 10) for i in range(5)]
    base[3]["duration_ms"] = None
    base[4]["error_message"] = "Boom happened"
    base[4]["status"] = "error"
    assert httpx.post(dev.url + TABLE, json=base).status_code == 201
    wait_for(lambda: rows(dev.url, "communication_telemetry"), lambda d: len(d) == 5)

    def targets(query: str) -> list[str]:
        return [r["target_id"] for r in rows(dev.url, "communication_telemetry?select=target_id&" + query)]

    assert targets("target_id=eq.t1") == ["t1"]
    assert sorted(targets("target_id=neq.t1")) == ["t0", "t2", "t3", "t4"]
    assert targets("duration_ms=gt.10&order=target_id") == ["t2", "t4"]
    assert targets("duration_ms=gte.10&duration_ms=lt.40&order=target_id") == ["t1", "t2"]
    assert targets("duration_ms=lte.0") == ["t0"]
    assert targets("duration_ms=is.null") == ["t3"]
    assert targets("error_message=like.Boom*") == ["t4"]
    assert targets("error_message=ilike.*HAPPEN*") == ["t4"]
    assert targets("target_id=in.(t0,t2,nope)&order=target_id.desc") == ["t2", "t0"]
    assert targets("status=not.eq.success") == ["t4"]
    assert targets("order=duration_ms.desc.nullslast,target_id") == ["t4", "t2", "t1", "t0", "t3"]
    assert targets("order=duration_ms.asc.nullsfirst") == ["t3", "t0", "t1", "t2", "t4"]
    assert targets("order=target_id&limit=2&offset=1") == ["t1", "t2"]
    aliased = rows(dev.url, "communication_telemetry?select=to:target_id&target_id=eq.t0")
    assert aliased == [{"to": "t0"}]
    r = httpx.get(dev.url + TABLE + "?order=target_id&limit=2", headers={"prefer": "count=exact"})
    assert r.headers["content-range"] == "0-1/5"
    r = httpx.get(dev.url + TABLE + "?target_id=eq.none")
    assert r.json() == [] and r.headers["content-range"] == "*/*"
    newest = rows(dev.url, "communication_telemetry?order=timestamp.desc&limit=1")[0]["timestamp"]
    assert rows(dev.url, f"communication_telemetry?timestamp=gt.{newest}") == []
    assert len(rows(dev.url, f"communication_telemetry?timestamp=lte.{newest}")) == 5
    single = httpx.get(dev.url + TABLE + "?target_id=eq.t1", headers={"accept": "application/vnd.pgrst.object+json"})
    assert single.status_code == 200 and single.json()["target_id"] == "t1"
    many = httpx.get(dev.url + TABLE, headers={"accept": "application/vnd.pgrst.object+json"})
    assert many.status_code == 406 and many.json()["code"] == "PGRST116"
    for view in ("system_health_overview", "communication_patterns", "top_communication_pairs",
                 "communication_metrics_realtime", "system_entity_state", "entity_hierarchy", "unified_registry",
                 "registry_state_transitions", "registration_audit"):
        assert httpx.get(f"{dev.url}/rest/v1/{view}?limit=1").status_code == 200, view


# ---------------------------------------------------------------- authentication and tenants
def test_apikey_authenticates_and_tenants_stay_apart(secure, connect) -> None:
    live = secure(storage_backend="memory", auth__jwt_secret=SECRET, processing__batch_timeout_ms=20)
    a = create_token(live.url, "tenant-a")["token"]
    b = create_token(live.url, "tenant-b")["token"]
    reader = create_token(live.url, "tenant-a", scopes=["events:read"])["token"]
    # apikey alone, apikey + Authorization (what supabase-py sends), and a JWT in apikey
    assert httpx.post(live.url + TABLE, json=a2a_row(source="from-a"), headers={"apikey": a}).status_code == 201
    both = {"apikey": b, "authorization": f"Bearer {b}"}
    assert httpx.post(live.url + TABLE, json=a2a_row(source="from-b"), headers=both).status_code == 201
    assert httpx.post(live.url + TABLE, json=a2a_row(source="jwt-a"),
                      headers={"apikey": elf_jwt("tenant-a")}).status_code == 201
    for headers in ({"apikey": "tk_not_a_token"}, {"apikey": elf_jwt("tenant-a", exp=1)},
                    {"apikey": jwt.encode({"tenant": "a", "exp": int(time.time()) + 60}, "x" * 40, "HS256")}, {}):
        r = httpx.get(live.url + TABLE, headers=headers)
        assert r.status_code == 401 and set(r.json()) == {"code", "details", "hint", "message"}, headers
    refused = httpx.post(live.url + TABLE, json=a2a_row(), headers={"apikey": reader})
    assert refused.status_code == 403 and refused.json()["code"] == "42501"

    seen_a = wait_for(lambda: rows(live.url, "communication_telemetry?select=source_id,tenant_id", {"apikey": a}),
                      lambda d: len(d) == 2)
    assert sorted(r["source_id"] for r in seen_a) == ["from-a", "jwt-a"]
    assert {r["tenant_id"] for r in seen_a} == {"tenant-a"}
    seen_b = rows(live.url, "communication_telemetry?select=source_id", {"apikey": b})
    assert seen_b == [{"source_id": "from-b"}]
    other = httpx.get(live.url + TABLE + "?tenant_id=eq.tenant-a", headers={"apikey": b})
    assert other.status_code == 403 and other.json()["code"] == "42501"
    pairs_b = rows(live.url, "top_communication_pairs", {"apikey": b})
    assert [p["source"] for p in pairs_b] == ["from-b (team)"]
    # registry writes are per tenant too
    client_a = connect(live.url, elf_jwt("tenant-a"))
    client_a.rpc("register_entity", {"p_entity_id": "team-a", "p_entity_type": "team", "p_entity_name": "A",
                                     "p_registered_by": "elf"}).execute()
    assert rows(live.url, "unified_registry", {"apikey": b}) == []
    assert [e["entity_id"] for e in rows(live.url, "unified_registry", {"apikey": a})] == ["team-a"]
    # the admin reads every tenant, or one with tenant_id=eq.
    everything = rows(live.url, "communication_telemetry?select=tenant_id", admin_headers())
    assert sorted(r["tenant_id"] for r in everything) == ["tenant-a", "tenant-a", "tenant-b"]
    only_b = rows(live.url, "communication_telemetry?select=source_id&tenant_id=eq.tenant-b",
                  {"apikey": ADMIN_TOKEN})
    assert only_b == [{"source_id": "from-b"}]
