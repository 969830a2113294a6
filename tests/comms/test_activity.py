"""The activity processor merges batches: counts exact, one registry write per entity per interval."""
from __future__ import annotations

import asyncio

import msgspec

from tea.comms.activity import CommunicationActivity
from tea.comms.records import Communication, to_event
from tea.comms.registry import Registry
from tea.storage.memory import MemoryStorage


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    async def put_document(self, kind, tenant_id, key, doc):  # type: ignore[no-untyped-def]
        self.puts += 1
        await super().put_document(kind, tenant_id, key, doc)


def call(i: int, status: str, tenant: str = "t") -> object:
    c = Communication(protocol="mcp", source_id="team-a", source_type="team", target_id="github", target_type="mcp",
                      operation="tool_call", status=status)  # type: ignore[arg-type]
    return msgspec.structs.replace(to_event(c), tenant_id=tenant, event_id=str(i), timestamp=1_000 + i)


def test_batches_are_merged_and_flushed_once_per_interval() -> None:
    async def main() -> None:
        storage = CountingStorage()
        registry = Registry(storage)
        await registry.register_entity("t", "team-a", "team", "A", "x")
        await registry.register_entity("t", "github", "mcp_server", "GitHub", "x")
        await registry.register_entity("u", "team-a", "team", "A of u", "x")
        storage.puts = 0
        processor = CommunicationActivity(registry, flush_interval_s=0.2)
        await processor([call(0, "success")])  # the first batch is applied at once
        assert storage.puts == 2
        for i in range(1, 50):  # the next 49 batches within the interval: merged
            await processor([call(i, "error" if i % 7 == 0 else "timeout" if i % 10 == 0 else "success"),
                             call(100 + i, "success", tenant="u")])
        assert storage.puts == 2
        await asyncio.sleep(0.4)  # the timer applies them: one write per entity
        assert storage.puts == 5
        team = await registry.get("t", "team-a", "team")
        assert team is not None and team["activity_count"] == 50 and team["last_activity"] == 1_049
        assert team["error_count"] == len([i for i in range(1, 50) if i % 7 == 0 or i % 10 == 0])
        other = await registry.get("u", "team-a", "team")
        assert other is not None and (other["activity_count"], other["error_count"]) == (49, 0)
        assert (await registry.get("t", "github", "mcp_server"))["activity_count"] == 50  # type: ignore[index]
    asyncio.run(main())
