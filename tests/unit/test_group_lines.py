"""tea.scan.group_lines: a DuckDB write's lines grouped by tenant before staging (the extension gives the groups
fuzz.targets.group_lines_reference gives; the lines themselves are all kept, each once, in order within their
group), and the DuckDB store answering the same with the extension's grouping, the reference's and none (without
the extension)."""
from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzz.targets import group_lines_reference
from tea import scan
from tea.storage.duckdb.store import DuckDBStorage
from tea.types import Batch, Event, EventFilter, QuerySpec

KEY = b'"tenant_id":"'


def _value(line: bytes) -> bytes | None:
    """The value after the first KEY of a line, up to its next unescaped quote (None: no such value)."""
    at = line.find(KEY)
    if at < 0:
        return None
    i = at + len(KEY)
    while i < len(line):
        if line[i:i + 1] == b'"':
            return line[at + len(KEY):i]
        i += 2 if line[i:i + 1] == b"\\" else 1
    return None


def _lines(chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        lines = chunk.split(b"\n")
        if chunk.endswith(b"\n") or not chunk:
            lines.pop()
        out.extend(line + b"\n" for line in lines)
    return out


def _agrees(chunks: list[bytes]) -> None:
    """The extension and the reference give the same answer, and it is the lines grouped by their value, in order."""
    reference = group_lines_reference(chunks, KEY)
    if scan._group_lines is not None:
        assert scan._group_lines(chunks, KEY) == reference, (chunks, reference)
    lines = _lines(chunks)
    values = [_value(line) for line in lines]
    expected: dict[bytes | None, list[bytes]] = {}
    for line, value in zip(lines, values):
        expected.setdefault(value, []).append(line)
    runs = sum(1 for i, value in enumerate(values) if i == 0 or values[i - 1] != value)
    if len(expected) > scan.GROUP_MAX or runs <= len(expected):
        assert reference is None
        assert scan.group_lines(chunks, KEY) is chunks
    else:
        assert reference == [b"".join(group) for group in expected.values()]


def test_group_lines_groups_by_the_first_value_of_the_key() -> None:
    """A nested key after the first is not the line's; an escaped quote is part of the value; a line without the key
    or without the value's closing quote (a backslash before the newline) goes with the others without one; the last
    line without a newline gets one; lines already grouped or with more than GROUP_MAX values stay as they are."""
    a = b'{"event_id":"1","tenant_id":"a","attributes":{"tenant_id":"b"}}'
    b = b'{"attributes":{"x":"\\"tenant_id\\":\\"a"},"tenant_id":"b"}'
    q = b'{"tenant_id":"a\\"b"}'
    bare, cut, slash = b'{"x":1}', b'{"tenant_id":"a', b'{"tenant_id":"a\\'
    assert scan.group_lines([a + b"\n" + b + b"\n" + a + b"\n"], KEY) == [(a + b"\n") * 2, b + b"\n"]
    assert scan.group_lines([a + b"\n", b + b"\n" + q, a], KEY) == [(a + b"\n") * 2, b + b"\n", q + b"\n"]
    assert scan.group_lines([bare + b"\n" + a + b"\n" + cut + b"\n" + slash + b"\n"], KEY) == [
        bare + b"\n" + cut + b"\n" + slash + b"\n", a + b"\n"]
    grouped = [a + b"\n" + a + b"\n", b + b"\n"]
    assert scan.group_lines(grouped, KEY) is grouped
    many = [b'{"tenant_id":"t%d"}\n{"tenant_id":"x"}\n' % i for i in range(scan.GROUP_MAX)]
    assert scan.group_lines(many, KEY) is many
    cases = [[], [b""], [b"\n"], [b"\n\n"], [a], [a, b, a], [a + b"\n", b"\n", b + b"\n", a + b"\n"], many,
             [bare + b"\n" + a + b"\n" + bare], [cut + b"\n" + a + b"\n" + cut], [slash + b"\n" + a + b"\n" + slash],
             [KEY, KEY + b'a"', KEY + b'"'], [b"\n".join([a, b] * 40)], many[:scan.GROUP_MAX - 2] + [a]]
    for chunks in cases:
        _agrees(chunks)


_PIECES = [b"\n", b"\n", b"\n", b"{", b"}", b'"', b"\\", b"\\\\", b'\\"', b"a", b"b", b"t1", b"t2", KEY, KEY, KEY,
           b'"tenant_id"', b"x" * 17]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=12), max_size=40).map(b"".join),
                       max_size=5))
def test_group_lines_agrees_with_the_reference(chunks: list[bytes]) -> None:
    """Random NDJSON-like chunks: the extension and the reference give the same groups, those of a plain split."""
    _agrees(chunks)


def _event(n: int, tenant: str) -> Event:
    return Event(event_type="span", event_id=f"e{n % 300}", tenant_id=tenant, timestamp=1_700_000_000_000_000 + n,
                 received_at=1_700_000_000_000_000 + n, source="s", attributes={"tenant_id": "other", "n": n})


@pytest.mark.parametrize("grouping", ["native", "reference", "none"])
def test_duckdb_stores_the_same_events_however_its_lines_are_grouped(tmp_path: Path, monkeypatch,
                                                                     grouping: str) -> None:
    """Batches interleaving many tenants (more than GROUP_MAX in one, quotes and backslashes in ids), repeating ids
    within a batch and across batches: the same events stored, once each, with the lines grouped by the
    extension, by the reference, or not at all (the extension not built)."""
    import tea.storage.duckdb.store as store
    if grouping == "native" and scan._group_lines is None:
        pytest.skip("the extension is not built")
    if grouping == "reference":
        monkeypatch.setattr(store, "group_lines",
                            lambda chunks, key: group_lines_reference(chunks, key) or chunks)
    if grouping == "none":
        monkeypatch.setattr(scan, "_group_lines", None)
    rng = random.Random(7)
    tenants = ["t1", "t2", 't"3', "t\\4"] + [f"many{i}" for i in range(scan.GROUP_MAX + 6)]
    batches = [[_event(n, tenants[rng.randrange(4)]) for n in range(400)],
               [_event(n, rng.choice(tenants)) for n in range(600)],
               [_event(n, tenants[n % 3]) for n in range(200, 500)]]

    async def run() -> list[tuple[str, str, int]]:
        storage = DuckDBStorage(str(tmp_path / f"{grouping}.duckdb"))
        await storage.open()
        try:
            for events in batches:
                await storage.write_batch(Batch.from_events(events))
            result = await storage.query_events(QuerySpec(EventFilter(), limit=10_000))
            return sorted((e.tenant_id, e.event_id, e.timestamp) for e in result.events)
        finally:
            await storage.close()

    stored = asyncio.run(run())
    expected: dict[tuple[str, str], int] = {}
    for events in batches:
        for event in events:  # (the first of an id within a batch, and across batches the stored one, stays)
            expected.setdefault((event.tenant_id, event.event_id), event.timestamp)  # type: ignore[arg-type]
    assert stored == sorted((t, e, ts) for (t, e), ts in expected.items())
