"""Idle cost: CPU-seconds per minute and wake-ups per second of a ``tea serve`` that receives nothing.

    .venv/bin/python -m bench.idle              # 60 s idle after start-up
    .venv/bin/python -m bench.idle --seconds 20

Starts TEA the way ``bench.ingest`` does (fresh temporary data directory, embedded DuckDB, free
loopback port), waits until ``/readyz`` answers and a settle period has passed, then reads the
process's CPU time (user + system, the kernel's accounting through psutil) and its voluntary context
switches (each one a sleep the process woke from) at the start and the end of the idle window. Nothing
is sent to TEA meanwhile. Background loops that poll show up as CPU and as wake-ups even when idle.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import psutil

from bench.server import free_port, tea_server


def sample(proc: psutil.Process) -> tuple[float, int]:
    """CPU-seconds (user + system) and voluntary context switches of the process and its threads so far."""
    times = proc.cpu_times()
    return times.user + times.system, proc.num_ctx_switches().voluntary


def measure(seconds: float, settle_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tea-idle-") as data_dir:
        server = tea_server(data_dir, free_port(), {}).start()
        try:
            assert server.proc is not None
            proc = psutil.Process(server.proc.pid)
            time.sleep(settle_s)  # start-up work (imports, migrations, first replay) is not idle
            cpu0, switches0 = sample(proc)
            wall0 = time.monotonic()
            time.sleep(seconds)
            cpu1, switches1 = sample(proc)
            wall_s = time.monotonic() - wall0
        finally:
            stopped = server.stop()
    return {"idle_seconds": round(wall_s, 2), "cpu_seconds": round(cpu1 - cpu0, 4),
            "cpu_seconds_per_minute": round((cpu1 - cpu0) * 60 / wall_s, 4),
            "wakeups_per_second": round((switches1 - switches0) / wall_s, 1),
            "stop_seconds": stopped["stop_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window (default 60)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after ready before measuring (default 5)")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    args = parser.parse_args()
    result = measure(args.seconds, args.settle)
    if args.json:
        print(json.dumps(result))
        return
    print(f"idle {result['idle_seconds']} s: {result['cpu_seconds_per_minute']} CPU-seconds per minute, "
          f"{result['wakeups_per_second']} voluntary wake-ups per second (stopped in {result['stop_seconds']} s)")


if __name__ == "__main__":
    main()
