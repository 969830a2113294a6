"""tea.lifecycle: start in order, stop in reverse under one deadline, report what did not stop; ``Periodic``: work
every interval (the first at once or an interval after start), errors logged and the schedule kept, cancelled at
stop, then a final run."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Awaitable, Callable

import pytest

from tea.lifecycle import Lifecycle, Periodic


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


async def until(condition: "Callable[[], bool]", timeout_s: float = 10.0) -> None:
    """Yield to the event loop until ``condition()`` holds (a generous bound: not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(job: Periodic) -> "AsyncIterator[asyncio.Task[None]]":
    """``job.run()`` as a task for the block's length, cancelled after it."""
    task = asyncio.create_task(job.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settle() -> None:
    """A few turns of the event loop: what is due without a timer has happened."""
    for _ in range(5):
        await asyncio.sleep(0)


def counting(runs: list[int]) -> "Callable[[], Awaitable[None]]":
    async def work() -> None:
        runs.append(len(runs))
    return work


def test_periodic_work_runs_at_once_then_every_interval() -> None:
    async def go() -> None:
        runs: list[int] = []
        async with running(Periodic("tick", counting(runs), 0.01)):
            await asyncio.sleep(0)
            assert runs == [0]  # the first run at start
            await until(lambda: len(runs) >= 4)  # then once per interval
    asyncio.run(go())


def test_periodic_work_can_wait_one_interval_before_the_first_run() -> None:
    async def go() -> None:
        waiting: list[int] = []
        async with running(Periodic("save", counting(waiting), 3600, at_start=False)):
            await settle()
            assert waiting == []  # not before the first interval ends
        runs: list[int] = []
        async with running(Periodic("save", counting(runs), 0.01, at_start=False)):
            await until(lambda: len(runs) >= 2)  # then once per interval
    asyncio.run(go())


def test_an_error_is_logged_and_the_schedule_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        runs: list[int] = []

        async def flaky() -> None:
            runs.append(len(runs))
            if len(runs) <= 2:
                raise OSError("disk gone")
        async with running(Periodic("flaky job", flaky, 0.01)) as task:
            await until(lambda: len(runs) >= 4)
            assert not task.done()
    asyncio.run(go())
    failures = [r for r in caplog.records if "the flaky job failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info and "disk gone" in str(r.exc_info[1]) for r in failures)


def test_a_failure_handler_gets_the_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> list[str]:
        seen: list[str] = []

        async def broken() -> None:
            raise ValueError("bad rule")

        def failed(exc: Exception) -> None:
            seen.append(str(exc))
            logging.getLogger("caller").exception("evaluation failed")  # (inside the except: the traceback)
        async with running(Periodic("check", broken, 0.01, failed=failed)):
            await until(lambda: len(seen) >= 2)
        return seen
    assert asyncio.run(go())[:2] == ["bad rule", "bad rule"]
    assert "the check failed" not in caplog.text  # the handler replaced the default log line
    assert any(r.name == "caller" and r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_a_periodic_service_stops_within_the_budget_mid_run_and_then_runs_its_final_work() -> None:
    async def go() -> None:
        seen: list[str] = []
        started = asyncio.Event()

        async def slow_work() -> None:  # a run still going at stop
            started.set()
            await asyncio.sleep(3600)

        async def final() -> None:
            seen.append("final")
        lc = Lifecycle()
        lc.periodic(Periodic("slow", slow_work, 3600, final=final))
        lc.periodic(Periodic("idle", counting([]), 3600, at_start=False))  # between runs
        await lc.start()
        await started.wait()
        assert await lc.stop(30) == []  # cancelled at once: in time, not at the deadline
        assert seen == ["final"] and lc.tasks == {}
    asyncio.run(go())


def test_the_final_run_happens_past_the_deadline_too_and_its_error_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> list[str]:
        seen: list[str] = []

        async def stubborn() -> None:  # ignores one cancellation
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(3600)

        async def final() -> None:
            seen.append("final")
            raise OSError("storage gone")
        lc = Lifecycle()
        lc.periodic(Periodic("saver", stubborn, 3600, final=final))
        await lc.start()
        await asyncio.sleep(0)
        assert await lc.stop(0) == ["saver"]  # reported late, and still saved
        return seen
    assert asyncio.run(go()) == ["final"]
    assert "the saver failed" in caplog.text and "storage gone" in caplog.text
