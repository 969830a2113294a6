"""PostgREST writes as supabase-py makes them: ``update``, ``delete``, ``upsert`` (``on_conflict``,
``ignore_duplicates``), the ``Prefer`` headers it sends, and every refusal in PostgREST's error shape
with a code (never ``code: None``). ``unified_registry`` takes every write; the record tables
(communications, transitions, audit) only appends; the views nothing."""
from __future__ import annotations

import uuid
from typing import Any, Callable

import httpx
import pytest

from tests.auth.conftest import ADMIN_TOKEN, admin_headers, create_token
from tests.comms.test_postgrest import a2a_row, rows
from tests.conftest import BACKENDS, backend_settings, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:The '(timeout|verify)' parameter is deprecated:DeprecationWarning")
supabase = pytest.importorskip("supabase")
from postgrest.exceptions import APIError  # noqa: E402  (after the importorskip)

REGISTRY = "/rest/v1/unified_registry"


def workflow(workflow_id: str = "wf_001", **extra: Any) -> dict[str, Any]:
    """The row ElfAutomations' n8n ``register_workflow`` writes (n8n/workflow_registration.py)."""
    return {"entity_id": workflow_id, "entity_type": "n8n_workflow", "entity_name": "Onboarding",
            "display_name": "Onboarding", "registered_by": "n8n", "registration_source": "n8n",
            "current_state": "registered", "health_status": "unknown", "endpoint_url": "http://n8n/webhook/1",
            "deployment_type": "n8n", "capabilities": ["http_request", "webhook_trigger"], "tags": ["crm"],
            "metadata": {"node_count": 3}, **extra}


def refused(call: Callable[[], Any]) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    assert info.value.code is not None and info.value.message, info.value.json()
    return info.value


@pytest.fixture
def client(serve):  # type: ignore[no-untyped-def]
    live = serve(storage_backend="duckdb", processing__batch_timeout_ms=20)
    made = supabase.create_client(live.url, "anon-key")
    made.live = live
    yield made
    made.postgrest.aclose()


@pytest.fixture(params=BACKENDS)
def on_every_backend(request, serve):  # type: ignore[no-untyped-def]
    """``client`` on each storage backend (the registry's documents are stored by each)."""
    live = serve(**backend_settings(request, request.param))
    made = supabase.create_client(live.url, "anon-key")
    made.live = live
    yield made
    made.postgrest.aclose()


def test_the_n8n_registration_flow_through_supabase_py(client) -> None:
    """register_workflow: select, insert (first time) or update (after), then an audit row; list_workflows."""
    def register(name: str) -> str:
        existing = client.table("unified_registry").select("*").eq("entity_id", "wf_001") \
            .eq("entity_type", "n8n_workflow").execute()
        data = workflow(entity_name=name, display_name=name)
        if existing.data:
            result = client.table("unified_registry").update(data).eq("entity_id", "wf_001") \
                .eq("entity_type", "n8n_workflow").execute()
            action = "updated"
        else:
            result = client.table("unified_registry").insert(data).execute()
            action = "registered"
        assert len(result.data) == 1 and result.data[0]["entity_name"] == name
        audit = client.table("registration_audit").insert({"entity_id": "wf_001", "entity_type": "n8n_workflow",
                                                           "action": action, "action_by": "n8n",
                                                           "details": {"workflow_name": name}}).execute()
        assert audit.data[0]["action"] == action and uuid.UUID(audit.data[0]["id"])
        return result.data[0]["id"]

    first = register("Onboarding")
    assert register("Onboarding v2") == first  # the same row, updated
    client.table("unified_registry").insert(workflow("wf_002", tags=["billing"])).execute()
    listed = client.table("unified_registry").select("entity_id,entity_name").eq("entity_type", "n8n_workflow") \
        .contains("tags", ["crm"]).limit(100).order("last_updated", desc=True).execute().data
    assert listed == [{"entity_id": "wf_001", "entity_name": "Onboarding v2"}]
    audit = client.table("registration_audit").select("action").eq("entity_id", "wf_001").order("action_at").execute()
    assert [a["action"] for a in audit.data] == ["registered", "updated"]
    # the seed's functions see the rows the table writes made
    assert client.rpc("update_entity_state", {"p_entity_id": "wf_001", "p_entity_type": "n8n_workflow",
                                              "p_new_state": "active"}).execute().data is True
    state = client.table("system_entity_state").select("entity_type,current_state,count").execute().data
    assert sorted((s["current_state"], s["count"]) for s in state) == [("active", 1), ("registered", 1)]


def test_registry_updates_deletes_and_their_errors(on_every_backend) -> None:
    table = on_every_backend.table
    table("unified_registry").insert([workflow("a"), workflow("b"), workflow("c")]).execute()
    changed = table("unified_registry").update({"health_status": "degraded", "tags": ["x"]}, count="exact") \
        .in_("entity_id", ["a", "b"]).execute()
    assert sorted(r["entity_id"] for r in changed.data) == ["a", "b"] and changed.count == 2
    assert {r["health_status"] for r in changed.data} == {"degraded"}
    nothing = table("unified_registry").update({"health_status": "healthy"}).eq("entity_id", "none").execute()
    assert nothing.data == []
    # PostgreSQL's answers: unknown column, a check, NOT NULL, a taken key, a wrong type
    assert refused(lambda: table("unified_registry").update({"colour": "red"}).eq("entity_id", "a").execute()) \
        .code == "PGRST204"
    assert refused(lambda: table("unified_registry").update({"entity_type": "robot"}).eq("entity_id", "a")
                   .execute()).code == "23514"
    assert refused(lambda: table("unified_registry").update({"current_state": None}).eq("entity_id", "a")
                   .execute()).code == "23502"
    taken = refused(lambda: table("unified_registry").update({"entity_id": "b"}).eq("entity_id", "a").execute())
    assert taken.code == "23505" and "unique_entity" in taken.message and "(b, n8n_workflow)" in taken.details
    assert refused(lambda: table("unified_registry").update({"activity_count": "many"}).eq("entity_id", "a")
                   .execute()).code == "22P02"
    assert refused(lambda: table("unified_registry").update({"x": 1}).execute()).code == "21000"
    assert refused(lambda: table("unified_registry").delete().execute()).code == "21000"
    moved = table("unified_registry").update({"entity_id": "a2"}).eq("entity_id", "a").execute().data
    assert [r["entity_id"] for r in moved] == ["a2"]
    gone = table("unified_registry").delete(count="exact").eq("entity_id", "c").execute()
    assert [r["entity_id"] for r in gone.data] == ["c"] and gone.count == 1
    left = table("unified_registry").select("entity_id,health_status,tags").order("entity_id").execute().data
    assert left == [{"entity_id": "a2", "health_status": "degraded", "tags": ["x"]},
                    {"entity_id": "b", "health_status": "degraded", "tags": ["x"]}]


def test_registry_upserts(on_every_backend) -> None:
    table = on_every_backend.table
    first = table("unified_registry").insert(workflow("u")).execute().data[0]
    on_key = "entity_id,entity_type"
    merged = table("unified_registry").upsert({**workflow("u"), "entity_name": "Merged"}, on_conflict=on_key) \
        .execute().data
    assert [(r["id"], r["entity_name"]) for r in merged] == [(first["id"], "Merged")]
    ignored = table("unified_registry").upsert({**workflow("u"), "entity_name": "Ignored"}, on_conflict=on_key,
                                               ignore_duplicates=True).execute().data
    assert ignored == []
    both = table("unified_registry").upsert([{**workflow("u"), "version": "2"}, workflow("v")],
                                            on_conflict=on_key).execute().data
    assert sorted((r["entity_id"], r["version"]) for r in both) == [("u", "2"), ("v", None)]
    # without on_conflict PostgREST resolves on the primary key: a new id with a taken (entity_id, entity_type)
    assert refused(lambda: table("unified_registry").upsert(workflow("u")).execute()).code == "23505"
    by_id = table("unified_registry").upsert({"id": first["id"], **workflow("u"), "entity_name": "By id"}) \
        .execute().data
    assert by_id[0]["entity_name"] == "By id" and by_id[0]["version"] == "2"
    assert refused(lambda: table("unified_registry").upsert(workflow("w"), on_conflict="entity_name")
                   .execute()).code == "42P10"
    twice = refused(lambda: table("unified_registry").upsert([workflow("u"), workflow("u")], on_conflict=on_key)
                    .execute())
    assert twice.code == "21000"
    assert refused(lambda: table("unified_registry").insert(workflow("u")).execute()).code == "23505"
    final = table("unified_registry").select("entity_id,entity_name,version").order("entity_id").execute().data
    assert final == [{"entity_id": "u", "entity_name": "By id", "version": "2"},
                     {"entity_id": "v", "entity_name": "Onboarding", "version": None}]


def test_communications_are_append_only(client) -> None:
    table = client.table
    given = str(uuid.uuid4())
    row = a2a_row(id=given, source="once")
    assert table("communication_telemetry").insert(row).execute().data[0]["id"] == given
    for change in (lambda: table("communication_telemetry").update({"status": "error"}).eq("id", given).execute(),
                   lambda: table("communication_telemetry").delete().eq("id", given).execute(),
                   lambda: table("communication_telemetry").upsert({**row, "status": "error"}).execute()):
        error = refused(change)
        assert error.code == "42501" and "append-only" in error.hint
    again = refused(lambda: table("communication_telemetry").insert(row).execute())  # acknowledged, maybe not stored
    assert again.code == "23505" and given in again.details
    assert table("communication_telemetry").upsert(row, ignore_duplicates=True).execute().data == []
    fresh = a2a_row(source="fresh")
    mixed = table("communication_telemetry").upsert([row, {**fresh, "id": str(uuid.uuid4())}],
                                                     ignore_duplicates=True).execute().data
    assert [r["source_id"] for r in mixed] == ["fresh"]
    stored = wait_for(lambda: table("communication_telemetry").select("source_id,status").execute().data,
                      lambda d: len(d) == 2)
    assert sorted((r["source_id"], r["status"]) for r in stored) == [("fresh", "success"), ("once", "success")]
    client.live.wait_stored(2)
    stored_again = refused(lambda: table("communication_telemetry").insert(row).execute())  # now from storage
    assert stored_again.code == "23505"


def test_record_tables_and_views(client) -> None:
    table = client.table
    transition = table("registry_state_transitions").insert({"entity_id": "a", "entity_type": "team",
                                                             "to_state": "active", "transitioned_by": "me"}).execute()
    assert transition.data[0]["from_state"] is None and transition.data[0]["metadata"] == {}
    audit_id = str(uuid.uuid4())
    audit = {"id": audit_id, "entity_id": "a", "entity_type": "team", "action": "health_check", "action_by": "me"}
    assert table("registration_audit").insert(audit).execute().data[0]["success"] is True
    assert refused(lambda: table("registration_audit").insert(audit).execute()).code == "23505"
    assert table("registration_audit").upsert(audit, ignore_duplicates=True).execute().data == []
    assert refused(lambda: table("registration_audit").insert({**audit, "id": None}).execute()).code == "23502"
    assert refused(lambda: table("registration_audit").insert({"entity_id": "a", "entity_type": "team",
                                                               "action_by": "me"}).execute()).code == "23502"
    for relation in ("registration_audit", "registry_state_transitions"):
        for change in (lambda: table(relation).update({"entity_id": "b"}).eq("entity_id", "a").execute(),
                       lambda: table(relation).delete().eq("entity_id", "a").execute(),
                       lambda: table(relation).upsert(audit).execute()):
            assert refused(change).code == "42501"
    view = refused(lambda: table("top_communication_pairs").insert({"source": "x"}).execute())
    assert view.code == "42501" and view.message == "permission denied for view top_communication_pairs"
    assert refused(lambda: table("system_entity_state").delete().eq("count", 1).execute()).code == "42501"
    assert [r["action"] for r in table("registration_audit").select("action").execute().data] == ["health_check"]


def test_prefer_headers_and_errors_over_raw_http(client) -> None:
    url = client.live.url
    httpx.post(url + REGISTRY, json=[workflow("p"), workflow("q")])
    minimal = httpx.patch(url + REGISTRY + "?entity_id=in.(p,q)", json={"version": "3"},
                          headers={"prefer": "return=minimal, count=exact"})
    assert (minimal.status_code, minimal.content, minimal.headers["content-range"]) == (204, b"", "0-1/2")
    assert minimal.headers["preference-applied"] == "return=minimal, count=exact"
    plain = httpx.patch(url + REGISTRY + "?entity_id=eq.p", json={"version": "4"})
    assert (plain.status_code, plain.headers["content-range"]) == (204, "0-0/*")
    shown = httpx.patch(url + REGISTRY + "?entity_id=eq.p&select=entity_id,version", json={"version": "5"},
                        headers={"prefer": "return=representation"})
    assert shown.status_code == 200 and shown.json() == [{"entity_id": "p", "version": "5"}]
    deleted = httpx.delete(url + REGISTRY + "?entity_id=eq.q", headers={"prefer": "count=exact"})
    assert (deleted.status_code, deleted.headers["content-range"]) == (204, "*/1")
    upserted = httpx.post(url + REGISTRY + "?on_conflict=entity_id,entity_type", json=workflow("p"),
                          headers={"prefer": "resolution=merge-duplicates,return=minimal"})
    assert upserted.status_code == 200 and upserted.headers["preference-applied"] == \
        "resolution=merge-duplicates, return=minimal"
    for response, code, status in (
            (httpx.put(url + REGISTRY + "?id=eq.x", json={}), "PGRST127", 400),
            (httpx.patch(url + "/rest/v1/rpc/register_entity", json={}), "PGRST101", 405),
            (httpx.delete(url + "/rest/v1/rpc/register_entity"), "PGRST101", 405),
            (httpx.patch(url + "/rest/v1/teams?id=eq.1", json={}), "PGRST205", 404),
            (httpx.patch(url + REGISTRY + "?entity_id=eq.p", content=b"[1]"), "PGRST102", 400),
            (httpx.patch(url + REGISTRY + "?colour=eq.p", json={}), "42703", 400),
            (httpx.patch(url + REGISTRY + "?entity_id=approx.p", json={}), "PGRST100", 400)):
        assert response.status_code == status and response.json()["code"] == code, response.text
        assert set(response.json()) == {"code", "details", "hint", "message"}


def test_writes_stay_in_the_callers_tenant(secure) -> None:
    live = secure(storage_backend="memory")
    a = supabase.create_client(live.url, create_token(live.url, "tenant-a")["token"])
    b = supabase.create_client(live.url, create_token(live.url, "tenant-b")["token"])
    try:
        a.table("unified_registry").insert(workflow("shared")).execute()
        b.table("unified_registry").insert(workflow("shared")).execute()  # its own tenant: no conflict
        assert b.table("unified_registry").update({"version": "b"}).eq("entity_id", "shared").execute().data[0][
            "tenant_id"] == "tenant-b"
        assert refused(lambda: b.table("unified_registry").update({"version": "x", "tenant_id": "tenant-a"})
                       .eq("entity_id", "shared").execute()).code == "42501"
        assert refused(lambda: b.table("unified_registry").insert({**workflow("x"), "tenant_id": "tenant-a"})
                       .execute()).code == "42501"
        assert b.table("unified_registry").delete().eq("entity_id", "shared").execute().data[0]["tenant_id"] == \
            "tenant-b"
        mine = rows(live.url, "unified_registry?select=entity_id,version,tenant_id", admin_headers())
        assert mine == [{"entity_id": "shared", "version": None, "tenant_id": "tenant-a"}]
        admin = httpx.patch(live.url + REGISTRY + "?entity_id=eq.shared&tenant_id=eq.tenant-a",
                            json={"version": "by-admin"}, headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                                                                   "prefer": "return=representation"})
        assert admin.status_code == 200 and admin.json()[0]["version"] == "by-admin"
    finally:
        a.postgrest.aclose()
        b.postgrest.aclose()
