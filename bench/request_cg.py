"""Instructions per ingestion request, counted exactly: ``python -m bench.request_cg [single|batch]``.

The whole server-side request in one process: uvicorn's HTTP protocol as ``tea serve`` configures it (the
HTTP edge), fed raw HTTP/1.1 ``POST /v1/events`` requests on keep-alive connections (64 for single events,
8 for 1 000-event batches) through an in-memory transport, the app answering from its lifespan on, through
the buffer's append to the response. Run twice under valgrind's callgrind (needs ``valgrind``:
``apt-get install -y valgrind``), with a few and with many requests; the difference of the two instruction
counts over the difference of the requests is one request's, without the start-up's. Deterministic (the same
tree gives the same count within ~0.5 k a single event), unlike a throughput on a shared machine.

Held out of the count, because they are no request's: the timed jobs (a sleep of 0.5 s or more never ends
here: under valgrind, ~50x slower, they would run ~50x as often per request), the jobs that run once at
start (the requests are measured once the process is idle), the writer (its batch size and interval are
out of reach: storage writes are the writer's, not the request's) and the drain at shutdown (the child
exits at once). DuckDB runs one thread.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.server import ADMIN_TOKEN as ADMIN

COUNTS = {"single": (64, 1088), "batch": (8, 40)}  # requests measured: a few, many
CONNECTIONS = {"single": 64, "batch": 8}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cg", description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", default="single", choices=sorted(COUNTS))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # (the measured process: this many requests)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.kind, args.child)
        return 0
    few, many = COUNTS[args.kind]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # (each run a process of its own)
        counts = list(pool.map(lambda n: _instructions(args.kind, n), (few, many)))
    per = (counts[1] - counts[0]) / (many - few)
    print(f"{args.kind}: {per / 1000:,.1f} k instructions per request "
          f"({counts[0]:,} for {few} requests, {counts[1]:,} for {many})")
    return 0


def _instructions(kind: str, requests: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
                           "bench.request_cg", kind, "--child", str(requests)],
                          capture_output=True, text=True, env=env, timeout=3600)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _child(kind: str, requests: int) -> None:
    data = tempfile.mkdtemp(prefix="tea-bench-request-cg-")
    os.environ.update(TEA_DATA_DIR=data, TEA_ADMIN_TOKEN=ADMIN, TEA_OTLP__GRPC_PORT="0", TEA_OTLP__HTTP_PORT="0",
                      TEA_BUFFER__MAX_BYTES="8GiB", TEA_DUCKDB__THREADS="1", TEA_WRITER__BATCH_EVENTS="100000000",
                      TEA_WRITER__FLUSH_INTERVAL_MS="100000000")
    real_sleep = asyncio.sleep

    async def no_timers(delay: float, result: Any = None) -> Any:
        if delay >= 0.5:
            await asyncio.get_running_loop().create_future()  # (never set)
        return await real_sleep(delay, result)

    asyncio.sleep = no_timers  # type: ignore[assignment]
    try:
        import uvloop
        uvloop.run(_serve(kind, requests, real_sleep))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # (the drain into storage at shutdown is no request's cost)


class _Transport(asyncio.Transport):
    """A connection whose writes go to ``sink``."""

    def __init__(self, number: int, sink: Any) -> None:
        super().__init__()
        self.number, self.sink, self.closing = number, sink, False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000 + self.number)}.get(name, default)

    def write(self, data: Any) -> None:
        self.sink(bytes(data))

    def writelines(self, lines: Any) -> None:
        self.sink(b"".join(lines))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _serve(kind: str, requests: int, real_sleep: Any) -> None:
    from uvicorn.server import ServerState

    from bench import events
    from tea import cli
    from tea.app import TeaApp
    from tea.settings import load

    bodies = events.batch_bodies(8, 1000) if kind == "batch" else events.single_bodies(8)
    raw = [b"POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nauthorization: Bearer " + ADMIN.encode() +
           b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body for body in bodies]
    settings = load()
    app = TeaApp(settings)
    lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})
    said: list[dict[str, Any]] = []

    async def said_to(message: dict[str, Any]) -> None:
        said.append(message)

    life = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan.get, said_to))
    while not said:
        await real_sleep(0.05)
    if said[0]["type"] != "lifespan.startup.complete":
        raise SystemExit(f"start-up failed: {said}")
    if hasattr(cli, "_uvicorn_configs"):
        config = cli._uvicorn_configs(settings, app)(8000, "off")
    else:  # (a release before the HTTP edge: uvicorn's own httptools protocol, as it served then)
        import uvicorn
        config = uvicorn.Config(app, host="127.0.0.1", port=8000, loop="uvloop", http="httptools", lifespan="off",
                                access_log=False, log_config=None, server_header=False)
    config.load()
    state = ServerState()
    answered = {"n": 0, "bad": 0, "target": 0}
    all_in = asyncio.Event()

    def sink(data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 "):
            answered["n"] += 1
            answered["bad"] += not data.startswith(b"HTTP/1.1 200")
            if answered["n"] >= answered["target"]:
                all_in.set()

    protocols = []
    for number in range(CONNECTIONS[kind]):
        protocol = config.http_protocol_class(config=config, server_state=state, app_state={})
        protocol.connection_made(_Transport(number, sink))
        protocols.append(protocol)
    sent = 0

    async def send(count: int) -> None:
        nonlocal sent
        for start in range(0, count, len(protocols)):
            wave = min(len(protocols), count - start)
            answered["target"] = answered["n"] + wave
            all_in.clear()
            for protocol in protocols[:wave]:
                protocol.data_received(raw[sent % len(raw)])
                sent += 1
            await all_in.wait()

    await send(len(protocols))  # (the first requests' one-time costs, in both runs)
    for _ in range(150):  # the jobs that run once at start end first (under valgrind: minutes)
        cpu = time.process_time()
        await real_sleep(2)
        if time.process_time() - cpu < 0.1:
            break
    gc.collect()  # (both runs' measured requests start from the same collector state)
    await send(requests)
    if answered["bad"]:
        raise SystemExit(f"{answered['bad']} requests were not answered 200")
    print(f"{kind}: {answered['n']} answered", flush=True)
    for protocol in protocols:
        protocol.connection_lost(None)
    life.cancel()


if __name__ == "__main__":
    raise SystemExit(main())
