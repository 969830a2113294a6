"""Shared fixtures: settings on a temp data dir, a TEA served in process (no socket) or on a free
loopback port, an HTTP client for it."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import uvicorn

from tea.app import TeaApp, tune_gc
from tea.cli import make_server
from tea.http.edge import make_edge
from tea.settings import Settings, load
from tea.storage.base import Storage
from tests.inprocess import AppLoop, ASGITransport
from tests.services import free_port  # noqa: F401  (also imported from here by the tests)


def make_settings(data_dir: Path | str, **overrides: Any) -> Settings:
    """Defaults as `tea serve` has them (no environment), on ``data_dir``; ``buffer__max_bytes=...``."""
    settings = load({"data_dir": str(data_dir)}, env={})
    overrides.setdefault("auth_validation", False)  # development mode unless a test asks for auth
    overrides.setdefault("otlp__grpc_port", 0)  # tests that want OTLP/gRPC choose a free port
    overrides.setdefault("otlp__http_port", 0)
    # the tests' data is dated where each test needs it, often months back: retention (720 h by default on
    # the persistent backends) would delete it whenever the job's first run came after the writes
    overrides.setdefault("retention_hours", 0)
    # (a test process starts a thousand TEAs: the collector is tuned once, for the session, below —
    # each app tuning it again would cost a full collection of the test process, ~50 ms a start)
    overrides.setdefault("gc_threshold", 0)
    return settings.replace(**overrides)


# ---------------------------------------------------------------- the quick tier (`pytest --quick`)
QUICK_PATHS = ("tests/unit", "tests/storage", "tests/api")
SERVER_BACKENDS = frozenset({"postgres", "clickhouse"})
# the session-wide real servers and subprocesses a quick test does without
SERVER_FIXTURES = frozenset({"postgres_server", "clickhouse_server", "redis_server", "tea_process"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true",
                     help="the quick tier: unit tests, the storage contract on the embedded backends (memory, "
                          "DuckDB), the API tests in process; no database server")


def in_quick_tier(item: pytest.Item) -> bool:
    """A test of the quick tier: under QUICK_PATHS, not marked socket/e2e/slow, on no server backend
    (a parameter naming one) and using none of SERVER_FIXTURES."""
    path = item.path.relative_to(item.config.rootpath).as_posix()
    if not path.startswith(QUICK_PATHS):
        return False
    if any(item.get_closest_marker(name) is not None for name in ("socket", "e2e", "slow")):
        return False
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(isinstance(value, str) and value in SERVER_BACKENDS for value in params.values()):
        return False
    return SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With --quick, the files outside QUICK_PATHS are not even imported."""
    if not config.getoption("quick") or collection_path.is_dir():
        return None
    path = collection_path.relative_to(config.rootpath).as_posix()
    return True if path.startswith("tests/") and not path.startswith(QUICK_PATHS) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("quick"):
        return
    kept = [item for item in items if in_quick_tier(item)]
    left = [item for item in items if not in_quick_tier(item)]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    tune_gc(load({}, env={}).gc_threshold)  # as a server is tuned once started (tea.app.tune_gc)


class Served:
    """A started TeaApp, however it is served: ``app``, an HTTP ``client`` for it, ``wait_stored``."""

    app: TeaApp
    client: httpx.Client

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def wait_stored(self, count: int, timeout_s: float = 30) -> None:
        """Wait until the writer has drained the buffer (count events stored in total)."""
        deadline = time.monotonic() + timeout_s
        while self.app.writer.consumed_events < count or self.app.writer.available() > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.app.writer.consumed_events} of {count} events drained")
            time.sleep(0.01)


class LiveServer(Served):
    """A TeaApp served by uvicorn on 127.0.0.1 in a background thread: real HTTP over loopback."""

    def __init__(self, app: TeaApp) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        edge = make_edge(app.settings, app.telemetry.registry)  # the HTTP edge `tea serve` has
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, loop="asyncio", http=edge.protocol(),
                                ws="none", lifespan="on", access_log=False, log_config=None)
        self.server = make_server(config, app)  # (as `tea serve`: live-tail streams end at shutdown)
        self.thread = threading.Thread(target=self.server.run, name="tea-live-server", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:  # type: ignore[override]
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30)
        return self._client

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def start(self, wait_ready: bool = True) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("TEA did not start")
            time.sleep(0.01)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while httpx.get(self.url + "/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("TEA did not become ready")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive(), "server did not stop"


class InProcessServer(Served):
    """A TeaApp served in this process without a socket (``tests.inprocess``): its lifespan runs on an
    event loop in a background thread, and ``client`` hands each request to the same ASGI callable, so
    only the socket and uvicorn's HTTP parser are left out. Where a test needs those (edge limits,
    real clients given a URL, a subprocess) it uses a ``LiveServer``."""

    def __init__(self, app: TeaApp) -> None:
        self.app = app
        self.app_loop = AppLoop(app)
        self.client = httpx.Client(transport=ASGITransport(self.app_loop), base_url="http://tea.test", timeout=30)
        self._running = False

    @property
    def url(self) -> str:
        raise AttributeError("an in-process TEA has no URL: use .client, or a LiveServer (serve(socket=True), "
                             "@pytest.mark.socket) where the test needs a real socket")

    @property
    def running(self) -> bool:
        return self._running

    def start(self, wait_ready: bool = True) -> "InProcessServer":
        self.app_loop.start()  # lifespan.startup; raises if it failed
        self._running = True
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("TEA did not become ready")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.client.close()
            self.app_loop.stop()  # lifespan.shutdown


def wait_for(fetch: Callable[[], Any], predicate: Callable[[Any], bool], timeout_s: float = 15) -> Any:
    """Poll ``fetch()`` until ``predicate`` holds (or the time is up); the last value either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(tmp_path / "data", **overrides)
    return factory


@pytest.fixture
def after_stop() -> Iterator[list[Callable[[], None]]]:
    """What to do once the test's servers have stopped (``serve`` depends on this: its teardown comes
    first), such as dropping the databases they ran on."""
    todo: list[Callable[[], None]] = []
    yield todo
    for action in todo:
        action()


@pytest.fixture(scope="session")
def duckdb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tea.duckdb a TEA's first start leaves (empty tables at the current schema), made once a session."""
    data_dir = tmp_path_factory.mktemp("duckdb-template")
    InProcessServer(TeaApp(make_settings(data_dir, storage_backend="duckdb"))).start().stop()
    return data_dir / "tea.duckdb"


@pytest.fixture
def serve(tmp_path: Path, after_stop: list[Callable[[], None]],
          request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start TEAs: ``serve(storage_backend="memory", **settings)`` on a real loopback socket (a
    ``LiveServer``), ``serve(socket=False, ...)`` in process (an ``InProcessServer``); all stopped at the end.
    A DuckDB TEA on a new data dir starts on a copy of ``duckdb_template``: a restart's start, half a
    first start's CPU (the migrations from an empty file are the storage contract's and `tea serve`'s)."""
    started: list[Served] = []

    def start(storage: Storage | None = None, wait_ready: bool = True, socket: bool = True,
              **overrides: Any) -> Any:
        overrides.setdefault("writer__flush_interval_ms", 20.0)
        overrides.setdefault("shutdown_timeout_s", 5.0)
        # one data dir, reused after a stop (restart tests); a second server running beside gets its own
        busy = sum(1 for live in started if live.running)
        data_dir = tmp_path / ("data" if busy == 0 else f"data-{busy}")
        settings = make_settings(data_dir, **overrides)
        if storage is None and settings.storage_backend == "duckdb" and not data_dir.exists() \
                and not any(name.startswith("duckdb__") for name in overrides):
            data_dir.mkdir(parents=True)
            shutil.copyfile(request.getfixturevalue("duckdb_template"), data_dir / "tea.duckdb")
        live = (LiveServer if socket else InProcessServer)(TeaApp(settings, storage=storage))
        started.append(live)  # (before start: a failed start is still stopped at the end)
        return live.start(wait_ready)

    yield start
    for live in started:
        if live.running:
            live.stop()


# every query endpoint's tests run on each backend; postgres and clickhouse on session-wide real servers
BACKENDS = ["duckdb", "memory", "postgres", "clickhouse"]


def backend_settings(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    """Settings overrides for ``backend``: a fresh database on the session's real server when it has one,
    dropped when the test's servers have stopped."""
    if backend not in ("postgres", "clickhouse"):
        return {"storage_backend": backend}
    server = request.getfixturevalue(f"{backend}_server")
    url = server.fresh_url()
    request.getfixturevalue("after_stop").append(lambda: server.drop(url))
    return {"storage_backend": backend, f"{backend}_url": url}


# a test of what no backend takes part in (a refusal before anything is stored, a static document)
# runs on one: ``@one_backend``
one_backend = pytest.mark.parametrize("server", ["memory"], indirect=True)


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, serve: Callable[..., Served]) -> Served:
    """A TEA on each backend, in process; on a real socket for a test marked ``socket``."""
    socket = request.node.get_closest_marker("socket") is not None
    return serve(socket=socket, **backend_settings(request, request.param))


@pytest.fixture
def client(server: Served) -> httpx.Client:
    return server.client


# ---------------------------------------------------------------- `tea serve` as a real subprocess
class TeaProcess:
    def __init__(self, data_dir: Path, log_path: Path, preexec_fn: Callable[[], Any] | None = None,
                 **env: str) -> None:
        self.preexec_fn = preexec_fn  # e.g. lower the open-file limit the server starts with
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # OTLP listeners off unless a test asks: several `tea serve` processes run side by side
        self.env = {**os.environ, "TEA_LOG_LEVEL": "info", "TEA_AUTH_VALIDATION": "false",
                    "TEA_OTLP__GRPC_PORT": "0", "TEA_OTLP__HTTP_PORT": "0", **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> "TeaProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tea", "serve", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir)], env=self.env, stdout=log, stderr=log,
                                     preexec_fn=self.preexec_fn)
        log.close()
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"tea serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"tea serve not ready after {timeout_s} s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def tea_process(tmp_path: Path) -> Iterator[type]:
    started: list[TeaProcess] = []

    def make(data_dir: Path | None = None, preexec_fn: Callable[[], Any] | None = None, **env: str) -> TeaProcess:
        proc = TeaProcess(data_dir or tmp_path / "data", tmp_path / f"tea-{len(started)}.log", preexec_fn, **env)
        started.append(proc)
        return proc

    yield make  # type: ignore[misc]
    for proc in started:
        proc.stop()


from tests.auth.conftest import redis_server, secure  # noqa: E402,F401  (shared by api/ and e2e/ tests)
from tests.services import clickhouse_server, postgres_server  # noqa: E402,F401  (session-wide real servers)
