"""One transport against a fresh TEA: start it, load it, wait until storage caught up, stop it."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from bench import otlp_profile, phases, server
from bench.otlp_tally import LoadSpec, run_load
from bench.server import HOST, Monitor

MiB = 1024 * 1024
LABELS = {"http": "OTLP/HTTP protobuf", "grpc": "OTLP/gRPC"}


@dataclass
class Config:
    duration: float = 15.0
    processes: int = 1
    concurrency: int = 8        # in-flight requests per load process
    grpc_mode: str = "h2"
    channels: int = 1
    drain_timeout: float = 60.0
    health_poll_s: float = 0.1  # how often /health (events_written) and RSS are sampled
    buffer_max: str = "8GiB"
    profile: str = ""           # py-spy on TEA during the load: "", "all" or "gil"
    tea_env: dict = field(default_factory=dict)
    work_dir: str = ""
    results_dir: str = ""
    shape: str = "semconv"      # the spans sent (bench.otlp_shapes)
    tenants: int = 0            # the tenants its resources are spread over (0: the shape's own)


def tea_phase(cfg: Config, transport: str) -> dict:
    data_dir = tempfile.mkdtemp(prefix=f"tea-otlp-{transport}-", dir=cfg.work_dir)
    http_port = server.free_port()
    grpc_port = server.free_port()
    while grpc_port == http_port:
        grpc_port = server.free_port()
    env = {"TEA_BUFFER__MAX_BYTES": cfg.buffer_max, "TEA_OTLP__GRPC_PORT": str(grpc_port),
           "TEA_OTLP__HTTP_PORT": "0", **cfg.tea_env}
    srv = server.tea_server(data_dir, http_port, env).start()
    try:  # whatever happens, the server is stopped
        monitor = Monitor(srv, health=True, interval=cfg.health_poll_s,
                          max_seconds=cfg.duration + cfg.drain_timeout + 120)
        monitor.start()
        try:
            spec = LoadSpec(transport, HOST, grpc_port if transport == "grpc" else http_port, server.ADMIN_TOKEN,
                            cfg.concurrency, cfg.duration, max_requests=int(cfg.duration * 20_000) + 1,
                            grpc_mode=cfg.grpc_mode, channels=cfg.channels, shape=cfg.shape,
                            tenants=cfg.tenants)
            result = _load_and_drain(cfg, srv, monitor, spec)
        finally:
            monitor.stop()
    finally:
        stop = phases.server_stop(srv)
    result.update(stop=stop, health_failures=monitor.health_failures, tea_env=env,
                  rows_in_duckdb=phases._count_rows(os.path.join(data_dir, "tea.duckdb")))
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def _load_and_drain(cfg: Config, srv: server.Server, monitor: Monitor, spec: LoadSpec) -> dict:
    idle_rss = monitor.rss()
    baseline = int(phases._health(srv)["events_written"])
    processed_before = processed(srv)
    label = LABELS[spec.transport]
    mode = f", grpc {spec.grpc_mode}, {spec.channels} channel(s)" if spec.transport == "grpc" else ""
    print(f"{label}, {spec.shape} spans: {cfg.processes} load process(es) x {spec.concurrency} in flight{mode}, {cfg.duration:g} s ...")
    marks: dict[str, float] = {}
    pid = srv.proc.pid
    cpu: dict[str, dict] = {}
    delay = min(2.0, cfg.duration / 5)
    sampler = otlp_profile.Sampler(pid, cfg.profile, min(8.0, max(1.0, cfg.duration - delay - 1)), delay,
                                   os.path.join(cfg.results_dir, f"otlp-pyspy-{cfg.profile}-{spec.transport}-"
                                                f"{time.strftime('%Y%m%d-%H%M%S')}.txt"))

    def on_start(t: float) -> None:
        marks["t0"] = t
        cpu["start"] = otlp_profile.thread_cpu(pid)
        sampler.start()

    load = run_load(spec, cfg.processes, on_start=on_start)
    cpu["load_end"] = otlp_profile.thread_cpu(pid)
    t0, load_rss = marks["t0"], monitor.peak_rss
    acked = load["events_acked"]
    print(f"  acknowledged {acked:,} spans in {load['seconds']:.1f} s; waiting for storage ...")
    hit = monitor.wait_written(baseline + acked, cfg.drain_timeout)
    if hit is not None:
        stored = {"complete": True, "seconds": hit["t"] - t0, "spans": acked,
                  "drain_seconds_after_load": max(0.0, hit["t"] - load["ended"])}
    else:  # storage did not catch up in time: report what it did store
        stored = {"complete": False, "seconds": time.time() - t0, "spans": monitor.last("written") - baseline,
                  "drain_seconds_after_load": None}
    stored["spans_per_s"] = stored["spans"] / stored["seconds"] if stored["seconds"] > 0 else 0.0
    done = _wait_processed(srv, processed_before + acked, t0, cfg.drain_timeout) if stored["complete"] else None
    if done is not None:
        done["spans_per_s"] = (acked - done["missing"]) / done["seconds"]
    tea_cpu = {"during_load": otlp_profile.cpu_between(cpu["start"], cpu["load_end"], load["seconds"], pid),
               "load_and_drain": otlp_profile.cpu_between(cpu["start"], otlp_profile.thread_cpu(pid),
                                                          stored["seconds"], pid)}
    load["spans_per_s"] = load.pop("events_per_s")
    backlog = [s["buffer_bytes"] for s in monitor.samples if "buffer_bytes" in s]
    return {"transport": spec.transport, "shape": spec.shape, "label": label, "load": load, "stored": stored,
            "processed": done,
            "tea_cpu": tea_cpu, "profile": sampler.result(),
            "timeline": phases._timeline(monitor.samples, t0),
            "rss": {"idle_mib": idle_rss / MiB, "peak_during_load_mib": load_rss / MiB,
                    "peak_mib": monitor.peak_rss / MiB},
            "backlog_peak_mib": max(backlog, default=0) / MiB}



def processed(srv: server.Server) -> int:
    """``telemetron_events_processed_total`` from /metrics: events stored and handled by every processor that
    wanted them (the analytics projections among them; events no processor wants count when stored)."""
    status, body = server.http_get(srv.port, "/metrics", timeout=5.0)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    for line in body.decode().splitlines():
        if line.startswith("telemetron_events_processed_total "):
            return int(float(line.split()[1]))
    return 0


def _wait_processed(srv: server.Server, target: int, t0: float, timeout: float) -> dict:
    """When every processor had handled the load's events (polled every 0.1 s, up to ``timeout`` s more)."""
    deadline = time.monotonic() + timeout
    while (count := processed(srv)) < target and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"complete": count >= target, "seconds": time.time() - t0, "missing": max(0, target - count)}
