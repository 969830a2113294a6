"""What TEA's HTTP edge costs: the no-op endpoint (bench/noop.py) on uvicorn's httptools protocol
against the same endpoint behind ``tea.http.edge``, single-event requests, rounds alternating.

Run: ``python -m bench.edge [--rounds 5] [--duration 4] [--connections 64]``. Prints requests/s and the
server's CPU time per request (user + sys of the server process over the load: steadier than
requests/s on a shared machine) for each round, then the medians and the ratios edge / plain.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

import psutil

from bench import events, loadgen, server


def one_round(work_dir: str, edge: bool, duration: float, connections: int) -> dict:
    port = server.free_port()
    srv = server.noop_server(work_dir, port)
    if edge:
        srv.argv.append("--edge")
    srv.start()
    try:
        process = psutil.Process(srv.proc.pid)  # type: ignore[union-attr]
        bodies = events.single_bodies(8)
        spec = loadgen.Spec(server.HOST, port, "/v1/events", bodies, 1, connections, duration,
                            int(duration * 200_000) + 1)
        before = process.cpu_times()
        result = loadgen.run_load(spec, 1)
        after = process.cpu_times()
    finally:
        srv.stop()
    served = result["ok"] + result["partial"]
    cpu_s = (after.user - before.user) + (after.system - before.system)
    return {"requests_per_s": result["requests_per_s"], "cpu_us_per_request": cpu_s / max(served, 1) * 1e6,
            "errors": result["errors"] + result["other"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of load per server per round")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    work_dir = tempfile.mkdtemp(prefix="tea-bench-edge-")
    runs: dict[str, list[dict]] = {"plain": [], "edge": []}
    for n in range(args.rounds):
        for name in (("plain", "edge") if n % 2 == 0 else ("edge", "plain")):
            out = one_round(work_dir, name == "edge", args.duration, args.connections)
            runs[name].append(out)
            print(f"round {n + 1} {name:>5}: {out['requests_per_s']:>9,.0f} requests/s  "
                  f"{out['cpu_us_per_request']:6.1f} µs CPU/request  errors={out['errors']}", flush=True)
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in ("requests_per_s", "cpu_us_per_request")}
               for name, rs in runs.items()}
    for name, m in medians.items():
        print(f"median {name:>5}: {m['requests_per_s']:>9,.0f} requests/s  {m['cpu_us_per_request']:6.1f} µs CPU/request")
    plain, edge = medians["plain"], medians["edge"]
    print(f"edge / plain: requests/s {edge['requests_per_s'] / plain['requests_per_s']:.3f}, "
          f"CPU per request {edge['cpu_us_per_request'] / plain['cpu_us_per_request']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
