"""Metric points and log records in DuckDB: two tables, loaded straight from the buffer's NDJSON by
``read_json`` with typed columns (no Python object per point), deduplicated on (tenant_id, id) against the
batch and the stored rows of the batch's time range."""
from __future__ import annotations

import os
from typing import Any

import duckdb

from tea.errors import StorageDataError, StorageError
from tea.signals.model import LogData, LogRecord, MetricData, MetricPoint, PointQuery, RecordQuery, SeriesKey
from tea.storage.duckdb.sql import DIALECT
from tea.storage.sql.signals import conjunction, purge_where, where


_DATA = ("name", "kind", "unit", "temporality", "monotonic", "start_us", "value", "count", "sum", "min", "max",
         "bounds", "counts", "scale", "zero_count", "positive_offset", "positive_counts", "negative_offset",
         "negative_counts", "quantiles", "flags")
_DATA_TYPES = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN", "BIGINT", "DOUBLE", "UBIGINT", "DOUBLE", "DOUBLE",
               "DOUBLE", "DOUBLE[]", "UBIGINT[]", "INTEGER", "UBIGINT", "INTEGER", "UBIGINT[]", "INTEGER", "UBIGINT[]",
               "DOUBLE[][]", "BIGINT")
POINTS_DDL = ("CREATE TABLE metric_points (tenant_id VARCHAR NOT NULL, id VARCHAR NOT NULL, timestamp BIGINT NOT NULL, "
              "received_at BIGINT NOT NULL, service VARCHAR, "
              + ", ".join(f"{c} {t}{' NOT NULL' if c in ('name', 'kind', 'unit') else ''}"
                          for c, t in zip(_DATA, _DATA_TYPES))
              + ", attributes JSON NOT NULL, resource JSON NOT NULL, scope VARCHAR)")
RECORDS_DDL = ("CREATE TABLE log_records (tenant_id VARCHAR NOT NULL, id VARCHAR NOT NULL, timestamp BIGINT NOT NULL, "
               "received_at BIGINT NOT NULL, service VARCHAR, severity_number INTEGER NOT NULL, severity_text VARCHAR "
               "NOT NULL, body VARCHAR, body_json BOOLEAN NOT NULL, observed_us BIGINT, event_name VARCHAR, flags BIGINT, "
               "attributes JSON NOT NULL, resource JSON NOT NULL, scope VARCHAR, trace_id VARCHAR, span_id VARCHAR)")
_PAYLOAD = "attributes JSON, resource JSON, scope VARCHAR"
_METRIC_JSON = ("{event_id: 'VARCHAR', tenant_id: 'VARCHAR', timestamp: 'BIGINT', received_at: 'BIGINT', "
                "source: 'VARCHAR', attributes: 'STRUCT(metric STRUCT("
                + ", ".join(f"{c} {t}" for c, t in zip(_DATA, _DATA_TYPES)) + f"), {_PAYLOAD})'}}")
_LOG_JSON = ("{event_id: 'VARCHAR', tenant_id: 'VARCHAR', timestamp: 'BIGINT', received_at: 'BIGINT', "
             "source: 'VARCHAR', trace_id: 'VARCHAR', span_id: 'VARCHAR', attributes: 'STRUCT(log STRUCT("
             "severity_number INTEGER, severity_text VARCHAR, body JSON, observed_us BIGINT, event_name VARCHAR, "
             f"flags BIGINT), {_PAYLOAD})'}}")
_LINE = ("b.tenant_id AS tenant_id, b.event_id AS id, b.timestamp AS timestamp, b.received_at AS received_at, "
         "b.source AS service")
_PAYLOAD_VALUES = ("COALESCE(b.attributes.attributes, '{}') AS attributes, COALESCE(b.attributes.resource, '{}') "
                   "AS resource, b.attributes.scope AS scope")
_POINT_VALUES = (_LINE + ", " + ", ".join(f"COALESCE(m.unit, '') AS unit" if c == "unit" else f"m.{c} AS {c}"
                                          for c in _DATA) + ", " + _PAYLOAD_VALUES)
_BODY = "b.attributes.log.body"
_RECORD_VALUES = (_LINE + ", COALESCE(l.severity_number, 0) AS severity_number, COALESCE(l.severity_text, '') AS "
                  f"severity_text, CASE WHEN json_type({_BODY}) = 'VARCHAR' THEN {_BODY} ->> '$' "
                  f"WHEN json_type({_BODY}) = 'NULL' THEN NULL ELSE CAST({_BODY} AS VARCHAR) END AS body, "
                  f"COALESCE(json_type({_BODY}) NOT IN ('VARCHAR', 'NULL'), FALSE) AS body_json, l.observed_us AS "
                  "observed_us, l.event_name AS event_name, l.flags AS flags, " + _PAYLOAD_VALUES
                  + ", b.trace_id AS trace_id, b.span_id AS span_id")
_POINT_COLUMNS = "tenant_id, id, timestamp, service, " + ", ".join(_DATA) + \
    ", CAST(attributes AS VARCHAR), CAST(resource AS VARCHAR), scope"
_RECORD_COLUMNS = ("tenant_id, id, timestamp, service, severity_number, severity_text, body, body_json, observed_us, "
                   "event_name, flags, CAST(attributes AS VARCHAR), CAST(resource AS VARCHAR), scope, trace_id, span_id")
_BUCKETS = {"day": "INTERVAL 1 DAY", "month": "INTERVAL 1 MONTH", "hour": "INTERVAL 1 HOUR"}


class DuckDBSignals:
    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._path = storage.path + ".signals.ndjson"

    # ----------------------------------------------------------------- writing
    async def write_points(self, lines: list[bytes]) -> int:
        return await self.storage._on_writer(self._load, "metric_points", lines, _METRIC_JSON,
                                             "SELECT *, attributes.metric AS m", _POINT_VALUES)

    async def write_records(self, lines: list[bytes]) -> int:
        return await self.storage._on_writer(self._load, "log_records", lines, _LOG_JSON,
                                             "SELECT *, attributes.log AS l", _RECORD_VALUES)

    def _load(self, table: str, lines: list[bytes], columns: str, select: str, values: str) -> int:
        con = self.storage._con
        assert con is not None
        with open(self._path, "wb") as fh:
            fh.writelines(lines)
        try:
            con.execute("BEGIN")
            con.execute(f"CREATE OR REPLACE TEMP TABLE staged_signals AS SELECT {values} FROM ({select} FROM read_json("
                        f"'{self._path}', format='newline_delimited', columns={columns}, "
                        f"maximum_object_size={self.storage.max_object_bytes + 1024})) b")
            low, high = con.execute("SELECT min(timestamp), max(timestamp) FROM staged_signals").fetchone()  # type: ignore[misc]
            # a point or record is the same one when its tenant, id and time are (the id derives from the time)
            same = "e.tenant_id = s.tenant_id AND e.id = s.id AND e.timestamp = s.timestamp"
            stored = con.execute(f"SELECT 1 FROM staged_signals s JOIN {table} e ON {same} WHERE e.timestamp "
                                 "BETWEEN ? AND ? LIMIT 1", [low, high]).fetchall()
            repeated = con.execute("SELECT 1 FROM staged_signals GROUP BY tenant_id, id HAVING count(*) > 1 "
                                   "LIMIT 1").fetchall()
            source = "(SELECT DISTINCT ON (tenant_id, id) * FROM staged_signals)" if repeated else "staged_signals"
            condition = (f" WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE e.timestamp BETWEEN ? AND ? AND {same})"
                         if stored else "")
            row = con.execute(f"INSERT INTO {table} SELECT * FROM {source} s{condition}",
                              [low, high] if stored else []).fetchone()
            con.execute("DROP TABLE staged_signals")
            con.execute("COMMIT")
        except duckdb.Error as exc:
            self.storage._rollback()
            if isinstance(exc, (duckdb.InvalidInputException, duckdb.ConversionException,
                                duckdb.ConstraintException)):
                raise StorageDataError(f"duckdb refused the {table}: {exc}") from exc
            raise StorageError(f"duckdb {table} write failed: {exc}") from exc
        finally:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
        return row[0] if row else 0

    # ----------------------------------------------------------------- reading
    async def points(self, q: PointQuery) -> list[MetricPoint]:
        clauses, params = where(q, DIALECT)
        sql = f"SELECT {_POINT_COLUMNS} FROM metric_points{conjunction(clauses)} ORDER BY timestamp, id LIMIT ?"
        rows = await self.storage._on_reader(lambda cur: cur.execute(sql, [*params, q.limit + 1]).fetchall())
        return [point_of(row) for row in rows]

    async def series(self, q: PointQuery) -> list[SeriesKey]:
        clauses, params = where(q, DIALECT)
        sql = ("SELECT DISTINCT tenant_id, name, kind, service, CAST(attributes AS VARCHAR), unit, temporality, "
               f"monotonic FROM metric_points{conjunction(clauses)}")
        rows = await self.storage._on_reader(lambda cur: cur.execute(sql, params).fetchall())
        return [SeriesKey(*row) for row in rows]

    async def records(self, q: RecordQuery) -> list[LogRecord]:
        clauses, params = where(q, DIALECT)
        sql = (f"SELECT {_RECORD_COLUMNS} FROM log_records{conjunction(clauses)} ORDER BY timestamp DESC, id DESC "
               "LIMIT ?")
        rows = await self.storage._on_reader(lambda cur: cur.execute(sql, [*params, q.limit + 1]).fetchall())
        return [record_of(row) for row in rows]

    async def counts(self, tenant_ids: tuple[str, ...] | None, start_us: int, end_us: int,
                     bucket: str) -> list[tuple[int, str, str, int]]:
        clauses, params = where(RecordQuery(tenant_ids=tenant_ids, start_us=start_us, end_us=end_us), DIALECT)
        b = f"epoch_us(time_bucket({_BUCKETS[bucket]}, make_timestamp(timestamp)))"
        sql = " UNION ALL ".join(f"SELECT {b} AS bucket, tenant_id, '{signal}', count(*) FROM {table}{conjunction(clauses)} "
                                 "GROUP BY ALL" for signal, table in (("metric_points", "metric_points"),
                                                                      ("log_records", "log_records")))
        return await self.storage._on_reader(lambda cur: cur.execute(sql, params + params).fetchall())

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        condition, params = purge_where(cutoff_us, tenant_ids, exclude_tenant_ids, DIALECT)

        def run() -> int:
            con = self.storage._con
            assert con is not None
            return sum(con.execute(f"DELETE FROM {t}{condition}", params).fetchone()[0]  # type: ignore[index]
                       for t in ("metric_points", "log_records"))
        return await self.storage._on_writer(run)


def point_of(row: tuple[Any, ...]) -> MetricPoint:
    """A stored point from ``tenant_id, id, timestamp, service, *data, attributes, resource, scope``."""
    import msgspec
    data = MetricData(**{name: value for name, value in zip(_DATA, row[4:4 + len(_DATA)]) if value is not None})
    if data.quantiles is not None:
        data.quantiles = [tuple(pair) for pair in data.quantiles]  # type: ignore[misc]
    rest = row[4 + len(_DATA):]
    return MetricPoint(row[0], row[1], row[2], row[3], data, msgspec.Raw(rest[0].encode()), msgspec.Raw(rest[1].encode()),
                       rest[2])


def record_of(row: tuple[Any, ...]) -> LogRecord:
    """A stored record from ``_RECORD_COLUMNS``' values."""
    import msgspec
    (tenant, rid, ts, service, number, text, body, body_json, observed, event_name, flags, attrs, resource, scope,
     trace_id, span_id) = row
    value = msgspec.json.decode(body) if body_json and body is not None else body
    data = LogData(number, text, value, observed, event_name, flags)
    return LogRecord(tenant, rid, ts, service, data, msgspec.Raw(attrs.encode()), msgspec.Raw(resource.encode()), scope,
                     trace_id, span_id)
