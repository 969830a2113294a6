"""Memory soak: ``python -m bench.soak [--duration S] [--warmup S]`` from the project root.

Starts TEA (``tea serve`` on a free loopback port, fresh temporary data directory, every setting at its
default unless ``--tea-env`` says otherwise) and POSTs JSON arrays of 100 new events to ``/v1/events``
at a steady 200 requests/s (20 000 events/s) for ``--duration`` seconds (default 600), from this process
over keep-alive connections (open loop: a request is due every 5 ms whether or not earlier ones were
answered; at most ``--connections`` in flight). TEA's RSS is sampled every second and printed every
``--print-every`` seconds. The verdict compares the highest RSS after the warm-up (default: the first
120 s, or a fifth of a shorter run) with the highest during it: within +10 % is "flat".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time

from bench import events, phases, server
from bench.ingest import RESULTS_DIR, _env_item
from bench.server import HOST, Monitor

MiB = 1024 * 1024
TOLERANCE = 0.10


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, help="seconds before the RSS baseline (default 120, at most a fifth "
                                                     "of the duration)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--events-per-request", type=int, default=100, help="events per request (default 100)")
    parser.add_argument("--connections", type=int, default=16, help="most requests in flight (default 16)")
    parser.add_argument("--print-every", type=float, default=30.0, help="seconds between printed samples (30)")
    parser.add_argument("--tea-env", action="append", default=[], metavar="TEA_KEY=VALUE", type=_env_item,
                        help="another setting for TEA (repeatable), e.g. TEA_DUCKDB__MEMORY_LIMIT=1GB")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where the JSON record goes")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(120.0, args.duration / 5)
    return args


class Load:
    """Paced POSTs over a pool of keep-alive HTTP/1.1 connections; counts answers by status."""

    def __init__(self, port: int, bodies: list[bytes], connections: int) -> None:
        self.port, self.bodies = port, bodies
        self.idle: asyncio.Queue = asyncio.Queue()
        self.connections = connections
        self.statuses: dict[int, int] = {}
        self.errors = self.late = self.sent = 0

    async def open(self) -> None:
        for _ in range(self.connections):
            self.idle.put_nowait(await asyncio.open_connection(HOST, self.port))

    async def post(self, body: bytes) -> None:
        reader, writer = await self.idle.get()
        try:
            writer.write(b"POST /v1/events HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nAuthorization: Bearer "
                         + server.ADMIN_TOKEN.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            self.statuses[status] = self.statuses.get(status, 0) + 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            self.errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection(HOST, self.port)
        self.idle.put_nowait((reader, writer))

    async def run(self, rate: float, duration: float) -> None:
        started = time.monotonic()
        tasks: set[asyncio.Task] = set()
        due = 0
        while (elapsed := time.monotonic() - started) < duration:
            while due <= elapsed * rate:
                if self.idle.empty():
                    self.late += 1  # every connection busy: this request starts late
                task = asyncio.create_task(self.post(self.bodies[due % len(self.bodies)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                due += 1
            await asyncio.sleep(0.002)
        self.sent = due
        await asyncio.gather(*tasks)


def verdict(samples: list[dict], t0: float, warmup: float) -> dict:
    """The highest RSS after the warm-up against the highest during it. (RSS is a saw under a steady load:
    DuckDB holds the rows written since its last checkpoint in memory, up to ``duckdb.checkpoint_threshold``
    of WAL; a warm-up of a few checkpoints sees the saw's top, and growth is a top above it.)"""
    during = [s["rss"] for s in samples if "rss" in s and s["t"] - t0 < warmup]
    after = [s["rss"] for s in samples if "rss" in s and s["t"] - t0 >= warmup]
    if not during or not after:
        return {"baseline_mib": None, "peak_after_mib": None, "growth": None, "flat": None}
    base = max(during)
    growth = max(after) / base - 1
    return {"baseline_mib": round(base / MiB, 1), "at_warmup_end_mib": round(after[0] / MiB, 1),
            "peak_after_mib": round(max(after) / MiB, 1), "last_mib": round(after[-1] / MiB, 1),
            "growth": round(growth, 4), "flat": growth <= TOLERANCE}


def soak(args: argparse.Namespace, data_dir: str) -> dict:
    port = server.free_port()
    srv = server.tea_server(data_dir, port, dict(args.tea_env)).start()
    monitor = Monitor(srv, health=True, interval=1.0, max_seconds=args.duration + 300)
    try:
        monitor.start()
        load = Load(port, events.batch_bodies(16, args.events_per_request), args.connections)
        t0 = time.time()
        printer = asyncio.Event()

        async def main() -> None:
            await load.open()
            report = asyncio.create_task(_print_samples(monitor, t0, args.print_every, printer))
            await load.run(args.rate, args.duration)
            printer.set()
            await report
        asyncio.run(main())
        ended = time.time()
        monitor.stop()
    finally:
        stop = phases.server_stop(srv)
    acked = sum(n for status, n in load.statuses.items() if status == 200) * args.events_per_request
    return {"seconds": round(ended - t0, 1), "requests_due": load.sent, "statuses": load.statuses,
            "errors": load.errors, "late": load.late, "events_acked": acked,
            "events_written": monitor.last("written"), "stop": stop, "verdict": verdict(monitor.samples, t0, args.warmup),
            "timeline": [{"t": round(s["t"] - t0, 1), "rss_mib": round(s.get("rss", 0) / MiB, 1),
                          "written": s.get("written"), "buffer_bytes": s.get("buffer_bytes")} for s in monitor.samples],
            "rows_in_duckdb": phases._count_rows(os.path.join(data_dir, "tea.duckdb"))}


async def _print_samples(monitor: Monitor, t0: float, every: float, done: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(done.wait(), every)
            return
        except asyncio.TimeoutError:
            sample = monitor.samples[-1] if monitor.samples else {}
            print(f"  {time.time() - t0:6.0f} s  RSS {sample.get('rss', 0) / MiB:7.1f} MiB  written "
                  f"{sample.get('written', 0):>12,}  buffer {sample.get('buffer_bytes', 0) / MiB:7.1f} MiB", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    print(f"soak: {args.rate:g} requests/s x {args.events_per_request} events for {args.duration:g} s "
          f"(warm-up {args.warmup:g} s), TEA settings {dict(args.tea_env) or 'default'}", flush=True)
    data_dir = tempfile.mkdtemp(prefix="tea-bench-soak-")
    try:
        result = soak(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    v = result["verdict"]
    print(f"\nrequests due {result['requests_due']:,} answered {result['statuses']} errors {result['errors']} "
          f"late {result['late']}; events acknowledged {result['events_acked']:,}, written {result['events_written']:,}, "
          f"in DuckDB after stop {result['rows_in_duckdb']}")
    if v["flat"] is None:
        print("RSS: too few samples after the warm-up for a verdict")
    else:
        print(f"RSS highest in the warm-up {v['baseline_mib']:,.1f} MiB (at its end {v['at_warmup_end_mib']:,.1f}); "
              f"highest after it {v['peak_after_mib']:,.1f} MiB ({v['growth']:+.1%}); last {v['last_mib']:,.1f} MiB: "
              f"{'flat (within +10 %)' if v['flat'] else 'GREW more than 10 %'}")
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"args": {k: v for k, v in vars(args).items()}, **result}, fh, indent=2)
    print(f"results written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
