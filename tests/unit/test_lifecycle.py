"""tea.lifecycle: start in order, stop in reverse under one deadline, report what did not stop."""
from __future__ import annotations

import asyncio
import time

import pytest

from tea.lifecycle import Lifecycle


def recorder(lc: Lifecycle, seen: list[str], name: str, **kw: bool) -> None:
    async def start() -> None:
        seen.append(f"start {name}")

    async def stop(_deadline: float) -> None:
        seen.append(f"stop {name}")
    lc.add(name, start, stop, **kw)


def test_services_start_in_order_and_stop_in_reverse() -> None:
    async def go() -> list[str]:
        seen: list[str] = []
        lc = Lifecycle()
        for name in ("storage", "buffer", "writer"):
            recorder(lc, seen, name)
        await lc.start()
        assert await lc.stop(5) == []
        assert await lc.stop(5) == []  # stopped once only
        return seen
    assert asyncio.run(go()) == ["start storage", "start buffer", "start writer",
                                 "stop writer", "stop buffer", "stop storage"]


def test_one_deadline_for_all_a_service_that_will_not_stop_is_cancelled_and_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        seen: list[str] = []
        cancelled: list[str] = []
        lc = Lifecycle()
        recorder(lc, seen, "storage", always=True)

        async def stubborn() -> None:  # ignores being asked to stop
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append("stubborn")
                raise
        lc.background("stubborn", stubborn, ask=lambda: None)

        async def slow_stop(_deadline: float) -> None:
            await asyncio.sleep(3600)
        lc.add("slow", None, slow_stop)
        recorder(lc, seen, "late")
        await lc.start()
        started = time.monotonic()
        late = await lc.stop(0.3)
        elapsed = time.monotonic() - started
        assert late == ["slow", "stubborn"]
        assert elapsed < 3  # one budget for all (0.3 s), not one per service
        assert cancelled == ["stubborn"]
        assert seen == ["start storage", "start late", "stop late", "stop storage"]  # (storage: always)
    asyncio.run(go())
    assert "stubborn did not stop within the 0.3 s budget" in caplog.text


def test_a_background_task_asked_to_stop_finishes_its_work_and_a_drain_gets_its_deadline() -> None:
    async def go() -> None:
        done: list[str] = []
        stop = asyncio.Event()
        deadlines: list[float] = []
        lc = Lifecycle()

        async def worker() -> None:
            await stop.wait()
            await asyncio.sleep(0.05)  # finishing up
            done.append("worker")

        async def drain(deadline: float) -> None:
            deadlines.append(deadline - time.monotonic())
        lc.background("worker", worker, ask=stop.set)
        lc.background("sender", lambda: asyncio.sleep(3600), drain=drain)
        await lc.start()
        assert await lc.stop(10) == []
        assert done == ["worker"] and 0 < deadlines[0] <= 10
    asyncio.run(go())


def test_a_failing_start_stops_what_started_before_it_and_raises() -> None:
    async def go() -> list[str]:
        seen: list[str] = []
        lc = Lifecycle()
        recorder(lc, seen, "storage")

        async def broken() -> None:
            raise OSError("port in use")
        lc.add("grpc", broken)
        recorder(lc, seen, "never")
        with pytest.raises(OSError, match="port in use"):
            await lc.start()
        return seen
    assert asyncio.run(go()) == ["start storage", "stop storage"]


def test_a_stop_that_fails_is_reported_and_the_others_still_stop(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> list[str]:
        seen: list[str] = []
        lc = Lifecycle()
        recorder(lc, seen, "storage")

        async def failing(_deadline: float) -> None:
            raise RuntimeError("disk gone")
        lc.add("buffer", None, failing)
        await lc.start()
        assert await lc.stop(5) == ["buffer"]
        return seen
    assert asyncio.run(go())[-1] == "stop storage"
    assert "buffer failed while stopping" in caplog.text
