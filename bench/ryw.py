"""Read-your-writes costs: ingestion with a reader polling beside it, and a read right after a write.

``python -m bench.ryw`` starts one ``tea serve`` (DuckDB, the default settings: writer.flush_interval_ms
1000, reads.consistency read_your_writes) and measures, on that server:

1. ingestion alone against ingestion with a reader polling ``GET /v1/events`` (the newest 10 of the last
   5 s) 10 times a second, the
   reader's reads ``eventual`` (what a reader costs anyway) and ``read_your_writes`` (each read asks the
   writer to store what is acknowledged before answering); the rounds alternate so that a shared
   machine's drift falls on each. Printed: events/s of each and the ratios to ingestion alone (the
   target is >= 0.9) and of read_your_writes to eventual.
2. a write then at once a read of the same event, one after the other on one connection, ``--pairs``
   times, ``/metrics`` scraped before each write and after each read (outside the timing) so that each
   pair has its own storage writes (``tea_storage_write_seconds``): the write's latency, the read's, the
   storage write(s) the read waited for, and two ratios, medians over the pairs (the target for both:
   <= 1, i.e. within the write's latency plus one storage write, not the flush interval):
   ``read / (write + storage write)`` — the whole read, its own query included — and
   ``waited / (write + storage write)`` — what read-your-writes adds to the read: its latency less that of
   the same read made again at once, when nothing is pending (the read's own query and HTTP). The same
   pairs with ``TEA-Consistency: eventual`` show what the read finds without waiting.

The reader sends a read every 100 ms whether or not the ones before it were answered (a read_your_writes
read can wait up to ``reads.max_wait_ms``: a reader that waited for each answer would not read 10 times
a second). Each ingestion round also counts what storage committed in it (``tea_events_written_total``,
in whole batches): the acknowledged rate can outrun storage, and then a read_your_writes read waits for
the whole backlog — up to ``reads.max_wait_ms``, then answering ``stale`` (counted). Each round starts once
storage and the processors hold everything from the round before (no backlog carried into it), and the
kinds take turns going first.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import re
import statistics
import tempfile
import threading
import time
import uuid

from bench import events, loadgen
from bench.server import ADMIN_TOKEN, HOST, free_port, tea_server

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
EVENTUAL = "eventual"
POLL_S = 0.1  # the reader: 10 reads a second
WINDOW_MS = 5000  # ... of the events of the last 5 s


class Reader(threading.Thread):
    """Sends ``GET /v1/events?limit=10&start_time=<5 s ago>`` every ``POLL_S`` until stopped (bounded by
    ``max_reads``), with the ``TEA-Consistency`` it is given: a read goes at each tick whether or not the
    ones before it were answered (on up to ``CONNECTIONS`` connections), so the reader reads 10 times a
    second even while its reads wait for storage."""

    CONNECTIONS = 32  # reads in flight at most: reads.max_wait_ms (2 s) of ticks, and more

    def __init__(self, port: int, max_reads: int, consistency: str) -> None:
        super().__init__(name="ryw-reader", daemon=True)
        self.port, self.max_reads = port, max_reads
        self.headers = {**AUTH, "tea-consistency": consistency}
        self.latencies: list[float] = []
        self.stale = 0
        self.halt = threading.Event()
        self.local = threading.local()
        self.lock = threading.Lock()

    def run(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(self.CONNECTIONS, thread_name_prefix="ryw-read") as pool:
            next_at = time.perf_counter()
            for _ in range(self.max_reads):
                if self.halt.wait(max(0.0, next_at - time.perf_counter())):
                    break
                next_at += POLL_S
                pool.submit(self.read)

    def read(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        started = time.perf_counter()
        since_ms = int(time.time() * 1000) - WINDOW_MS  # (the newest events: what a dashboard polls)
        conn.request("GET", f"/v1/events?limit=10&start_time={since_ms}", headers=self.headers)
        response = conn.getresponse()
        response.read()
        with self.lock:
            self.latencies.append(time.perf_counter() - started)
            self.stale += response.getheader("tea-consistency") == "stale"


def ingest(port: int, seconds: float, connections: int, reader_consistency: str | None) -> dict:
    """Ingestion of 1 000-event batches on ``connections`` connections for ``seconds``, with a reader beside it
    unless ``reader_consistency`` is None."""
    bodies = events.batch_bodies(8, 1000)
    spec = loadgen.Spec(HOST, port, "/v1/events", bodies, 1000, connections, seconds, int(seconds * 2000) + 1,
                        ADMIN_TOKEN)
    reader = Reader(port, int(seconds / POLL_S) + 10, reader_consistency) if reader_consistency else None
    before = metrics(port)["events_written_total"]
    result = loadgen.run_load(spec, 1, on_start=(lambda _t: reader.start()) if reader else None)
    stored = metrics(port)["events_written_total"] - before
    out = {"events_per_s": result["events_per_s"], "stored_per_s": round(stored / seconds),
           "p50_ms": result["latency_ms"]["p50"]}
    if reader is not None:
        reader.halt.set()
        reader.join(60)
        lat = sorted(reader.latencies) or [0.0]
        out.update(reads=len(reader.latencies), reads_per_s=round(len(reader.latencies) / seconds, 1),
                   stale=reader.stale, read_p50_ms=_ms(statistics.median(lat)), read_max_ms=_ms(lat[-1]))
    return out


def metrics(port: int) -> dict[str, float]:
    """``tea_storage_write_seconds`` (sum, count) and ``tea_events_written_total`` so far."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    found = dict(re.findall(r"^tea_(storage_write_seconds_sum|storage_write_seconds_count|events_written_total)"
                            r"(?:\{\})? (\S+)$", text, re.M))
    return {name: float(found.get(name, 0)) for name in
            ("storage_write_seconds_sum", "storage_write_seconds_count", "events_written_total")}


def pairs(port: int, count: int, consistency: str) -> dict:
    """A write, then at once a read of the same event by its id: ``count`` times on one connection; the
    storage writes of each pair from ``/metrics`` before its write and after its read; a read_your_writes
    read is made once more at once (nothing pending then): what is left of it is the read's own cost."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    writes, reads, rereads, stored, stored_n, found = [], [], [], [], [], 0
    for _ in range(count):
        event_id = uuid.uuid4().hex
        body = json.dumps({"event_type": "ryw", "event_id": event_id, "tenant_id": "ryw"}).encode()
        before = metrics(port)
        started = time.perf_counter()
        conn.request("POST", "/v1/events", body, {**AUTH, "content-type": "application/json"})
        conn.getresponse().read()
        wrote = time.perf_counter()
        conn.request("GET", f"/v1/events/{event_id}?tenant_id=ryw", headers={**AUTH, "tea-consistency": consistency})
        response = conn.getresponse()
        response.read()
        read = time.perf_counter()
        if consistency != EVENTUAL:  # the same read again, nothing pending now: the read's own cost
            conn.request("GET", f"/v1/events/{event_id}?tenant_id=ryw", headers=AUTH)
            conn.getresponse().read()
            rereads.append(time.perf_counter() - read)
        after = metrics(port)
        writes.append(wrote - started)
        reads.append(read - wrote)
        stored.append(after["storage_write_seconds_sum"] - before["storage_write_seconds_sum"])
        stored_n.append(after["storage_write_seconds_count"] - before["storage_write_seconds_count"])
        found += response.status == 200
    conn.close()
    bound = [w + s for w, s in zip(writes, stored)]
    out = {"consistency": consistency, "pairs": count, "found": found, "write_p50_ms": _ms(statistics.median(writes)),
           "read_p50_ms": _ms(statistics.median(reads)), "read_max_ms": _ms(max(reads)),
           "storage_write_p50_ms": _ms(statistics.median(stored)),
           "storage_writes_per_read": statistics.median(stored_n)}
    if consistency != EVENTUAL:
        out["read_over_write_plus_storage"] = round(statistics.median(
            r / b for r, b in zip(reads, bound)), 3)
        out["reread_p50_ms"] = _ms(statistics.median(rereads))
        out["waited_beyond_storage_p50_ms"] = _ms(statistics.median(
            r - again - st for r, again, st in zip(reads, rereads, stored)))
        out["waited_over_write_plus_storage"] = round(statistics.median(
            (r - again) / b for r, again, b in zip(reads, rereads, bound)), 3)
    return out


def summarize(results: dict[str, list[dict]]) -> None:
    """The medians over the rounds: acknowledged and stored events/s, the reader's reads/s and stale reads."""
    for field, what in (("events_per_s", "acknowledged"), ("stored_per_s", "stored")):
        rate = {kind: statistics.median(r[field] for r in found) for kind, found in results.items()}
        a, e, r = rate["alone"], rate["reader eventual"], rate["reader read_your_writes"]
        print(f"{what}: ingestion alone {a:,.0f} ev/s; with a reader at 10/s: eventual {e:,.0f} ev/s "
              f"(x{e / a:.3f}), read_your_writes {r:,.0f} ev/s (x{r / a:.3f}; target >= 0.9; "
              f"x{r / e:.3f} of eventual)")
    for kind in ("reader eventual", "reader read_your_writes"):
        found = results[kind]
        print(f"{kind}: {statistics.median(r['reads_per_s'] for r in found)} reads/s, "
              f"{sum(r['stale'] for r in found)} of {sum(r['reads'] for r in found)} stale")


def drain(port: int, timeout_s: float = 300.0) -> None:
    """Wait (bounded) until storage and the processors hold the rounds' backlog: the pairs then measure a
    write and a read, not the backlog before them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("GET", "/health")
        consumers = json.loads(conn.getresponse().read())["consumers"]
        conn.close()
        if not any(c["lag_events"] for c in consumers.values()):
            return
        time.sleep(0.5)
    print(f"(the backlog did not drain within {timeout_s:.0f} s)")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ryw", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per ingestion round (default 8)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of each, alternating (default 2; 0: only the pairs)")
    parser.add_argument("--pairs", type=int, default=100, help="write-then-read pairs (default 100)")
    parser.add_argument("--connections", type=int, default=4, help="ingestion connections (default 4)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tea-bench-ryw-") as work:
        port = free_port()
        srv = tea_server(work, port, {"TEA_BUFFER__MAX_BYTES": "4GiB"}).start()
        try:
            kinds = {"alone": None, "reader eventual": "eventual", "reader read_your_writes": "read_your_writes"}
            results: dict[str, list[dict]] = {kind: [] for kind in kinds}
            order = list(kinds.items())
            for n in range(args.rounds):
                for kind, consistency in order[n % 3:] + order[:n % 3]:  # each kind first in turn
                    drain(port)  # each round from an empty backlog: none carried over from the round before
                    results[kind].append(ingest(port, args.seconds, args.connections, consistency))
                    print(f"round {n + 1} {kind}: {results[kind][-1]}")
            if args.rounds:
                summarize(results)
            drain(port)
            eventual = pairs(port, args.pairs, EVENTUAL)
            ryw = pairs(port, args.pairs, "read_your_writes")
            print(f"write then read, read_your_writes: {ryw}")
            print(f"write then read, eventual: {eventual}")
        finally:
            srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
