"""Whether a storage server answers, and reads bounded by it: a stopped or hung server is a 503, soon.

A server that refuses connections fails a read at once; a hung one (stopped, overloaded, behind a
dead link) would keep a read waiting as long as the driver lets it. ``StorageHealth.bounded`` runs a
read and, once it has waited ``read_timeout_s - probe_timeout_s``, asks the server a trivial question
on a connection of its own (``ping``, bounded by ``probe_timeout_s``): no answer, and the read is
given up with ``StorageUnavailable``; an answer, and the read (just slow) keeps going. While the
last probe failed (for ``DOWN_FRESH_S``), reads are refused at once. So a read is
never cut short on a server that answers, and never waits much longer than ``read_timeout_s`` on one
that does not. One probe at a time is shared by every waiting read and by ``/health``, and its result
is kept for a moment: a thousand waiting reads or ``/health`` calls cost one probe, not a thousand.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

from tea.errors import StorageUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
OK_FRESH_S = 0.5    # a successful probe vouches for the server this long
DOWN_FRESH_S = 1.0  # a failed probe fails the reads of this long at once (Retry-After: 1)


class StorageHealth:
    def __init__(self, name: str, ping: Callable[[float], Awaitable[Any]], *, read_timeout_s: float = 2.0,
                 probe_timeout_s: float = 1.0) -> None:
        self.name = name
        self._ping = ping  # ping(timeout_s): returns once the server answered, raises otherwise
        self.read_timeout_s = read_timeout_s
        self.probe_timeout_s = min(probe_timeout_s, read_timeout_s / 2)
        self._checked_at = -1e9
        self._ok = True
        self._error: str | None = None
        self._probe: asyncio.Future[bool] | None = None

    @property
    def error(self) -> str | None:
        """The last failure's text (for the log and ``/health``), None while the server answers."""
        return None if self._ok else self._error

    def unavailable(self) -> StorageUnavailable:
        return StorageUnavailable(f"{self.name}: {self._error or 'no answer'}")

    async def is_up(self) -> bool:
        """The server answered a probe lately, or answers one now (within ``probe_timeout_s``)."""
        fresh_s = OK_FRESH_S if self._ok else DOWN_FRESH_S
        if time.monotonic() - self._checked_at < fresh_s:
            return self._ok
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._run_probe())
        return await asyncio.shield(self._probe)

    async def _run_probe(self) -> bool:
        try:
            await asyncio.wait_for(self._ping(self.probe_timeout_s), self.probe_timeout_s)
        except (Exception, asyncio.TimeoutError) as exc:  # storage boundary: any failure means "not answering"
            error = f"no answer within {self.probe_timeout_s:g} s" if isinstance(exc, asyncio.TimeoutError) \
                else str(exc)
            if self._ok:
                log.warning("%s storage does not answer: %s", self.name, error)
            self._ok, self._error = False, error
        else:
            if not self._ok:
                log.info("%s storage answers again", self.name)
            self._ok, self._error = True, None
        finally:
            self._checked_at = time.monotonic()
            self._probe = None
        return self._ok

    async def bounded(self, read: Awaitable[T]) -> T:
        """``await read``, given up with ``StorageUnavailable`` when the server stops answering."""
        if not self._ok and time.monotonic() - self._checked_at < DOWN_FRESH_S:
            _drop(read)
            raise self.unavailable()
        task = asyncio.ensure_future(read)
        try:
            wait_s = max(0.05, self.read_timeout_s - self.probe_timeout_s)
            while True:
                done, _ = await asyncio.wait((task,), timeout=wait_s)
                if done:
                    return task.result()
                if not await self.is_up():
                    raise self.unavailable()
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(retrieved)


def _drop(read: Awaitable[Any]) -> None:
    close = getattr(read, "close", None)
    if close is not None:  # a coroutine never started: closed, so it is not reported as never awaited
        close()
    elif isinstance(read, asyncio.Future):
        read.cancel()
        read.add_done_callback(retrieved)


def retrieved(task: "asyncio.Future[Any]") -> None:
    """A task nobody awaits any more (a read given up on, which a hung server may answer later) is read
    here when it ends, so that asyncio does not log its outcome as never retrieved."""
    if not task.cancelled():
        task.exception()


def first_line(exc: BaseException) -> str:
    """A driver error's first line: its text for the log, without the server's multi-line context."""
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
