"""The SQL compiler (tea.storage.sql) and the filterable fields declared once (tea.types.FILTER_FIELDS).
What the compiled SQL answers is held to one answer on every backend by tests/storage; here: that values
never reach the SQL text of a placeholder dialect, and that every filterable field reaches every place
that filters."""
from __future__ import annotations

import pytest

from tea import remote
from tea.query.spec import Filters, SeedFilters, event_filter
from tea.storage.clickhouse.sql import ClickHouseDialect
from tea.storage.duckdb.sql import DuckDBDialect
from tea.storage.memory.store import select
from tea.storage.postgres.sql import PostgresDialect
from tea.storage.sql import comms, events
from tea.types import FILTER_FIELDS, Agg, AggregateSpec, Cursor, Event, EventFilter, QuerySpec

HOSTILE = "x' OR 1=1; --%s?"
PLACEHOLDERS = [DuckDBDialect(), PostgresDialect()]


def _every_filter(value: str) -> EventFilter:
    return EventFilter(tenant_ids=(value, value + "2"), start_us=1, end_us=2,
                       **{f.name: value for f in FILTER_FIELDS})


def _statements(d) -> list[tuple[str, list]]:  # type: ignore[no-untyped-def]
    f = _every_filter(HOSTILE)
    aggs = (Agg("count"), Agg("quantile", "duration_ms", q=0.5), Agg("quantile", "duration_ms", q=0.9))
    out = [events.count(f, d), events.page(QuerySpec(f, 10, Cursor(5, HOSTILE, HOSTILE)), d),
           events.aggregate(AggregateSpec(f, aggs, "hour", ("method",), 3), d)]
    if d.ctes:
        out.append(comms.communication_groups("pairs", f, d))
    return out


@pytest.mark.parametrize("d", PLACEHOLDERS, ids=lambda d: type(d).__name__)
def test_values_are_parameters_never_sql_text(d) -> None:  # type: ignore[no-untyped-def]
    for sql, params in _statements(d):
        assert "1=1" not in sql
        flat = [v for p in params for v in (p if isinstance(p, list) else [p])]
        assert HOSTILE in flat
        assert sql.count(d.mark) == len(params)


def test_clickhouse_renders_values_as_escaped_literals() -> None:
    for sql, params in _statements(ClickHouseDialect()):
        assert params == []
        assert "'x\\' OR 1=1; --%s?'" in sql and "'x' OR" not in sql


@pytest.mark.parametrize("d", [*PLACEHOLDERS, ClickHouseDialect()], ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("field", FILTER_FIELDS, ids=lambda f: f.name)
def test_every_filterable_field_is_compiled(d, field) -> None:  # type: ignore[no-untyped-def]
    sql, _ = events.count(EventFilter(**{field.name: "v"}), d)
    assert f"WHERE {field.name} = " in sql


@pytest.mark.parametrize("field", FILTER_FIELDS, ids=lambda f: f.name)
def test_every_filterable_field_filters_in_memory(field) -> None:  # type: ignore[no-untyped-def]
    base = {"event_type": "e", "event_id": "1"}
    hit, miss = Event(**{**base, field.name: "v"}), Event(**{**base, field.name: "w"})  # type: ignore[arg-type]
    assert select([hit, miss], EventFilter(**{field.name: "v"})) == [hit]


@pytest.mark.parametrize("field", [f for f in FILTER_FIELDS if f.param], ids=lambda f: f.name)
def test_every_filterable_field_is_a_query_parameter_and_a_remote_flag(field) -> None:  # type: ignore[no-untyped-def]
    params = (SeedFilters if field.seed else Filters)(**{field.name: "v"})
    assert getattr(event_filter(params), field.name) == "v"
    assert field.name in remote.FILTERS
    assert (field.name in SeedFilters.__struct_fields__) == field.seed
