"""CPU of a processor consumer's line selection: ``python -m bench.select [--shape mixed] [--spans 100000]``.

The ``otel_analytics`` consumer's ``_select`` in process, over buffer records of OTLP spans as the mapper
stores them (one record per export request of ``bench.otlp_spans.Bodies``), read by read as the consumer
reads them: with its ``wants_lines`` (the lines found by the native search in a worker thread) and with its
``wants`` alone (every line split and tested on the event loop), interleaved round by round. Prints the median
CPU µs per span of the whole process and of the event loop's thread, and the lines selected.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from bench.otlp_spans import Bodies
from tea.buffer.log import DurableBuffer
from tea.buffer.segments import Record
from tea.pipeline.consume import ProcessorConsumer
from tea.receive.otlp_analytics import OtelAnalytics
from tea.types import encode_lines


def records(shape: str, spans: int) -> list[Record]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from tea.receive.otlp_map import pb_spans
    bodies, found, offset, total = Bodies(254, shape=shape), list[Record](), 0, 0
    while total < spans:
        events = list(pb_spans(ExportTraceServiceRequest.FromString(bodies.next()), False))
        payload = encode_lines(events)
        found.append(Record(offset, offset + len(payload), len(events), 0, 0, 0, payload))
        offset, total = offset + len(payload), total + len(events)
    return found


class ByLine(OtelAnalytics):
    wants_lines = None  # type: ignore[assignment]  # (the consumer splits every line and asks wants)


async def run(shape: str, spans: int, read_events: int, rounds: int) -> None:
    recs = records(shape, spans)
    reads, read, events = [], list[Record](), 0
    for record in recs:
        read.append(record)
        events += record.count
        if events >= read_events:
            reads.append(read)
            read, events = [], 0
    if read:
        reads.append(read)
    total = sum(r.count for r in recs)
    with tempfile.TemporaryDirectory(prefix="tea-bench-select-") as tmp:
        buffer = DurableBuffer(tmp, max_bytes=10**9, segment_bytes=10**9)
        consumers = {mode: ProcessorConsumer(mode, fn, buffer, _deliver, batch_size=read_events, batch_timeout_s=1.0,
                                             read_events=read_events, on_advance=lambda: None)
                     for mode, fn in (("wants_lines", OtelAnalytics), ("wants", ByLine))}
        await buffer.open()  # (consumers are declared first)
        spent: dict[str, list[tuple[float, float]]] = {mode: [] for mode in consumers}
        picked: dict[str, int] = {}
        for round_ in range(rounds + 1):
            for mode, consumer in consumers.items():
                cpu, loop, held = time.process_time(), time.thread_time(), 0
                for read in reads:
                    held += len(await consumer._select(read, 0))
                if round_:  # (the first round warms up)
                    spent[mode].append((time.process_time() - cpu, time.thread_time() - loop))
                picked[mode] = held
        await buffer.close()
    size = sum(len(r.payload) for r in recs)
    print(f"{shape}: {total} spans in {len(recs)} records ({size / total:.0f} B a span), {len(reads)} reads; "
          f"lines selected {picked}")
    for mode, times in spent.items():
        process = statistics.median(t for t, _ in times) / total * 1e6
        loop = statistics.median(t for _, t in times) / total * 1e6
        print(f"  {mode:12s} CPU {process:.3f} µs/span (process), {loop:.3f} µs/span (event loop), {rounds} rounds")


async def _deliver(*_: Any) -> bool:
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="mixed", help="shape of bench/otlp_shapes.py")
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--read-events", type=int, default=20_000, help="events of one read (otel_analytics' batch)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for shape in args.shape.split(","):
        asyncio.run(run(shape, args.spans, args.read_events, args.rounds))


if __name__ == "__main__":
    main()
