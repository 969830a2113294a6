"""Throwaway real servers for the tests: PostgreSQL and ClickHouse (Debian packages, installed by
scripts/test), each in a temp dir on a free loopback port, started once per test session and stopped
by PID. Without the binary the tests that need one skip with the reason — or fail when
``TEA_REQUIRE_SERVICES=1`` (CI). ``fresh_*_url()`` gives each test its own empty database."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from typing import Callable, Iterator

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(binary: str | None, what: str) -> str:
    if binary:
        return binary
    reason = f"{what} is not installed (scripts/test installs it with apt-get)"
    if os.environ.get("TEA_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " but TEA_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def _wait(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _remove_later(path: str) -> None:
    """Delete a stopped server's directory in a detached ``rm -rf``: a ClickHouse directory holds tens of
    thousands of part files, and unlinking them is no part of any test."""
    subprocess.run(["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", path], check=True,
                   start_new_session=True)  # sh returns at once; its rm, reparented, finishes alone


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    """``postgres`` on a temp data dir; as the ``postgres`` user when running as root (it refuses root).
    ``fsync=False`` for the tests: a killed server still loses nothing committed (the OS has its
    writes), only a crash of the machine would — and thousands of throwaway databases stay off the disk."""

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync
        self.initdb = require(pg_binary("initdb"), "PostgreSQL (initdb)")
        self.postgres = require(pg_binary("postgres"), "PostgreSQL (postgres)")
        self.tmp = tempfile.mkdtemp(prefix="tea-pg-")
        os.chmod(self.tmp, 0o777)
        self.port = free_port()
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data = os.path.join(self.tmp, "data")
        subprocess.run(self.run_as + [self.initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = open(os.path.join(self.tmp, "server.log"), "ab")
        # as root: postgres itself becomes the postgres user (under runuser, stop()'s signal would reach
        # runuser only, leaving the server running)
        as_user: dict[str, object] = {"user": "postgres", "group": "postgres", "extra_groups": []} if self.run_as else {}
        self.proc = subprocess.Popen([self.postgres, "-D", self.data, "-p", str(self.port), "-k", self.tmp,
                                      "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300",
                                      "-c", f"fsync={'on' if self.fsync else 'off'}"], stdout=log, stderr=log, **as_user)  # type: ignore[call-overload]
        log.close()
        _wait(self._ready, "PostgreSQL", self.proc)

    def _ready(self) -> bool:
        import psycopg
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:  # not listening yet (not an OSError, so _wait would not retry)
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            _stop(self.proc, sig)

    def fresh_url(self) -> str:
        import psycopg
        name = "tea_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def drop(self, url: str) -> None:
        """Drop a database ``fresh_url`` made, with whatever is still connected to it."""
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def close(self) -> None:
        self.stop()
        _remove_later(self.tmp)


CH_CONFIG = """<?xml version="1.0"?><yandex>
<logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog></logger>
<http_port>{http}</http_port><tcp_port>{tcp}</tcp_port><listen_host>127.0.0.1</listen_host>
<path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/uf/</user_files_path>
<format_schema_path>{d}/fs/</format_schema_path>
<users_config>{d}/users.xml</users_config><default_profile>default</default_profile>
<default_database>default</default_database><mark_cache_size>268435456</mark_cache_size>
<max_concurrent_queries>200</max_concurrent_queries>
</yandex>"""
CH_USERS = """<?xml version="1.0"?><yandex><profiles><default/></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
<profile>default</profile><quota>default</quota></default></users><quotas><default/></quotas></yandex>"""


class ClickHouseServer:
    """``clickhouse-server`` (Debian's 18.16 wants this minimal config of its own) on a temp dir."""

    def __init__(self) -> None:
        self.binary = require(shutil.which("clickhouse-server"), "ClickHouse (clickhouse-server)")
        self.tmp = tempfile.mkdtemp(prefix="tea-ch-")
        self.http_port, self.tcp_port = free_port(), free_port()
        with open(os.path.join(self.tmp, "config.xml"), "w") as f:
            f.write(CH_CONFIG.format(d=self.tmp, http=self.http_port, tcp=self.tcp_port))
        with open(os.path.join(self.tmp, "users.xml"), "w") as f:
            f.write(CH_USERS)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.tcp_port}/default"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--config-file", os.path.join(self.tmp, "config.xml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ping", timeout=1).status == 200,
              "ClickHouse", self.proc)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            _stop(self.proc, sig)

    def query(self, sql: str) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/", data=sql.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()

    def fresh_url(self) -> str:
        name = "tea_" + uuid.uuid4().hex[:12]
        self.query(f"CREATE DATABASE {name}")
        return f"clickhouse://default@127.0.0.1:{self.tcp_port}/{name}"

    def drop(self, url: str) -> None:
        """Drop a database ``fresh_url`` made."""
        self.query(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")

    def close(self) -> None:
        self.stop()
        _remove_later(self.tmp)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(fsync=False)
    yield server
    server.close()


@pytest.fixture(scope="session")
def clickhouse_server() -> Iterator[ClickHouseServer]:
    server = ClickHouseServer()
    yield server
    server.close()
