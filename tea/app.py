"""``TeaApp``: the ASGI application. Its lifespan owns storage, the durable buffer and the writer.

Start-up: lock the data directory, open storage, open the buffer (recovering segments left by a
crash), start the writer (which replays them first — ``/readyz`` turns ready when it has), the
processors (each reading the buffer behind the writer from its own position) and the retention job.
Shutdown (after the server stopped accepting and in-flight requests finished): flush and close the
buffer, let the writer drain it into storage and the processors catch up, within ``shutdown_timeout_s``,
close storage. What is not stored or processed in time stays in the buffer, and the writer and each
processor resume from their own positions at the next start.
"""
from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import time
from typing import Any, Awaitable, Callable, Sequence

from tea import __version__
from tea.auth.keys import SecretBox, load_master_key
from tea.compose import compose
from tea.services import provide
from tea.errors import ClientError
from tea.http import Request, Response
from tea.http.params import parse
from tea.http.request import ClientDisconnected
from tea.http.response import JSON, encode_json
from tea.http.schemas import ErrorBody
from tea.settings import Settings, mask
from tea.storage.base import Storage
from tea.timeutil import now_us

log = logging.getLogger(__name__)
NOTIFY_DRAIN_S = 10.0  # at shutdown, the most time queued alert notifications get (within shutdown_timeout_s)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class StartupError(Exception):
    """TEA cannot start (data directory in use, storage unreachable...); the message says why."""


class TeaApp:
    """The ASGI application over the services ``tea.compose`` built: lifespan and dispatch. The services
    are reachable as attributes (``app.writer``, ``app.storage``, ``app.router``...)."""

    def __init__(self, settings: Settings, storage: Storage | None = None,
                 clock: Callable[[], int] = now_us, plugins: Sequence[Any] = ()) -> None:
        self.services = compose(settings, storage, clock, plugins)
        self.settings = settings
        self.router = self.services.router
        self.gate = self.services.gate
        self.telemetry = self.services.telemetry
        self._tasks: list[asyncio.Task[None]] = []
        self._notifier_task: asyncio.Task[None] | None = None  # (stopped last at shutdown: see shutdown)
        self._lock_fd = -1
        self._tasks_dev: asyncio.Task[None] | None = None
        self.dev_warning_every_s = 3600.0  # development mode repeats its warning this often
        self.grpc: Any = None
        self._processors_task: asyncio.Task[None] | None = None  # (stopped after the writer: see shutdown)

    def __getattr__(self, name: str) -> Any:
        if name == "services":  # (not built: __init__ failed)
            raise AttributeError(name)
        return getattr(self.services, name)  # (only names TeaApp itself lacks: never on the request path)

    # ----------------------------------------------------------------- lifespan
    async def startup(self) -> None:
        os.makedirs(self.settings.data_dir, exist_ok=True)
        self._lock_data_dir()
        try:
            self.services.tokens.box = SecretBox(load_master_key(self.settings.secret_key, self.settings.data_dir))
        except Exception:
            self._unlock_data_dir()
            raise
        if not self.settings.auth_validation:
            self._tasks_dev = asyncio.create_task(_warn_dev_mode(self.dev_warning_every_s),
                                                  name="tea-dev-mode-warning")
        try:
            await self.services.storage.open()
        except Exception as exc:
            self._unlock_data_dir()
            raise StartupError(f"cannot open {self.services.storage.name} storage: {exc}") from exc
        await self.services.buffer.open()
        if self.services.quotas is not None:
            try:
                await self.services.quotas.load()
            except Exception as exc:  # storage boundary: start counting the month from what is in memory
                log.error("loading the monthly quota counters failed: %s", exc)
        writer = self._supervise(self.services.writer.run(), "writer")
        self._tasks.append(asyncio.create_task(writer, name="tea-writer"))
        self._tasks.append(asyncio.create_task(self.services.retention.run(), name="tea-retention"))
        self._tasks.append(asyncio.create_task(self.services.audit.run(), name="tea-audit"))
        if self.services.quotas is not None:
            self._tasks.append(asyncio.create_task(self.services.quotas.run(), name="tea-quotas"))
        if self.services.alerts.notifier.urls:
            self._notifier_task = asyncio.create_task(self.services.alerts.notifier.run(),
                                                      name="tea-alert-notifier")
            self._tasks.append(self._notifier_task)
        if self.settings.alerts.enabled:
            self._tasks.append(asyncio.create_task(self.services.alerts.run(), name="tea-alerts"))
        processors = self._supervise(self.services.processors.run(), "processors")
        self._processors_task = asyncio.create_task(processors, name="tea-processors")
        if self.settings.otlp.grpc_port:
            from tea.receive.otlp import Otlp, start_grpc
            try:
                self.grpc = await start_grpc(provide(Otlp, self.services), self.settings.host,
                                             self.settings.otlp.grpc_port, self.settings.otlp.max_message_bytes)
            except OSError as exc:
                await self._abort_startup()
                raise StartupError(str(exc)) from exc
        if self.settings.redis_url:
            try:
                await self.services.state.ping()  # type: ignore[attr-defined]
            except Exception as exc:  # not fatal: replay checks fail closed, limits follow their policy
                log.error("Redis at %s is unreachable at start: %s", mask(self.settings.redis_url), exc)
        self.services.status.start()
        log.info("TEA %s started: storage=%s data_dir=%s buffer.ack=%s retention_hours=%d auth=%s", __version__,
                 self.services.storage.name, os.path.abspath(self.settings.data_dir), self.settings.buffer.ack,
                 self.services.retention.hours, ",".join(self.services.auth.describe()))

    async def _supervise(self, coro: Awaitable[None], what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # the writer must never die silently
            log.exception("the %s stopped on an unexpected error", what)
            raise

    async def _abort_startup(self) -> None:
        tasks = [*self._tasks, *([self._processors_task] if self._processors_task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._processors_task = None
        await self.services.buffer.close()
        await self.services.storage.close()
        self._unlock_data_dir()

    async def shutdown(self) -> None:
        if not self.services.status.started:
            return
        self.services.status.started = False
        self.services.live.close()
        if self.grpc is not None:
            await self.grpc.stop(grace=min(5.0, self.settings.shutdown_timeout_s))
        await self.services.buffer.close()
        self.services.writer.stop()
        writer_task, others = self._tasks[0], self._tasks[1:]
        notifier = self._notifier_task
        for task in others:
            if task is not notifier:  # (the evaluator is stopped: nothing new is queued for it)
                task.cancel()
        budget = self.settings.shutdown_timeout_s
        deadline = time.monotonic() + budget
        try:
            await asyncio.wait_for(asyncio.shield(writer_task), budget)
        except asyncio.TimeoutError:
            log.warning("shutdown: the buffer did not drain within %.1f s; %d bytes stay on disk and are "
                        "replayed at the next start", budget, self.services.buffer.backlog_bytes)
            writer_task.cancel()
        except Exception:
            log.exception("shutdown: the writer failed while draining")
        await self._stop_processors(max(0.0, deadline - time.monotonic()))
        await asyncio.gather(*(t for t in self._tasks if t is not notifier), return_exceptions=True)
        if notifier is not None:  # alert notifications still queued get a moment to go out
            await self.services.alerts.notifier.drain(min(NOTIFY_DRAIN_S, self.settings.shutdown_timeout_s))
            notifier.cancel()
            await asyncio.gather(notifier, return_exceptions=True)
            self._notifier_task = None
        self._tasks.clear()
        if self._tasks_dev is not None:
            self._tasks_dev.cancel()
        await self.services.audit.flush()
        if self.services.quotas is not None:
            try:
                await self.services.quotas.save()
            except Exception:  # storage boundary: the month's counts since the last save are lost
                log.exception("shutdown: saving the monthly quota counters failed")
        await self.services.state.close()
        await self.services.storage.close()
        self._unlock_data_dir()
        log.info("TEA stopped")

    async def _stop_processors(self, budget_s: float) -> None:
        """Processors take what the writer committed, within what is left of the budget; whatever they have not
        passed stays in the buffer and they resume from their own positions at the next start."""
        task, self._processors_task = self._processors_task, None
        if task is None:
            return
        self.services.processors.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), budget_s)
        except asyncio.TimeoutError:
            log.warning("shutdown: processors did not catch up within the budget; they resume at the next start")
            task.cancel()
        except Exception:
            log.exception("shutdown: a processor failed while draining")
        await asyncio.gather(task, return_exceptions=True)

    def _lock_data_dir(self) -> None:
        path = os.path.join(self.settings.data_dir, "tea.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(f"data directory {os.path.abspath(self.settings.data_dir)} is in use by another "
                               f"TEA process (pid {owner})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ----------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        template = "unmatched"
        try:
            route = self.router.match(request)
            template = route.path
            if route.scope is not None and not route.admits_itself:
                await self.gate.admit(request, route.scope)
            if route.query is None:
                response = await route.handler(request)
            else:
                response = await route.handler(request, parse(route.query, request.query, request.path_params))
        except ClientError as exc:
            response = error_response(exc)
        except ClientDisconnected:
            return
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = Response(encode_json(ErrorBody("internal_error", "internal error; see the server log")),
                                500, JSON)
        limit_headers = request.state.get("limit_headers")
        if limit_headers:
            response.headers = {**limit_headers, **(response.headers or {})}
        try:
            await response.send(send, head_only=request.method == "HEAD")
        finally:
            t = self.telemetry
            t.child(t.http_duration, template, request.method, str(response.status)).observe(
                time.perf_counter() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                tune_gc(self.settings.gc_threshold)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    gc.unfreeze()  # (what tune_gc froze is collectable again as the process winds down)
                    await send({"type": "lifespan.shutdown.complete"})
                return


async def _warn_dev_mode(every_s: float = 3600.0) -> None:
    while True:
        log.warning("DEVELOPMENT MODE: TEA_AUTH_VALIDATION=false — requests need no credentials and name their "
                    "own tenant. Never run this way where anyone else can reach the port.")
        await asyncio.sleep(every_s)


def error_response(exc: ClientError) -> Response:
    return Response(encode_json(exc.body()), exc.status, JSON, exc.headers or None)


def build_app(settings: Settings, storage: Storage | None = None, clock: Callable[[], int] = now_us) -> TeaApp:
    return TeaApp(settings, storage=storage, clock=clock)


def tune_gc(threshold: int) -> None:
    """Fewer, cheaper collections for a server: what start-up built (modules, settings, routes, open
    storage) moves out of the collector's reach (``gc.freeze``), and generation 0 is collected every
    ``threshold`` allocations instead of every 700. Single-event ingestion spends ~15 % of its CPU in
    the collector at Python's defaults (in process: 52 vs 44 µs per request); the memory cost is only
    cyclic garbage waiting a little longer — everything else is freed by reference counting at once."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, first, second = gc.get_threshold()
    gc.set_threshold(threshold, first, second)
