"""The activity processor: a whole interval merged into one registry write per entity, and counts exactly
once — a replay of the log, a client's resend and an event storage never kept count nothing twice."""
from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from tea.comms.activity import CommunicationActivity
from tea.comms.records import Communication, to_event
from tea.comms.registry import COUNTED, KIND, Registry
from tea.pipeline.consume import Delivery
from tea.storage.memory import MemoryStorage
from tea.types import Batch, Event
from tests.consumers import Log


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    async def put_document(self, kind, tenant_id, key, doc):  # type: ignore[no-untyped-def]
        self.puts += 1
        await super().put_document(kind, tenant_id, key, doc)


def call(i: int, status: str, tenant: str = "t", received_at: int = 5_000) -> Event:
    c = Communication(protocol="mcp", source_id="team-a", source_type="team", target_id="github", target_type="mcp",
                      operation="tool_call", status=status)  # type: ignore[arg-type]
    return msgspec.structs.replace(to_event(c), tenant_id=tenant, event_id=str(i), timestamp=1_000 + i,
                                   received_at=received_at)


async def registry_with_entities(storage: MemoryStorage) -> Registry:
    registry = Registry(storage)
    await registry.register_entity("t", "team-a", "team", "A", "x")
    await registry.register_entity("t", "github", "mcp_server", "GitHub", "x")
    await registry.register_entity("u", "team-a", "team", "A of u", "x")
    return registry


async def counts(registry: Registry, tenant: str = "t") -> tuple[int, int]:
    team = await registry.get(tenant, "team-a", "team")
    assert team is not None and COUNTED not in team  # the positions never show
    return team["activity_count"], team["error_count"]


def test_an_interval_is_merged_into_one_write_per_entity(tmp_path: Path) -> None:
    async def main() -> None:
        storage = CountingStorage()
        registry = await registry_with_entities(storage)
        storage.puts = 0
        processor = CommunicationActivity(registry)
        records = [[call(i, "error" if i % 7 == 0 else "timeout" if i % 10 == 0 else "success"),
                    call(100 + i, "success", tenant="u")] for i in range(50)]
        for events in records:  # what the writer stored
            await storage.write_batch(Batch.from_events(events))
        async with Log(tmp_path, [("communication_activity", processor)], storage, batch_timeout_s=0.3) as log:
            await log.commit_records(*records)
            await log.passed()
        assert storage.puts == 3  # (t, team-a), (t, github), (u, team-a): once each for the 100 calls
        assert await counts(registry) == (50, len([i for i in range(50) if i % 7 == 0 or i % 10 == 0]))
        assert (await registry.get("t", "team-a", "team"))["last_activity"] == 1_049  # type: ignore[index]
        assert await counts(registry, "u") == (50, 0)
        assert (await registry.get("t", "github", "mcp_server"))["activity_count"] == 50  # type: ignore[index]
    asyncio.run(main())


def test_counts_are_exactly_once_across_replays_resends_and_refusals() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        registry = await registry_with_entities(storage)
        processor = CommunicationActivity(registry)
        first = [call(0, "success"), call(1, "error")]
        await storage.write_batch(Batch.from_events(first))
        delivery = Delivery("log-a", [(1, 0, 0), (1, 0, 1)])
        await processor(first, delivery)
        assert await counts(registry) == (2, 1)
        await processor(first, delivery)  # the log replayed after a crash: same positions
        assert await counts(registry) == (2, 1)

        resent = [call(0, "success", received_at=9_000)]  # the client sent event 0 again: storage kept the first
        assert (await storage.write_batch(Batch.from_events(resent))).duplicates == 1
        await processor(resent, Delivery("log-a", [(1, 500, 0)]))
        assert await counts(registry) == (2, 1)

        refused = [call(2, "success")]  # never stored (dead-lettered by the writer)
        await processor(refused, Delivery("log-a", [(1, 900, 0)]))
        assert await counts(registry) == (2, 1)

        twice = [call(3, "success"), call(3, "success")]  # one request carrying the same event twice
        await storage.write_batch(Batch.from_events(twice))
        await processor(twice, Delivery("log-a", [(2, 0, 0), (2, 0, 1)]))
        assert await counts(registry) == (3, 1)

        other_node = [call(4, "success")]  # another node's log: its own positions, counted on their own
        await storage.write_batch(Batch.from_events(other_node))
        await processor(other_node, Delivery("log-b", [(1, 0, 0)]))
        await processor(other_node, Delivery("log-b", [(1, 0, 0)]))
        assert await counts(registry) == (4, 1)
    asyncio.run(main())


def test_a_log_silent_for_thirty_days_is_dropped_from_the_documents() -> None:
    """Nodes replaced with empty data directories (a new log each) do not grow the entities' documents forever."""
    async def main() -> None:
        now = [1_000_000]
        storage = MemoryStorage()
        registry = Registry(storage, clock=lambda: now[0])
        await registry.register_entity("t", "team-a", "team", "A", "x")
        processor = CommunicationActivity(registry)
        old, new, later = [call(0, "success")], [call(1, "success")], [call(2, "success")]
        await storage.write_batch(Batch.from_events(old + new + later))
        await processor(old, Delivery("old-node", [(1, 0, 0)]))
        now[0] += 29 * 86_400_000_000
        await processor(new, Delivery("new-node", [(1, 0, 0)]))
        doc = await storage.get_document(KIND, "t", "team/team-a")
        assert doc is not None and set(doc[COUNTED]) == {"old-node", "new-node"}
        now[0] += 2 * 86_400_000_000  # old-node: 31 days without a count
        await processor(later, Delivery("new-node", [(1, 100, 0)]))
        doc = await storage.get_document(KIND, "t", "team/team-a")
        assert doc is not None and set(doc[COUNTED]) == {"new-node"}
    asyncio.run(main())
