"""Start and stop the servers under test, and watch them (RSS, /health) from a thread."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Server:
    """A server subprocess, ready when ``GET ready_path`` answers 200."""

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log_path: str,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.port, self.ready_path = name, argv, port, ready_path
        self.log_path = log_path
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Server":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if http_get(self.port, self.ready_path)[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 60.0) -> dict:
        """SIGTERM, wait up to ``timeout``, SIGKILL if it hangs. Returns how it went."""
        assert self.proc is not None
        started = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                killed = True
        return {"exit_code": self.proc.returncode, "stop_seconds": round(time.monotonic() - started, 3),
                "killed": killed}


ADMIN_TOKEN = "bench-admin-" + "x" * 32  # TEA runs with authentication on, as deployed


def tea_server(data_dir: str, port: int, env: dict[str, str]) -> Server:
    script = os.path.join(os.path.dirname(sys.executable), "tea")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "tea"]
    argv = command + ["serve", "--host", HOST, "--port", str(port), "--data-dir", data_dir]
    # OTLP listeners off unless ``env`` turns them on (bench.otlp sets TEA_OTLP__GRPC_PORT to a free port):
    # on 4317/4318, the defaults, TEA would not start beside another TEA or collector
    return Server("tea", argv, port, "/readyz", os.path.join(data_dir, "tea.log"),
                  {"TEA_ADMIN_TOKEN": ADMIN_TOKEN, "TEA_OTLP__GRPC_PORT": "0", "TEA_OTLP__HTTP_PORT": "0", **env})


def create_token(port: int, tenant: str, tier: str = "enterprise") -> str:
    """An API token for ``tenant`` (the load is sent as a real tenant, through token auth and limits)."""
    import json
    import urllib.request
    request = urllib.request.Request(
        f"http://{HOST}:{port}/v1/tokens", method="POST",
        data=json.dumps({"tenant_id": tenant, "tier": tier}).encode(),
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]


def noop_server(work_dir: str, port: int) -> Server:
    argv = [sys.executable, "-m", "bench.noop", "--host", HOST, "--port", str(port)]
    return Server("noop", argv, port, "/", os.path.join(work_dir, "noop.log"))


class Monitor(threading.Thread):
    """Samples the server's RSS and (for TEA) ``/health`` every ``interval`` seconds."""

    def __init__(self, server: Server, health: bool, interval: float = 0.1, max_seconds: float = 600.0) -> None:
        super().__init__(name=f"monitor-{server.name}", daemon=True)
        assert server.proc is not None
        self.process = psutil.Process(server.proc.pid)
        self.port, self.health, self.interval, self.max_seconds = server.port, health, interval, max_seconds
        self.samples: list[dict] = []  # {"t", "rss", and from /health "written", "buffer_bytes"}
        self.health_failures = 0
        self.peak_rss = 0
        self._halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < deadline:
            self.samples.append(self._sample())
            self._halt.wait(self.interval)

    def _sample(self) -> dict:
        sample: dict = {}
        try:
            sample["rss"] = self.rss()
            self.peak_rss = max(self.peak_rss, sample["rss"])
        except psutil.Error:
            pass
        if self.health:
            try:
                status, body = http_get(self.port, "/health", timeout=5.0)
                if status != 200:
                    raise ValueError(f"/health answered {status}")
                health = json.loads(body)
                sample.update(written=health["events_written"], buffer_bytes=health["buffer_bytes"])
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                self.health_failures += 1
        sample["t"] = time.time()  # after the answer: storage had written at least this much by then
        return sample

    def rss(self) -> int:
        procs = [self.process] + self.process.children(recursive=True)
        return sum(p.memory_info().rss for p in procs)

    def wait_written(self, target: int, timeout: float) -> dict | None:
        """The first sample with ``written >= target``, waiting up to ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            samples = self.samples[seen:]
            for sample in samples:
                if sample.get("written", -1) >= target:
                    return sample
            seen += len(samples)
            if time.monotonic() >= deadline or not self.is_alive():
                return None
            time.sleep(0.05)

    def last(self, key: str, default: int = 0) -> int:
        return next((s[key] for s in reversed(self.samples) if key in s), default)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
