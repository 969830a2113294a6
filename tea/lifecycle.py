"""One start and one stop for TEA's services.

Services are added in start order. ``start()`` starts them in that order (if one fails, those already
started are stopped and the error is raised); ``stop(budget_s)`` stops them in reverse order under one
deadline: each service's stop gets whatever is left of the budget, and one that has not stopped by
then is cancelled, logged and reported. A service added with ``always=True`` (closing storage,
releasing the data directory) is stopped to the end however late it is: it releases what the next
start needs, and it is quick.

A background service is a task: ``run`` is started as one. At stop its ``ask`` (if any) asks it to
finish (``writer.stop``) and the task has until the deadline; or its ``drain(deadline)`` lets it send what
it holds (a ``tea.batching.Batcher``'s drain) before it is cancelled; with neither it is cancelled at once.

A periodic service is a ``Periodic``: its work every interval (``periodic(job)``). It is cancelled at once at
stop, between runs or in one, and its ``final`` work (a last save) then runs to the end however late.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger(__name__)
Stop = Callable[[float], Awaitable[None]]  # given the deadline (time.monotonic() seconds)


@dataclass
class Service:
    name: str
    start: Callable[[], Awaitable[None]] | None = None
    stop: Stop | None = None
    always: bool = False  # stopped to the end: past the deadline too, or keeping to it by itself


class Lifecycle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.services: list[Service] = []
        self.started: list[Service] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def add(self, name: str, start: Callable[[], Awaitable[None]] | None = None, stop: Stop | None = None, *,
            always: bool = False) -> None:
        self.services.append(Service(name, start, stop, always))

    def background(self, name: str, run: Callable[[], Awaitable[None]], *,
                   ask: Callable[[], object] | None = None, drain: Stop | None = None,
                   final: Callable[[], Awaitable[object]] | None = None) -> None:
        """A task running ``run()`` from start until stop. At stop, ``ask()`` (sync or async) asks it to finish and
        it has until the deadline; or ``drain(deadline)`` lets it finish what it holds, and it is cancelled then;
        with neither it is cancelled at once. ``final()`` runs once the task has ended, past the deadline too."""
        async def start() -> None:
            self.tasks[name] = asyncio.create_task(_supervised(run, name), name=f"tea-{name}")

        async def stop(deadline: float) -> None:
            task = self.tasks.pop(name)
            if drain is not None:
                await drain(deadline)
            if ask is not None:
                asked = ask()
                if inspect.isawaitable(asked):
                    await asked
            else:
                task.cancel()
            try:
                await _finish(task, deadline - self.clock())
            finally:
                if final is not None:
                    await final()

        self.add(name, start, stop, always=True)  # (_finish keeps to the deadline; final is quick, as closing is)

    def periodic(self, job: "Periodic") -> None:
        """``job`` from start until stop: cancelled at once at stop, then its ``final`` work (if any)."""
        self.background(job.name, job.run, final=job.last if job.final is not None else None)

    async def start(self) -> None:
        for service in self.services:
            if service.start is not None:
                try:
                    await service.start()
                except BaseException:
                    await self.stop(5.0)
                    raise
            self.started.append(service)

    async def stop(self, budget_s: float) -> list[str]:
        """Stop what was started, in reverse order, within ``budget_s`` in all; returns the names of the services
        that did not stop in time (cancelled) or failed while stopping."""
        deadline = self.clock() + budget_s
        failed: list[str] = []
        while self.started:
            service = self.started.pop()
            if service.stop is None:
                continue
            remaining = None if service.always else max(0.0, deadline - self.clock())
            try:
                await asyncio.wait_for(service.stop(deadline), remaining)
            except asyncio.TimeoutError:
                failed.append(service.name)
                log.warning("shutdown: %s did not stop within the %.1f s budget; cancelled", service.name, budget_s)
            except Exception:
                failed.append(service.name)
                log.exception("shutdown: %s failed while stopping", service.name)
        return failed


class Periodic:
    """``work()`` every ``interval_s``, the first time at once (``at_start``) or after one interval, until
    cancelled. An error in ``work`` never ends the schedule: ``failed(exc)`` is called with it (inside the
    ``except``, so ``log.exception`` has the traceback) and the next run comes an interval later.
    ``final()``, if given, is the work to run once at stop (``Lifecycle.periodic``; ``last()``): a last save."""

    def __init__(self, name: str, work: Callable[[], Awaitable[object]], interval_s: float, *,
                 at_start: bool = True, failed: Callable[[Exception], object] | None = None,
                 final: Callable[[], Awaitable[object]] | None = None) -> None:
        self.name = name
        self.work = work
        self.interval_s = interval_s
        self.at_start = at_start
        self.failed = failed or self._log_failure
        self.final = final

    async def run(self) -> None:
        if not self.at_start:
            await asyncio.sleep(self.interval_s)
        while True:
            await self.once()
            await asyncio.sleep(self.interval_s)

    async def once(self) -> None:
        """``work()`` once; an error goes to ``failed``."""
        await self._guarded(self.work)

    async def last(self) -> None:
        """``final()`` once; an error goes to ``failed``."""
        if self.final is not None:
            await self._guarded(self.final)

    async def _guarded(self, work: Callable[[], Awaitable[object]]) -> None:
        try:
            await work()
        except Exception as exc:  # (CancelledError is not an Exception: a stop still stops)
            self.failed(exc)

    def _log_failure(self, exc: Exception) -> None:
        log.exception("the %s failed; it runs again in %g s", self.name, self.interval_s)


async def _supervised(run: Callable[[], Awaitable[None]], name: str) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:  # a background service must never die silently
        log.exception("the %s stopped on an unexpected error", name)
        raise


async def _finish(task: "asyncio.Task[None]", timeout_s: float) -> None:
    """Wait for ``task`` at most ``timeout_s``, then cancel it; raises TimeoutError when it had to be cancelled
    and the task's own error if it failed."""
    done, _ = await asyncio.wait((task,), timeout=max(0.0, timeout_s))
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise asyncio.TimeoutError
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
