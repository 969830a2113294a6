"""Optional py-spy sampling of the TEA process during the load (``--py-spy``).

Runs ``py-spy record -p PID -d S -f raw --nonblocking --threads`` (mode ``all``: every thread that
is not idle; mode ``gil``: adds ``--gil``, only the thread holding the GIL) in the background and
summarises the raw output: the share of samples per thread and the functions with the most own
time (the leaf frame of each sample). Also: CPU time per OS thread from /proc, no py-spy needed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter

PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")
_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((?:[^()]*/)?([^/()]+):(\d+)\)$")


def start(pid: int, seconds: float, out_path: str, mode: str = "all") -> subprocess.Popen | None:
    if not os.path.exists(PY_SPY):
        print(f"  (py-spy not found at {PY_SPY}; no profile)")
        return None
    argv = [PY_SPY, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-f", "raw", "-o", out_path,
            "--nonblocking", "--threads"] + (["--gil"] if mode == "gil" else [])
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(proc: subprocess.Popen | None, out_path: str, top: int = 15) -> dict | None:
    if proc is None:
        return None
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return None
    return summarise(out_path, top) if os.path.exists(out_path) else None


class Sampler:
    """py-spy for ``seconds``, started ``delay`` s after ``start()`` (to skip the ramp-up)."""

    def __init__(self, pid: int, mode: str, seconds: float, delay: float, out_path: str) -> None:
        self.mode, self.out_path = mode, out_path
        self.proc: list[subprocess.Popen | None] = []
        self.timer = threading.Timer(delay, lambda: self.proc.append(start(pid, seconds, out_path, mode)))

    def start(self) -> None:
        if self.mode:
            os.makedirs(os.path.dirname(self.out_path) or ".", exist_ok=True)
            self.timer.start()

    def result(self) -> dict | None:
        if not self.mode:
            return None
        self.timer.join()
        return finish(self.proc[0] if self.proc else None, self.out_path)


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match.group(1)} ({match.group(2)})" if match else frame


def summarise(path: str, top: int = 15) -> dict:
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(path) as fh:
        for line in fh:
            match = _LINE.match(line.rstrip("\n"))
            if not match:
                continue
            stack, count = match.group(1).split(";"), int(match.group(2))
            total += count
            threads[re.sub(r"\(\d+\): |\s*\(?0x[0-9a-f]+\)?", "", stack[0]).strip()] += count
            own[_short(stack[-1]) if len(stack) > 1 else "(no Python frame)"] += count
    share = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    return {"samples": total, "raw": path, "rate_hz": 100,
            "threads_pct": {name: share(n) for name, n in threads.most_common(8)},
            "own_time_pct": {name: share(n) for name, n in own.most_common(top)}}


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) per OS thread of ``pid``: {tid: (name, seconds)} (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                name = fh.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float,
                main_tid: int) -> dict:
    """Per-thread-name CPU use between two ``thread_cpu`` snapshots, in % of one core."""
    used: Counter[str] = Counter()
    main_name = after.get(main_tid, ("", 0.0))[0]
    for tid, (name, cpu) in after.items():
        label = "main (event loop)" if tid == main_tid else "other threads" if name == main_name else name
        used[label] += cpu - before.get(tid, (name, 0.0))[1]
    total = sum(used.values())
    return {"total_pct_of_one_core": round(100 * total / seconds, 1),
            "threads_pct_of_one_core": {name: round(100 * cpu / seconds, 1)
                                        for name, cpu in used.most_common(8) if cpu > 0}}
