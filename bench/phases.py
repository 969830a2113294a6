"""The benchmark's phases; each returns a dict of what it measured."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import duckdb

from bench import duckload, events, livetail, loadgen, server
from bench.server import HOST, Monitor, Server

MiB = 1024 * 1024


@dataclass
class Config:
    duration: float = 15.0        # seconds of load per HTTP phase
    processes: int = 1            # load generator processes
    batch_connections: int = 8    # per process, 1 000-event bodies
    single_connections: int = 64  # per process, one-event bodies
    batch_events: int = 1000
    distinct_bodies: int = 8
    duck_events: int = 1_000_000
    drain_timeout: float = 60.0   # longest wait for storage to catch up after the load
    buffer_max: str = "8GiB"
    tea_env: dict = field(default_factory=dict)  # more TEA_* settings for the TEA server
    live_tail: int = 0            # live-tail streams open during the load (bench.livetail)
    live_tail_query: str = ""     # their filters, e.g. tenant_id=t3
    work_dir: str = ""


def _spec(cfg: Config, port: int, bodies: list[bytes], per_body: int, connections: int) -> loadgen.Spec:
    # The request cap only bounds a runaway loop: 2M events/s or 200k requests/s per process.
    cap = int(cfg.duration * (2_000_000 / per_body if per_body > 1 else 200_000)) + 1
    return loadgen.Spec(HOST, port, "/v1/events", bodies, per_body, connections, cfg.duration, cap)


def duckdb_phase(cfg: Config) -> dict:
    print(f"(c) DuckDB bulk load of {cfg.duck_events:,} events, {duckload.BATCH_EVENTS:,} per INSERT ...")
    return duckload.bulk_load(cfg.duck_events, cfg.work_dir)


def noop_phase(cfg: Config) -> dict:
    print(f"(d) no-op endpoint, single-event bodies, {cfg.processes}x{cfg.single_connections} connections ...")
    port = server.free_port()
    srv = server.noop_server(cfg.work_dir, port).start()
    try:
        spec = _spec(cfg, port, events.single_bodies(cfg.distinct_bodies), 1, cfg.single_connections)
        return loadgen.run_load(spec, cfg.processes)
    finally:
        server_stop(srv)


def tea_batch_phase(cfg: Config) -> dict:
    print(f"(a) TEA, {cfg.batch_events:,}-event batches, durable ack, "
          f"{cfg.processes}x{cfg.batch_connections} connections ...")
    bodies = events.batch_bodies(cfg.distinct_bodies, cfg.batch_events)
    return tea_phase(cfg, "batch", bodies, cfg.batch_events, cfg.batch_connections)


def tea_single_phase(cfg: Config) -> dict:
    print(f"(b) TEA, one event per POST, {cfg.processes}x{cfg.single_connections} connections ...")
    bodies = events.single_bodies(cfg.distinct_bodies)
    return tea_phase(cfg, "single", bodies, 1, cfg.single_connections)


def tea_phase(cfg: Config, name: str, bodies: list[bytes], per_body: int, connections: int) -> dict:
    """A fresh TEA, loaded then drained into storage, stopped, and its DuckDB file counted."""
    data_dir = tempfile.mkdtemp(prefix=f"tea-{name}-", dir=cfg.work_dir)
    env = {"TEA_BUFFER__MAX_BYTES": cfg.buffer_max, **cfg.tea_env}
    srv = server.tea_server(data_dir, server.free_port(), env).start()
    try:  # whatever happens, the server is stopped
        monitor = Monitor(srv, health=True, max_seconds=cfg.duration + cfg.drain_timeout + 120)
        monitor.start()
        try:
            spec = _spec(cfg, srv.port, bodies, per_body, connections)
            # the bodies span ten tenants, as a collector writing for many tenants would: an admin credential
            spec.token = server.ADMIN_TOKEN
            tailers = livetail.Tailers(srv.port, cfg.live_tail, cfg.live_tail_query).start() if cfg.live_tail else None
            try:
                result = _load_and_drain(cfg, srv, monitor, spec)
            finally:
                if tailers is not None:
                    result_tail = tailers.stop()
                    print(f"  live tail: {result_tail}")
            if tailers is not None:
                result["live_tail"] = result_tail
        finally:
            monitor.stop()
    finally:
        stop = server_stop(srv)
    result.update(stop=stop, health_failures=monitor.health_failures,
                  rows_in_duckdb=_count_rows(os.path.join(data_dir, "tea.duckdb")))
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def server_stop(srv: Server) -> dict:
    stop = srv.stop()
    if stop["killed"] or stop["exit_code"] not in (0, -15):
        print(f"  {srv.name} did not stop cleanly: {stop}; last log lines:")
        with open(srv.log_path, "rb") as log:
            print(b"".join(log.readlines()[-20:]).decode(errors="replace"))
    return stop


def _count_rows(path: str) -> int | None:
    try:
        with duckdb.connect(path, read_only=True) as con:
            return con.execute("SELECT count(*) FROM events").fetchone()[0]
    except duckdb.Error as exc:
        print(f"  cannot count rows in {path}: {exc}")
        return None


def _load_and_drain(cfg: Config, srv: Server, monitor: Monitor, spec: loadgen.Spec) -> dict:
    idle_rss = monitor.rss()
    baseline = int(_health(srv)["events_written"])
    marks: dict[str, float] = {}
    load = loadgen.run_load(spec, cfg.processes, on_start=lambda t: marks.setdefault("t0", t))
    t0, load_rss = marks["t0"], monitor.peak_rss
    acked = load["events_acked"]
    backlog_at_end = monitor.last("buffer_bytes")
    print(f"  acknowledged {acked:,} events in {load['seconds']:.1f} s; waiting for storage ...")
    hit = monitor.wait_written(baseline + acked, cfg.drain_timeout)
    if hit is not None:
        stored = {"complete": True, "seconds": hit["t"] - t0, "events": acked,
                  "drain_seconds_after_load": max(0.0, hit["t"] - load["ended"])}
    else:  # storage did not catch up in time: report what it did store
        written = monitor.last("written") - baseline
        stored = {"complete": False, "seconds": time.time() - t0, "events": written,
                  "drain_seconds_after_load": None}
    stored["events_per_s"] = stored["events"] / stored["seconds"] if stored["seconds"] > 0 else 0.0
    backlog = [s["buffer_bytes"] for s in monitor.samples if "buffer_bytes" in s]
    return {"load": load, "stored": stored, "timeline": _timeline(monitor.samples, t0), "rss": {
        "idle_mib": idle_rss / MiB, "peak_during_load_mib": load_rss / MiB,
        "peak_mib": monitor.peak_rss / MiB}, "backlog": {
        "at_load_end_mib": backlog_at_end / MiB, "peak_mib": max(backlog, default=0) / MiB}}


def _health(srv: Server) -> dict:
    status, body = server.http_get(srv.port, "/health", timeout=5.0)
    if status != 200:
        raise RuntimeError(f"/health answered {status}")
    return json.loads(body)


def _timeline(samples: list[dict], t0: float, step: float = 1.0) -> list[dict]:
    """About one sample per ``step`` seconds from the load start: written, backlog, RSS."""
    out: list[dict] = []
    for sample in samples:
        t = sample["t"] - t0
        if t >= 0 and (not out or t - out[-1]["t"] >= step) and "written" in sample:
            out.append({"t": round(t, 2), "written": sample["written"],
                        "backlog_mib": round(sample["buffer_bytes"] / MiB, 1),
                        "rss_mib": round(sample.get("rss", 0) / MiB, 1)})
    return out
