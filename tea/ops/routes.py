"""``/health`` (the seed's shape and more), ``/healthz``, ``/readyz``, ``/openapi.json``."""
from __future__ import annotations

import asyncio
import os
import time

import msgspec

from tea import __version__
from tea.buffer.log import DurableBuffer
from tea.buffer.writer import Writer
from tea.http import Request, Response, Route, Router, text_response
from tea.http.openapi import build_openapi
from tea.http.response import JSON, encode_json
from tea.ops.retention import RetentionJob
from tea.ops.status import Status
from tea.query.readers import Readers
from tea.settings import Settings
from tea.storage.health import retrieved


class ConsumerLag(msgspec.Struct):
    """How far one consumer of the buffer's log (the writer, a processor) is behind the log's end."""

    lag_events: int
    lag_seconds: float


class Health(msgspec.Struct):
    """The seed's ``{status, version, uptime_seconds, events_stored, storage_backend}`` plus TEA's own."""

    status: str
    version: str
    uptime_seconds: int
    events_stored: int
    storage_backend: str
    buffer_bytes: int
    buffer_max_bytes: int
    buffer_segments: int
    writer_lag_seconds: float
    storage: str
    ready: bool
    auth_validation: bool
    retention_hours: int
    events_written: int
    duplicates_skipped: int
    storage_failures: int
    dead_lettered: int
    last_storage_error: str | None
    retention_last_run_at: float | None
    retention_purged_total: int
    retention_last_error: str | None
    data_dir_bytes: int
    auth: str
    consumers: dict[str, ConsumerLag]


async def _disk_usage(path: str) -> int:
    return await asyncio.get_running_loop().run_in_executor(None, _du, path)


def _du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                pass  # removed while walking (a released segment): fine
    return total


class Readiness(msgspec.Struct):
    """``ready`` says whether this node takes traffic. A storage outage does not make it unready — the
    durable buffer keeps acknowledging until it is full — but it is reported here."""

    ready: bool
    reason: str | None = None
    storage: str = "ok"            # "ok" or "unreachable" (the writer's last attempt failed)
    writer_lag_seconds: float = 0.0
    buffer_bytes: int = 0
    last_storage_error: str | None = None


class StorageCheck:
    """``/health``'s look at storage, answered within ``timeout_s`` however many calls come and however
    the server fails: the backend's shared probe (``StorageHealth``: one at a time, its result kept a
    moment) says whether the server answers; the event count is one shared query, and when it takes
    longer the last count is reported while it goes on."""

    def __init__(self, readers: Readers, status: Status, timeout_s: float) -> None:
        self.readers = readers
        self.status = status
        self.timeout_s = timeout_s
        self._count: asyncio.Task[int] | None = None

    async def run(self) -> None:
        probe = getattr(self.readers.storage, "health", None)  # (embedded backends have none: never down)
        if probe is not None and not await probe.is_up():
            self.status.storage_reachable = False
            return
        if self._count is None or self._count.done():
            self._count = asyncio.ensure_future(self.readers.system().count())
            self._count.add_done_callback(retrieved)  # (its outcome is read even if no /health call waits for it)
        done, _ = await asyncio.wait((self._count,), timeout=self.timeout_s)
        if not done:  # slow, not gone (the probe, where there is one, answered): the last count stands
            if probe is not None:
                self.status.storage_reachable = True
            return
        try:
            self.status.events_stored = self._count.result()
        except Exception:  # storage boundary: report the last known count, flag degraded
            self.status.storage_reachable = False
        else:
            self.status.storage_reachable = True


def routes(settings: Settings, status: Status, buffer: DurableBuffer, writer: Writer, retention: RetentionJob,
           readers: Readers, router: Router) -> list[Route]:
    openapi_doc: list[bytes] = []  # built at the first request, once every route is registered

    storage_check = StorageCheck(readers, status, settings.storage.probe_timeout_s)

    async def health(request: Request) -> Response:
        stats = writer.stats
        storage = readers.system()
        await storage_check.run()
        recent_failure = stats.last_error_at is not None and time.time() - stats.last_error_at < 60
        degraded = (recent_failure or stats.failing or not status.storage_reachable
                    or buffer.backlog_bytes > 0.9 * buffer.max_bytes)
        body = Health(
            status="degraded" if degraded else "healthy", version=__version__,
            uptime_seconds=int(time.monotonic() - status.started_monotonic), events_stored=status.events_stored,
            storage_backend=storage.name, buffer_bytes=buffer.backlog_bytes,
            buffer_max_bytes=buffer.max_bytes, buffer_segments=buffer.segment_count,
            writer_lag_seconds=round(writer.lag_seconds(), 3),
            storage="unreachable" if stats.failing or not status.storage_reachable else "ok",
            ready=status.is_ready()[0], auth_validation=settings.auth_validation,
            retention_hours=settings.retention_hours_effective,
            events_written=stats.events_written, duplicates_skipped=stats.duplicates,
            storage_failures=stats.failures, dead_lettered=stats.dead_lettered,
            last_storage_error=stats.last_error if recent_failure or stats.failing else None,
            retention_last_run_at=retention.last_run_at, retention_purged_total=retention.purged_total,
            retention_last_error=retention.last_error, data_dir_bytes=await _disk_usage(settings.data_dir),
            auth="enabled" if settings.auth_validation else "disabled",
            consumers={name: ConsumerLag(buffer.lag_events(c), round(buffer.lag_seconds(c), 3))
                       for name, c in sorted(buffer.cursors.items())})
        return Response(encode_json(body), 200, JSON)

    async def healthz(request: Request) -> Response:
        return text_response("OK")

    async def readyz(request: Request) -> Response:
        ready, reason = status.is_ready()
        stats = writer.stats
        body = Readiness(ready, reason, "unreachable" if stats.failing else "ok",
                         round(writer.lag_seconds(), 3), buffer.backlog_bytes,
                         stats.last_error if stats.failing else None)
        return Response(encode_json(body), 200 if ready else 503, JSON, None if ready else {"retry-after": "1"})

    async def openapi(request: Request) -> Response:
        if not openapi_doc:
            openapi_doc.append(encode_json(build_openapi(
                router.routes, "TEA — Telemetry & Event Recorder", __version__,
                "Durable, multi-tenant telemetry and event recording. Every route is also documented in the "
                "README with curl examples.", auth=settings.auth_validation)))
        return Response(openapi_doc[0], 200, JSON)

    return [
        Route("GET", "/health", health, "Service health, storage and buffer state", tags=("operations",),
              responses={200: ("Health", {"application/json": Health})}, scope=None),
        Route("GET", "/healthz", healthz, "Liveness: 200 OK while the process serves", tags=("operations",),
              responses={200: ("OK", {"text/plain": {"type": "string", "const": "OK"}})}, scope=None),
        Route("GET", "/readyz", readyz,
              "Readiness: 200 once storage is open and the buffer replayed; 503 otherwise",
              tags=("operations",), responses={200: ("Ready", {"application/json": Readiness}),
                                               503: ("Not ready", {"application/json": Readiness})},
              scope=None),
        Route("GET", "/openapi.json", openapi, "This document", tags=("operations",),
              responses={200: ("OpenAPI 3.1", {"application/json": {"type": "object"}})}, scope=None),
    ]
