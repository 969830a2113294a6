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
from tea.lifecycle import Lifecycle, Periodic
from tea.ops.rollup import keep_rolled_up
from tea.services import provide
from tea.errors import ClientError
from tea.http import Request, Response
from tea.http.params import parse
from tea.http.request import ClientDisconnected
from tea.http.response import JSON, encode_json
from tea.http.schemas import ErrorBody
from tea.settings import Settings, mask
from tea.storage.base import Storage
from tea.storage.capabilities import RollsUp
from tea.timeutil import now_us

log = logging.getLogger(__name__)
NOTIFY_DRAIN_S = 10.0  # at shutdown, the most time queued alert notifications get (within shutdown_timeout_s)
AUDIT_DRAIN_MIN_S = 2.0  # at shutdown, the audit log gets this long at least, even past shutdown_timeout_s
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
        self.lifecycle: Lifecycle | None = None  # built at start-up
        self._lock_fd = -1
        self.dev_warning_every_s = 3600.0  # development mode repeats its warning this often
        self.grpc: Any = None

    def __getattr__(self, name: str) -> Any:
        if name == "services":  # (not built: __init__ failed)
            raise AttributeError(name)
        return getattr(self.services, name)  # (only names TeaApp itself lacks: never on the request path)

    # ----------------------------------------------------------------- lifespan
    def _lifecycle(self) -> Lifecycle:
        """TEA's services in start order; they stop in reverse order (``tea.lifecycle``)."""
        s, settings = self.services, self.settings
        lc = Lifecycle()
        lc.add("data directory", self._open_data_dir, self._close_data_dir, always=True)
        if not settings.auth_validation:
            lc.periodic(Periodic("dev-mode warning", _warn_dev_mode, self.dev_warning_every_s))
        lc.add("storage", self._open_storage, lambda _: s.storage.close(), always=True)
        lc.add("shared state", None, lambda _: s.state.close(), always=True)
        lc.add("buffer", s.buffer.open, lambda _: s.buffer.close(), always=True)
        if s.quotas is not None:  # loaded at start, saved every few seconds and at stop
            lc.add("quota counters", self._load_quotas)
            lc.periodic(s.quotas.schedule(final=self._save_quotas))
        # the audit log drains after everything that records into it has stopped
        lc.background("audit log", s.audit.run, drain=lambda deadline: s.audit.drain(
            max(AUDIT_DRAIN_MIN_S, deadline - time.monotonic())))
        lc.periodic(s.retention.schedule())
        if isinstance(s.storage, RollsUp):
            lc.periodic(keep_rolled_up(s.storage))
        if s.alerts.notifier.urls:  # queued notifications get a moment to go out, after the evaluator stopped
            notifier = s.alerts.notifier
            lc.background("alert notifier", notifier.run,
                          drain=lambda deadline: notifier.drain(min(NOTIFY_DRAIN_S, max(0.0, deadline - time.monotonic()))))
        if settings.alerts.enabled:
            lc.periodic(s.alerts.schedule())
        # processors stop after the writer: they take what it committed while draining
        lc.background("processors", s.processors.run, ask=s.processors.stop)
        lc.background("writer", s.writer.run, ask=self._stop_writer)
        if settings.otlp.grpc_port:
            lc.add("otlp grpc", self._start_grpc, self._stop_grpc)
        lc.add("ready", self._ready, self._not_ready)
        return lc

    async def startup(self) -> None:
        self.lifecycle = self._lifecycle()
        await self.lifecycle.start()
        log.info("TEA %s started: storage=%s data_dir=%s buffer.ack=%s retention_hours=%d auth=%s", __version__,
                 self.services.storage.name, os.path.abspath(self.settings.data_dir), self.settings.buffer.ack,
                 self.services.retention.hours, ",".join(self.services.auth.describe()))

    async def shutdown(self) -> None:
        """Stop every service in reverse start order within ``shutdown_timeout_s``; what is not stored or processed
        by then stays in the buffer for the next start."""
        if self.lifecycle is None or not self.services.status.started:
            return
        lifecycle, self.lifecycle = self.lifecycle, None
        late = await lifecycle.stop(self.settings.shutdown_timeout_s)
        if "writer" in late:
            log.warning("shutdown: the buffer did not drain within %.1f s; %d bytes stay on disk and are "
                        "replayed at the next start", self.settings.shutdown_timeout_s,
                        self.services.buffer.backlog_bytes)
        log.info("TEA stopped")

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop TEA's services run on (None before start-up)."""
        task = next(iter(self.lifecycle.tasks.values()), None) if self.lifecycle is not None else None
        return task.get_loop() if task is not None else None

    async def _open_data_dir(self) -> None:
        os.makedirs(self.settings.data_dir, exist_ok=True)
        self._lock_data_dir()
        try:
            self.services.tokens.box = SecretBox(load_master_key(self.settings.secret_key, self.settings.data_dir))
        except Exception:
            self._unlock_data_dir()
            raise

    async def _close_data_dir(self, _deadline: float) -> None:
        self._unlock_data_dir()

    async def _open_storage(self) -> None:
        try:
            await self.services.storage.open()
        except Exception as exc:
            raise StartupError(f"cannot open {self.services.storage.name} storage: {exc}") from exc

    async def _load_quotas(self) -> None:
        try:
            await self.services.quotas.load()  # type: ignore[union-attr]
        except Exception as exc:  # storage boundary: start counting the month from what is in memory
            log.error("loading the monthly quota counters failed: %s", exc)

    async def _save_quotas(self) -> None:
        try:
            await self.services.quotas.save()  # type: ignore[union-attr]
        except Exception:  # storage boundary: the month's counts since the last save are lost
            log.exception("shutdown: saving the monthly quota counters failed")

    async def _stop_writer(self) -> None:
        """Refuse new appends and sync what is queued (``buffer.close``), then let the writer drain the buffer."""
        await self.services.buffer.close()
        self.services.writer.stop()

    async def _start_grpc(self) -> None:
        from tea.receive.otlp import Otlp, start_grpc
        try:
            self.grpc = await start_grpc(provide(Otlp, self.services), self.settings.host,
                                         self.settings.otlp.grpc_port, self.settings.otlp.max_message_bytes)
        except OSError as exc:
            raise StartupError(str(exc)) from exc

    async def _stop_grpc(self, _deadline: float) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=min(5.0, self.settings.shutdown_timeout_s))

    async def _ready(self) -> None:
        if self.settings.redis_url:
            try:
                await self.services.state.ping()  # type: ignore[attr-defined]
            except Exception as exc:  # not fatal: replay checks fail closed, limits follow their policy
                log.error("Redis at %s is unreachable at start: %s", mask(self.settings.redis_url), exc)
        self.services.status.start()

    async def _not_ready(self, _deadline: float) -> None:
        self.services.status.started = False
        self.services.live.close()

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
        if scope["type"] != "http":  # (a request is served here, not one coroutine further)
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        template = "unmatched"
        try:
            route = self.router.match(request)
            template = route.path
            if route.consistency != "stored":  # (what a read waits for: tea.query.consistency)
                request.state["consistency"] = route.consistency
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
        extra = request.state.get("response_headers")  # (TEA-Consistency: stale)
        if extra:
            response.headers = {**(response.headers or {}), **extra}
        try:
            await response.send(send, request.method == "HEAD")  # (head_only)
        finally:
            t = self.telemetry
            t.observe(t.http_duration, time.perf_counter() - started, template, request.method, str(response.status))

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


async def _warn_dev_mode() -> None:
    log.warning("DEVELOPMENT MODE: TEA_AUTH_VALIDATION=false — requests need no credentials and name their "
                "own tenant. Never run this way where anyone else can reach the port.")


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
