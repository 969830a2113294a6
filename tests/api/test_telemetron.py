"""Telemetron's contract (CONTRACTS.md 1.3): exact bodies and content types, stats from storage,
its metric names, its config.toml."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tea.settings import load
from tests.conftest import Served


@pytest.fixture
def telemetron(serve) -> Served:  # type: ignore[no-untyped-def]
    return serve(storage_backend="duckdb", auth_validation=True, admin_token="t" * 40, telemetron__tenant="iot",
                 validation__source_ids="1001,1002", validation__event_types="Heartbeat,UserLogin", socket=False)


def ingest(client: httpx.Client, body: dict | bytes, content_type: str = "application/json") -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/ingest", content=data, headers={"content-type": content_type})


def test_ingest_answers_202_success_in_plain_text(telemetron: Served) -> None:
    r = ingest(telemetron.client, {"sourceId": 1001, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00+02:00",
                                "data": {"battery": 87}})
    assert r.status_code == 202 and r.text == "Success" and r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("body, status, expected", [
    ({"sourceId": 999, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"}, 400,
     {"error": "Disallowed source_id: 999"}),
    ({"sourceId": 1001, "type": "Hack", "timestamp": "2025-04-22T10:00:00Z"}, 400,
     {"error": "Disallowed event type: Hack"}),
    ({"sourceId": 999, "type": "Hack", "timestamp": "2025-04-22T10:00:00Z"}, 400,  # both fail: the first wins
     {"error": "Disallowed source_id: 999"}),
])
def test_validator_refusals_are_400_json(telemetron: Served, body: dict, status: int, expected: dict) -> None:
    r = ingest(telemetron.client, body)
    assert r.status_code == status and r.json() == expected


@pytest.mark.parametrize("body, content_type, status", [
    (b'{"sourceId": 1001, "type": ', "application/json", 400),
    (b'{"sourceId": "1001", "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"}', "application/json", 422),
    (b'{"sourceId": 1001, "timestamp": "2025-04-22T10:00:00Z"}', "application/json", 422),
    (b'{"sourceId": -1, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"}', "application/json", 422),
    (b'{"sourceId": 1001, "type": "", "timestamp": "2025-04-22T10:00:00Z"}', "application/json", 422),
    (b'{"sourceId": 1001, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"}', "text/plain", 415),
])
def test_extractor_errors(telemetron: Served, body: bytes, content_type: str, status: int) -> None:
    r = ingest(telemetron.client, body, content_type)
    assert r.status_code == status and r.headers["content-type"].startswith("text/plain") and r.text


def test_stats_come_from_storage_and_survive_a_restart(serve, tmp_path: Path) -> None:
    settings = dict(storage_backend="duckdb", auth_validation=False, telemetron__tenant="iot",
                    retention_hours=0)  # (the events are from 2025: keep them)
    first = serve(**settings, socket=False)
    for source, kind, ts in [(1001, "Heartbeat", "2025-04-22T10:00:00Z"), (1001, "Heartbeat", "2025-04-22T10:05:00Z"),
                             (1001, "UserLogin", "2025-04-22T09:00:00Z"), (1002, "Heartbeat", "2025-04-22T11:00:00Z")]:
        assert ingest(first.client, {"sourceId": source, "type": kind, "timestamp": ts}).status_code == 202
    other = [{"event_type": "Heartbeat", "tenant_id": "iot", "source": source, "timestamp": "2025-04-22T08:00:00Z"}
             for source in ("1001", "5555")]  # another protocol's events with numeric sources: not Telemetron's
    assert first.client.post("/v1/events", json=other).status_code == 200
    first.wait_stored(6)
    first.stop()
    second = serve(**settings, socket=False)
    assert second.client.get("/stats").json() == {"sources_count": 2, "events_count": 4}
    assert second.client.get("/stats/1001").json() == {
        "source_id": 1001, "total_events": 3, "first_event": "2025-04-22T09:00:00Z",
        "last_event": "2025-04-22T10:05:00Z", "event_types": {"Heartbeat": 2, "UserLogin": 1}}
    for unknown in ("4242", "5555"):
        r = second.client.get(f"/stats/{unknown}")
        assert r.status_code == 404 and r.json() == {"error": f"Source id {unknown} not found"}
    assert second.client.get("/stats/abc").status_code == 400
    assert second.client.get("/healthz").text == "OK"


def test_telemetron_metric_names_beside_teas(telemetron: Served) -> None:
    ingest(telemetron.client, {"sourceId": 1001, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"})
    ingest(telemetron.client, {"sourceId": 7, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"})
    telemetron.wait_stored(1)
    telemetron.client.get("/stats")
    families = {f.name for f in text_string_to_metric_families(telemetron.client.get("/metrics").text)}
    assert {"telemetron_http_requests", "telemetron_http_requests_duration_seconds",
            "telemetron_processor_plugin_errors", "telemetron_processor_plugin_duration_seconds",
            "telemetron_events_processed", "tea_events_accepted"} <= families
    scrape = telemetron.client.get("/metrics").text
    assert 'telemetron_http_requests_total{endpoint="/ingest"} 2.0' in scrape
    assert 'telemetron_http_requests_duration_seconds_count{endpoint="/ingest",status="4xx"} 1.0' in scrape
    assert "telemetron_events_processed_total 1.0" in scrape


def test_without_an_open_tenant_telemetron_routes_need_a_credential(serve) -> None:
    live = serve(storage_backend="memory", auth_validation=True, admin_token="t" * 40, socket=False)
    r = ingest(live.client, {"sourceId": 1, "type": "Heartbeat", "timestamp": "2025-04-22T10:00:00Z"})
    assert r.status_code == 401
    assert live.client.get("/stats").status_code == 401


def test_telemetron_config_toml_is_translated(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[http]\nhost = "127.0.0.1"\nport = 8080\n'
                      "[processor]\nchannel_capacity = 5000\nbatch_size = 50\nbatch_timeout = 500\n"
                      "retry_attempts = 2\nretry_delay = 100\n"
                      "[validation.plugins.SourceIdValidator]\nallowed = [1001, 1002]\n"
                      '[validation.plugins.EventTypeValidator]\nallowed = ["Heartbeat"]\n'
                      "[processing.plugins.StorageProcessor]\n[processing.plugins.KafkaProcessor]\n")
    s = load({"config": str(config)}, env={"TELEMETRON_HTTP__PORT": "9000"})
    assert s.port == 9000 and s.host == "127.0.0.1"
    assert s.processing.max_pending_events == 5000 and s.processing.batch_size == 50
    assert s.processing.batch_timeout_ms == 500 and s.processing.retry_attempts == 2
    assert s.processing.retry_delay_ms == 100
    assert s.validation.source_ids == "1001,1002" and s.validation.event_types == "Heartbeat"
    assert s.warnings == ["Telemetron processing plugin KafkaProcessor is not available in TEA (install a TEA "
                          "processor plugin instead); ignored"]
    assert load({"config": str(config)}, env={"TEA_PORT": "7000", "TELEMETRON_HTTP__PORT": "9000"}).port == 7000


def test_empty_allow_lists_allow_all_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tea import builtins
    config = tmp_path / "config.toml"
    config.write_text("[processor]\nchannel_capacity = 10\n"
                      "[validation.plugins.SourceIdValidator]\nallowed = []\n"
                      "[validation.plugins.EventTypeValidator]\nallowed = []\n")
    s = load({"config": str(config), "data_dir": str(tmp_path)}, env={})
    assert s.warnings == ["Telemetron validation plugin SourceIdValidator: the allow list is empty, so it allows "
                          "all source ids",
                          "Telemetron validation plugin EventTypeValidator: the allow list is empty, so it allows "
                          "all event types"]
    with caplog.at_level("WARNING", logger="tea.builtins"):
        assert builtins.register_validators(settings=s) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"validation.source_ids is set but empty (file {config}): that allow list allows all",
        f"validation.event_types is set but empty (file {config}): that allow list allows all"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="tea.builtins"):
        builtins.register_validators(settings=load({"data_dir": str(tmp_path)}, env={"TEA_VALIDATION__SOURCE_IDS": ""}))
        builtins.register_validators(settings=load({"data_dir": str(tmp_path)}, env={}))  # not configured: silent
    assert [r.getMessage() for r in caplog.records] == [
        "validation.source_ids is set but empty (env TEA_VALIDATION__SOURCE_IDS): that allow list allows all"]


def test_unknown_validator_keys_and_telemetron_variables_are_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[processor]\nchannel_capacity = 10\n"
                      "[validation]\nstrict = true\n"
                      "[validation.plugins.SourceIdValidator]\nallowed = [1]\ntypo = 1\n"
                      "[processing.plugins.StorageProcessor]\nshards = 4\n")
    s = load({"config": str(config)}, env={"TELEMETRON_PROCESSOR__FOO": "1", "TELEMETRON_HTTP__PORT": "9000",
                                           "TELEMETRON_LOG": "debug"})
    assert s.port == 9000 and s.validation.source_ids == "1"
    assert s.warnings == [
        "Telemetron setting [validation] strict is not supported by TEA; ignored",
        "Telemetron setting [validation.plugins.SourceIdValidator] typo is not supported by TEA; ignored",
        "Telemetron setting [processing.plugins.StorageProcessor] shards is not supported by TEA; ignored",
        "Telemetron environment variable TELEMETRON_LOG is not supported by TEA; ignored",
        "Telemetron environment variable TELEMETRON_PROCESSOR__FOO is not supported by TEA; ignored"]
