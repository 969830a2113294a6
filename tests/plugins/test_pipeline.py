"""The plugin pipeline with plugins passed in: validator stages, processors with retries, the DLQ
and its replay; the built-in stages; and a test that every hook is exercised."""
from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import msgspec

from tea import hookspecs
from tea.hookspecs import hookimpl
from tea.pipeline.stages import Drop, Invalid, PiiRedactor
from tea.storage.memory import MemoryStorage
from tea.types import Event
from tests.auth.conftest import admin_headers


class FlakyProcessor:
    """Fails while ``failing`` is set, counting calls; keeps what it saw."""

    def __init__(self, fail_times: int = 0, failing: bool = False) -> None:
        self.fail_times, self.failing, self.calls = fail_times, failing, 0
        self.seen: list[str] = []

    async def __call__(self, events: list[Event]) -> None:
        self.calls += 1
        if self.failing or self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("sink unavailable")
        self.seen.extend(e.event_id for e in events)  # type: ignore[misc]


class SamplePlugin:
    def __init__(self, processor: FlakyProcessor) -> None:
        self.processor = processor

    @hookimpl
    def register_validators(self, settings):  # type: ignore[no-untyped-def]
        def refuse_red(event: Event) -> Event:
            if event.event_type == "red":
                raise Invalid("no_red", "red events are refused", "event_type")
            if event.event_type == "noise":
                raise Drop()
            return event
        return [refuse_red]

    @hookimpl
    def register_processors(self, settings, storage):  # type: ignore[no-untyped-def]
        return [("flaky", self.processor)]

    @hookimpl
    def register_routes(self, services):  # type: ignore[no-untyped-def]
        from tea.http import Route, text_response

        async def ping(request):  # type: ignore[no-untyped-def]
            return text_response("pong")
        return [Route("GET", "/plugin/ping", ping, "A receiver from a plugin", scope=None)]

    @hookimpl
    def register_storage(self, settings):  # type: ignore[no-untyped-def]
        return None  # not ours: the built-in backend answers


def start(serve, processor: FlakyProcessor, **overrides):  # type: ignore[no-untyped-def]
    from tea.app import TeaApp
    from tests.conftest import InProcessServer, make_settings
    settings = make_settings(overrides.pop("data_dir"), **{"processing__batch_timeout_ms": 20.0,
                                                          "processing__retry_delay_ms": 10.0,
                                                          "writer__flush_interval_ms": 20.0, **overrides})
    return InProcessServer(TeaApp(settings, plugins=[SamplePlugin(processor)])).start()


def test_validators_refuse_and_drop_and_receivers_are_served(tmp_path: Path) -> None:
    processor = FlakyProcessor()
    live = start(None, processor, data_dir=tmp_path / "d", storage_backend="memory")
    try:
        r = live.client.post("/v1/events", json=[{"event_type": "ok", "event_id": "a"},
                                                      {"event_type": "red", "event_id": "b"},
                                                      {"event_type": "noise", "event_id": "c"}])
        assert r.status_code == 207
        assert r.json()["event_ids"] == ["a"] and r.json()["errors"] == [
            {"index": 1, "error": "no_red", "message": "red events are refused", "event_id": "b",
             "field": "event_type"}]
        assert live.client.get("/plugin/ping").text == "pong"
        live.wait_stored(1)
        for _ in range(200):
            if processor.seen:
                break
            time.sleep(0.01)
        assert processor.seen == ["a"]
        assert live.app.normaliser.dropped == 1
    finally:
        live.stop()


def test_retries_then_success_needs_no_dlq(tmp_path: Path) -> None:
    processor = FlakyProcessor(fail_times=2)
    live = start(None, processor, data_dir=tmp_path / "d", storage_backend="memory", processing__retry_attempts=3)
    try:
        live.client.post("/v1/events", json=[{"event_type": "ok", "event_id": "x1"}])
        for _ in range(300):
            if processor.seen:
                break
            time.sleep(0.01)
        assert processor.seen == ["x1"] and processor.calls == 3
        assert live.client.get("/v1/dlq").json()["entries"] == []
    finally:
        live.stop()


def test_permanent_failure_goes_to_the_dlq_and_replays_once(tmp_path: Path) -> None:
    processor = FlakyProcessor(failing=True)
    live = start(None, processor, data_dir=tmp_path / "d", storage_backend="duckdb", processing__retry_attempts=2,
                 auth_validation=True, admin_token="a" * 40)
    try:
        headers = admin_headers() | {"authorization": "Bearer " + "a" * 40}
        events = [{"event_type": "ok", "event_id": f"e{i}", "tenant_id": "t"} for i in range(5)]
        assert live.client.post("/v1/events", json=events, headers=headers).status_code == 200
        entries: list = []
        for _ in range(300):
            entries = live.client.get("/v1/dlq", headers=headers).json()["entries"]
            if entries:
                break
            time.sleep(0.02)
        [entry] = entries
        assert entry["stage"] == "flaky" and entry["attempts"] == 2 and entry["event_count"] == 5  # 2 in all
        assert "sink unavailable" in entry["error"]
        assert 'tea_dlq_entries_total{stage="flaky"} 1.0' in live.client.get("/metrics").text
        still = live.client.post(f"/v1/dlq/{entry['id']}/replay", headers=headers)
        assert still.status_code == 502 and still.json()["replayed"] is False
        processor.failing = False
        done = live.client.post(f"/v1/dlq/{entry['id']}/replay", headers=headers)
        assert done.status_code == 200 and done.json() == {"id": entry["id"], "stage": "flaky", "events": 5,
                                                           "replayed": True}
        assert sorted(processor.seen) == [f"e{i}" for i in range(5)]  # exactly once
        assert live.client.get("/v1/dlq", headers=headers).json()["entries"] == []
        assert live.client.post(f"/v1/dlq/{entry['id']}/replay", headers=headers).status_code == 404
        stored = live.client.get("/v1/events", headers=headers).json()["total_count"]
        assert stored == 5  # storage holds each event once: the DLQ is about the processor, not storage
    finally:
        live.stop()


def test_builtin_validators_from_settings(serve, tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "purchase.json").write_text(json.dumps({
        "type": "object", "required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0}}}))
    live = serve(storage_backend="memory", socket=False, validation__source_ids="web,app", validation__event_types="purchase,view",
                 validation__schema_dir=str(schemas), pii__hash_user_id=True, pii__redact=True)
    r = live.client.post("/v1/events", json=[
        {"event_type": "purchase", "source": "web", "attributes": {"amount": 10}, "user_id": "alice"},
        {"event_type": "purchase", "source": "web", "attributes": {"amount": -1}},
        {"event_type": "view", "source": "tv"},
        {"event_type": "delete", "source": "app"},
        {"event_type": "view", "source": "app", "user_id": "0123456789abcdef",
         "attributes": {"password": "hunter2", "nested": {"api_key": "k", "ok": 1}, "list": [{"email": "a@b"}]}}])
    assert r.status_code == 207
    assert [(e["index"], e["error"], e["field"]) for e in r.json()["errors"]] == [
        (1, "schema_mismatch", "attributes.amount"), (2, "disallowed_source", "source"),
        (3, "disallowed_event_type", "event_type")]
    assert r.json()["errors"][1]["message"] == "Disallowed source_id: tv"
    live.wait_stored(2)
    events = {e["event_type"]: e for e in live.client.get("/v1/events").json()["events"]}
    import hashlib
    assert events["purchase"]["user_id"] == hashlib.sha256(b"alice").hexdigest()[:16]
    assert events["view"]["user_id"] == "0123456789abcdef"  # already a hash: kept
    assert events["view"]["attributes"] == {"password": "[REDACTED]", "nested": {"api_key": "[REDACTED]", "ok": 1},
                                            "list": [{"email": "[REDACTED]"}]}


def test_pii_keys_setting_replaces_the_seeds_list() -> None:
    from tea import builtins
    from tea.settings import load
    settings = load({}, env={"TEA_PII__REDACT": "true", "TEA_PII__KEYS": "nickname, SSN"})
    [redactor] = builtins.register_validators(settings=settings)
    event = Event(event_type="x", user_id="alice", attributes=msgspec.Raw(json.dumps(
        {"nickname": "al", "ssn": "1", "email": "a@b", "api_token": "t", "auth": "x", "note": {"NickName": "n"}}
    ).encode()))
    assert msgspec.json.decode(redactor(event).attributes) == {
        "nickname": "[REDACTED]", "ssn": "[REDACTED]",
        "email": "a@b", "auth": "x",   # the seed's keys, no longer listed: kept
        "api_token": "[REDACTED]",     # still: keys containing password/token/key/secret
        "note": {"NickName": "[REDACTED]"}}
    assert event.user_id == "alice"  # hashing is its own setting


def test_pii_redactor_leaves_clean_attributes_untouched() -> None:
    event = Event(event_type="x", attributes=msgspec.Raw(b'{"a": 1, "b": [1, 2]}'))
    assert bytes(PiiRedactor()(event).attributes) == b'{"a": 1, "b": [1, 2]}'


class WrappedMemory(MemoryStorage):
    """A third-party backend: the memory backend under another name, counting its writes."""

    name = "wrapped"
    writes = 0

    async def write_batch(self, batch):  # type: ignore[no-untyped-def]
        WrappedMemory.writes += 1
        return await super().write_batch(batch)


class StoragePlugin:
    @hookimpl
    def storage_backends(self):  # type: ignore[no-untyped-def]
        return ["wrapped"]

    @hookimpl
    def register_storage(self, settings):  # type: ignore[no-untyped-def]
        return WrappedMemory() if settings.storage_backend == "wrapped" else None


def test_a_plugin_provides_a_storage_backend_by_name(tmp_path: Path) -> None:
    from tea.app import TeaApp
    from tea.settings import load
    from tests.conftest import InProcessServer, make_settings
    assert load({"storage_backend": "wrapped"}, env={}).storage_backend == "wrapped"  # not limited to built-ins
    settings = make_settings(tmp_path / "d", storage_backend="wrapped", writer__flush_interval_ms=20.0)
    live = InProcessServer(TeaApp(settings, plugins=[StoragePlugin()])).start()
    try:
        assert isinstance(live.app.storage, WrappedMemory)
        assert live.client.post("/v1/events", json=[{"event_type": "ok", "event_id": "w1"}]).status_code == 200
        live.wait_stored(1)
        assert WrappedMemory.writes >= 1
        assert [e["event_id"] for e in live.client.get("/v1/events").json()["events"]] == ["w1"]
        assert live.client.get("/health").json()["storage_backend"] == "wrapped"
    finally:
        live.stop()


def test_a_backend_no_plugin_provides_is_a_one_line_error(tmp_path: Path) -> None:
    import pytest

    from tea.app import TeaApp
    from tea.errors import ConfigError
    from tests.conftest import make_settings
    with pytest.raises(ConfigError) as caught:
        TeaApp(make_settings(tmp_path / "d", storage_backend="sqlite"), plugins=[StoragePlugin()])
    assert str(caught.value) == ("invalid storage_backend='sqlite': no plugin provides it "
                                 "(available: clickhouse, duckdb, memory, postgres, wrapped)")
    # `tea serve` prints it as one line and exits 2: tests/unit/test_cli.py


def test_every_hook_has_a_test() -> None:
    source = Path(__file__).read_text()
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]
    assert hooks and all(f"def {hook}(" in source for hook in hooks), hooks
