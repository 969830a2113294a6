"""``python -m fuzz.run --processes N -runs=TOTAL ...``: N fuzzing processes over one corpus directory.

Each worker is ``python -m fuzz.run`` with its share of the runs and its own seed; libFuzzer in each
re-reads the shared corpus directory now and then (``-reload``), so what one finds the others build on.
Their output goes to build/fuzz/logs/<target>-<seed>.log; the summary adds up their final statistics.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

LOGS = Path(__file__).resolve().parent.parent / "build" / "fuzz" / "logs"


def _runs(flags: list[str]) -> int:
    for f in flags:
        if f.startswith("-runs="):
            return int(f.split("=", 1)[1])
    raise SystemExit("fuzz: --processes needs -runs=N (the total over the workers)")


def run(target: str, processes: int, flags: list[str]) -> int:
    """Runs the workers to the end; returns 0 when every one finished without a finding. Worker n gets seed
    base + n + 1 (``-seed=base``, default 0) and writes build/fuzz/logs/<target>-<its seed>.log."""
    total = _runs(flags)
    base = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("-seed=")), 0)
    rest = [f for f in flags if not f.startswith(("-runs=", "-seed="))]
    LOGS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    workers = []
    for n in range(processes):
        share = total // processes + (1 if n < total % processes else 0)
        out = (LOGS / f"{target}-{base + n + 1}.log").open("w")
        workers.append((subprocess.Popen([sys.executable, "-m", "fuzz.run", f"--target={target}", f"-runs={share}",
                                          f"-seed={base + n + 1}", *rest], stdout=out, stderr=subprocess.STDOUT), out))
    codes = [w.wait() for w, _ in workers]
    for _, out in workers:
        out.close()
    summary(target, [LOGS / f"{target}-{base + n + 1}.log" for n in range(processes)], codes,
            time.monotonic() - started)
    return 0 if all(c == 0 for c in codes) else 1


def summary(target: str, logs: list[Path], codes: list[int], seconds: float) -> None:
    units, cov, ft = 0, 0, 0
    for log_file in logs:
        text = log_file.read_text(errors="replace")
        found = re.findall(r"stat::number_of_executed_units: (\d+)", text)
        units += int(found[-1]) if found else 0
        last = re.findall(r"cov: (\d+) ft: (\d+)", text)
        if last:
            cov, ft = max(cov, int(last[-1][0])), max(ft, int(last[-1][1]))
    print(f"fuzz {target}: {units} inputs in {seconds:.0f} s ({units / max(seconds, 1):.0f}/s) by {len(logs)} "
          f"processes; cov {cov} ft {ft}; exit codes {codes}; logs in {LOGS}")
