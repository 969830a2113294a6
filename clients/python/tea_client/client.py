"""``TeaClient`` and ``AsyncTeaClient``: record events without ever blocking or failing the application.

``record()`` puts the caller's keywords and the time on a bounded queue and returns; a sender thread
builds the events (ids, timestamps), encodes, gzips, signs and sends them in batches, retries, and
spools to disk when TEA is unreachable. ``flush()`` and ``close()`` wait for that within a time
budget; ``close()`` also runs at interpreter exit.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from time import monotonic as _monotonic
from time import time as _time
from typing import Any, Callable, Dict, Mapping, Optional

from tea_client import _wire
from tea_client._core import Core
from tea_client._sender import Sender, Settings
from tea_client.spool import Spool
from tea_client.timing import Timed
from tea_client.transport import Transport, default_gzip_level, normalise_endpoint

log = logging.getLogger("tea_client")
_EVENTS = _wire.EVENTS
_TRUE = ("1", "true", "yes", "on")


def do_not_track(env: Optional[Mapping[str, str]] = None) -> bool:
    """``DO_NOT_TRACK=1`` (also ``true``/``yes``) in the environment: send nothing."""
    return (env if env is not None else os.environ).get("DO_NOT_TRACK", "").strip().lower() in _TRUE


class TeaClient:
    """Records events to TEA from any thread. Without arguments it reads ``TEA_ENDPOINT``, ``TEA_TOKEN``,
    ``TEA_SECRET`` (and ``TEA_SPOOL_DIR``) from the environment.

    ``token`` is an API token (``tk_…``) or a JWT, sent as ``Authorization: Bearer``; with ``secret``
    (the token's signing secret) every request is HMAC-signed as TEA's ``/v1/tokens`` describes.
    ``spool_dir`` turns on the disk spool: batches TEA cannot take are kept there (at most
    ``max_spool_bytes``) and sent, oldest first, once it is back — by this process or the next one.
    ``source`` and ``tenant_id`` fill those columns of every event that does not name its own;
    ``defaults`` does the same for any column.
    """

    def __init__(self, endpoint: Optional[str] = None, token: Optional[str] = None, secret: Optional[str] = None,
                 spool_dir: Optional[str] = None, *, source: Optional[str] = None, tenant_id: Optional[str] = None,
                 defaults: Optional[Mapping[str, Any]] = None, max_queue_events: int = 2048,
                 max_batch_events: int = 512, flush_interval_ms: float = 1000.0, max_in_flight: int = 4,
                 max_spool_bytes: int = 64 * 1024 * 1024, request_timeout_s: float = 10.0,
                 retry_timeout_s: float = 300.0, max_backoff_s: float = 30.0, gzip_level: Optional[int] = None,
                 headers: Optional[Mapping[str, str]] = None, enabled: Optional[bool] = None,
                 close_at_exit: bool = True, exit_timeout_s: float = 5.0) -> None:
        env = os.environ
        self.enabled = (not do_not_track()) if enabled is None else bool(enabled and not do_not_track())
        self.endpoint = normalise_endpoint(endpoint or env.get("TEA_ENDPOINT") or "") if self.enabled else (
            endpoint or env.get("TEA_ENDPOINT"))
        if max_queue_events < 1 or max_batch_events < 1 or flush_interval_ms <= 0:
            raise ValueError("max_queue_events and max_batch_events must be >= 1, flush_interval_ms > 0")
        self._defaults: Dict[str, Any] = {k: v for k, v in (defaults or {}).items() if v is not None}
        if source is not None:
            self._defaults["source"] = source
        if tenant_id is not None:
            self._defaults["tenant_id"] = tenant_id
        self._bind(Core(max_queue_events, max_batch_events, flush_interval_ms / 1000.0))
        self._token = token or env.get("TEA_TOKEN") or None
        self._secret = secret or env.get("TEA_SECRET") or None
        if gzip_level is None:
            gzip_level = default_gzip_level(self.endpoint) if self.enabled else 1
        self._transport_args = dict(timeout_s=request_timeout_s, gzip_level=gzip_level, headers=dict(headers or {}))
        self._settings = Settings(max_in_flight=max_in_flight, initial_backoff_s=0.5, max_backoff_s=max_backoff_s,
                                  retry_timeout_s=retry_timeout_s, gzip_level=gzip_level)
        spool_dir = spool_dir or env.get("TEA_SPOOL_DIR") or None
        self._spool_args = (spool_dir, max_spool_bytes)
        self._exit_timeout_s = exit_timeout_s
        self._closed = False
        self._accepting = self.enabled
        self._thread: Optional[threading.Thread] = None
        if self.enabled:
            self._start()
            if close_at_exit:
                atexit.register(_close_at_exit, weakref.ref(self))
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=lambda ref=weakref.ref(self): _restart_in_child(ref))

    def _bind(self, core: Core) -> None:
        self._core, self._queue, self._numbers = core, core.queue, core.numbers
        self._batch_events = core.max_batch_events

    def _start(self) -> None:
        spool_dir, max_spool_bytes = self._spool_args
        spool = Spool(spool_dir, max_spool_bytes) if spool_dir else None
        def lane() -> Transport:
            return Transport(self.endpoint, self._token, self._secret, **self._transport_args)  # type: ignore[arg-type]
        self._spool = spool
        self._sender = Sender(self._core, lane, spool, self._settings, self._defaults)
        self._thread = threading.Thread(target=self._sender.run, name="tea-client-sender", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ recording
    def record(self, event_type: str, **fields: Any) -> None:
        """Queue one event. TEA's columns (``method``, ``duration_ms``, ``status``, ``user_id``, …) are taken
        as such; any other keyword goes into ``attributes``. Never blocks, never raises."""
        if self._accepting:
            try:  # Core.put, inlined: this is the cost the application pays per event
                next(self._numbers)
                queue = self._queue
                queue.append((_EVENTS, _time(), event_type, fields))
                if len(queue) >= self._batch_events:
                    self._core.poke()
            except Exception:  # only a bug could get here; the application must not see it
                log.debug("tea-client: record failed", exc_info=True)

    def record_communication(self, **row: Any) -> None:
        """Queue one ElfAutomations ``communication_telemetry`` row for ``POST /v1/communications``."""
        if self._accepting:
            try:
                self._core.put((_wire.COMMUNICATIONS, _time(), None, row))
            except Exception:
                log.debug("tea-client: record_communication failed", exc_info=True)

    def _defer(self, builder: Callable[[float, Any], Optional[Dict[str, Any]]], payload: Any) -> None:
        """Queue an event that ``builder(t, payload)`` builds later, on the sender thread (the MCP middleware)."""
        if self._accepting:
            try:
                self._core.put((_EVENTS, _time(), builder, payload))
            except Exception:
                log.debug("tea-client: record failed", exc_info=True)

    def timed(self, event_type: str, **fields: Any) -> Timed:
        """A context manager (``with`` / ``async with``) and decorator that records one event per block or
        call: ``duration_ms``, ``status`` ok/error and, on an exception, ``error_type`` and ``error_message``."""
        return Timed(self.record, event_type, fields)

    def track_command(self, command: str, success: Optional[bool] = None, duration_ms: Optional[float] = None,
                      exit_code: Optional[int] = None, *, subcommand: Optional[str] = None,
                      flags: Optional[list] = None, **data: Any) -> None:
        """telemetry-kit's ``track_command``: an event ``command_execution`` (category ``usage``)."""
        payload = {"command": command, "subcommand": subcommand, "flags": flags, "success": success,
                   "duration_ms": duration_ms, "exit_code": exit_code, **data}
        self.record("command_execution", method=command, status=_status(success), duration_ms=duration_ms,
                    category="usage", data={k: v for k, v in payload.items() if v is not None})

    def track_feature(self, feature: str, method: Optional[str] = None, success: Optional[bool] = None,
                      **data: Any) -> None:
        """telemetry-kit's ``track_feature``: an event ``feature_used`` (category ``library``)."""
        payload = {"feature": feature, "method": method, "success": success, **data}
        self.record("feature_used", method=feature, status=_status(success), category="library",
                    data={k: v for k, v in payload.items() if v is not None})

    # ------------------------------------------------------------ delivery
    def flush(self, timeout: float = 5.0) -> bool:
        """Send what was recorded before the call (and the spool's backlog); True when all of it was delivered,
        refused or dropped within ``timeout`` seconds, False when time ran out (the rest stays queued)."""
        if not self.enabled or self._thread is None or not self._thread.is_alive():
            return not self.enabled
        return self._core.flush(timeout, until_spool_empty=True)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush within ``timeout`` seconds, then stop. True when nothing was left in memory (every event
        delivered, refused, or written to the spool); what is still in memory when time runs out goes to the
        spool, or is dropped (counted as ``closed``) without one. Idempotent; later ``record()`` calls are
        ignored. A spool backlog stays on disk for the next client."""
        if not self.enabled or self._closed:
            self._closed, self._accepting = True, False
            return True
        delivered = self._core.flush(timeout, until_spool_empty=False)
        core = self._core
        with core.lock:
            core.closing = True
            core.close_deadline = _monotonic() + (0.0 if not delivered else 0.5)
        self._closed, self._accepting = True, False
        core.wake.set()
        if self._thread is not None:
            self._thread.join(max(1.0, timeout))
        return delivered

    def stats(self) -> Dict[str, Any]:
        """The client's own counters: recorded, queued, sent, rejected (refused by TEA), dropped (lost:
        ``dropped_by_reason``), retried (failed attempts), spooled, spool files and bytes, requests."""
        out = self._core.stats()
        out["enabled"] = self.enabled
        return out

    def __enter__(self) -> "TeaClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "TeaClient(%r, enabled=%s)" % (self.endpoint, self.enabled)


class AsyncTeaClient:
    """``TeaClient`` for asyncio code: the same methods, as coroutines. Delivery runs on the same sender
    thread (never on the event loop), so it goes on while the loop is busy and can finish at exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.client = TeaClient(*args, **kwargs)

    @property
    def enabled(self) -> bool:
        return self.client.enabled

    async def record(self, event_type: str, **fields: Any) -> None:
        self.client.record(event_type, **fields)

    async def record_communication(self, **row: Any) -> None:
        self.client.record_communication(**row)

    async def track_command(self, command: str, success: Optional[bool] = None,
                            duration_ms: Optional[float] = None, exit_code: Optional[int] = None,
                            **kwargs: Any) -> None:
        self.client.track_command(command, success, duration_ms, exit_code, **kwargs)

    async def track_feature(self, feature: str, method: Optional[str] = None, success: Optional[bool] = None,
                            **data: Any) -> None:
        self.client.track_feature(feature, method, success, **data)

    def timed(self, event_type: str, **fields: Any) -> Timed:
        return self.client.timed(event_type, **fields)

    async def flush(self, timeout: float = 5.0) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.client.flush, timeout)

    async def close(self, timeout: float = 5.0) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.client.close, timeout)

    async def stats(self) -> Dict[str, Any]:
        return self.client.stats()

    async def __aenter__(self) -> "AsyncTeaClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


_default: Optional[TeaClient] = None
_default_lock = threading.Lock()


def default_client() -> TeaClient:
    """One process-wide client from the environment (``TEA_ENDPOINT``, ``TEA_TOKEN``, ``TEA_SECRET``), made on
    first use; disabled (recording nothing) when ``TEA_ENDPOINT`` is unset or ``DO_NOT_TRACK=1``."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = TeaClient(enabled=bool(os.environ.get("TEA_ENDPOINT")))
    return _default


def _status(success: Optional[bool]) -> Optional[str]:
    return None if success is None else ("ok" if success else "error")


def _close_at_exit(ref: "weakref.ReferenceType[TeaClient]") -> None:
    client = ref()
    if client is not None:
        client.close(client._exit_timeout_s)


def _restart_in_child(ref: "weakref.ReferenceType[TeaClient]") -> None:
    """After fork() the child has the queue but no sender thread: a fresh queue and thread of its own."""
    client = ref()
    if client is not None and client.enabled and not client._closed:
        core = client._core
        client._bind(Core(core.max_queue_events, core.max_batch_events, core.flush_interval_s))
        client._start()

