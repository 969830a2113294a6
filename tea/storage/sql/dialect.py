"""What differs between the SQL backends, as one small object a backend: how a value is bound, how the
time column is written and read, buckets, aggregates, quantiles, JSON access. The compiler
(``tea.storage.sql.events``) writes every statement once, asking the dialect for these pieces.

The defaults are standard SQL that DuckDB and PostgreSQL share; a backend overrides what it writes
otherwise. Every value reaches the SQL through ``bind`` (a placeholder and its parameter; ClickHouse,
whose driver substitutes nothing, renders an escaped literal there).
"""
from __future__ import annotations

from typing import Any

from tea.timebuckets import DAY_US, FIXED_US, WEEK_US
from tea.types import EventFilter

# columns of float values: sums and averages over them are exact (fsum), as pyagg's
FLOAT_COLUMNS = ("duration_ms", "cost")


class Dialect:
    """How one backend writes the pieces the compiler asks for (the defaults: DuckDB's and PostgreSQL's)."""

    mark = "?"                       # the driver's placeholder
    ts = "timestamp"                 # the events' time column as written in SQL
    null_bigint = "NULL::BIGINT"     # a NULL bucket (no time bucket asked for)
    ctes = True                      # WITH … AS MATERIALIZED: top-N groups ranked from the cells of one scan
    semi_join = "JOIN"               # how the cells are kept to the top groups
    row_compare = False              # the page cursor as one row comparison (an index range in PostgreSQL)
    is_error = ("(status IN ('error', 'timeout') OR (status IS NULL AND (error_type IS NOT NULL "
                "OR status_code >= 400 OR status_code < 0)))")
    event_columns = ""               # the select list of an Event's columns, in tea.types.COLUMNS order

    def source(self, f: EventFilter | None) -> str:
        """The table expression holding every event ``f`` can match, named ``events``."""
        return "events"

    # ------------------------------------------------------------ values
    def bind(self, params: list[Any], value: Any) -> str:
        """SQL standing for ``value``, its parameter appended to ``params``."""
        params.append(value)
        return self.mark

    def bind_us(self, params: list[Any], us: int) -> str:
        """A µs timestamp, comparable with the time column."""
        return self.bind(params, us)

    def us(self, expr: str) -> str:
        """A value of the time column as integer µs."""
        return expr

    def in_list(self, params: list[Any], column: str, values: tuple[str, ...], negate: bool = False) -> str:
        if not values:
            return "TRUE" if negate else "FALSE"
        if len(values) == 1:
            return f"{column} {'<>' if negate else '='} {self.bind(params, values[0])}"
        marks = ", ".join(self.bind(params, v) for v in values)
        return f"{column} {'NOT ' if negate else ''}IN ({marks})"

    def attribute(self, params: list[Any], key: str) -> str:
        """The text of the top-level attribute ``key`` of a signal's ``attributes``."""
        raise NotImplementedError

    def json_texts(self, column: str, keys: tuple[str, ...]) -> tuple[str, list[str]]:
        """The text of the top-level ``keys`` of the JSON ``column``: what to add to ``SELECT *`` of the rows
        (``, expr AS name``, or nothing), and the expressions reading them from its result."""
        raise NotImplementedError

    # ------------------------------------------------------------ arithmetic
    def mod(self, a: str, b: str) -> str:
        return f"(({a}) % {b})"

    def int_literal(self, n: int) -> str:
        return str(int(n))

    def floor_to(self, expr: str, width: int, offset: int = 0) -> str:
        """Start of the ``width``-µs bucket holding ``expr`` (floor, also for negative values), buckets starting
        at ``-offset``."""
        w = self.int_literal(width)
        shifted = f"({expr} + {self.int_literal(offset)})" if offset else expr
        back = f" - {self.int_literal(offset)}" if offset else ""
        return f"({shifted} - {self.mod(f'{self.mod(shifted, w)} + {w}', w)}{back})"

    # ------------------------------------------------------------ buckets
    def bucket(self, unit: str) -> str:
        """The µs start of the calendar ``unit`` (minute … month, UTC) holding each event (here: for a time
        column of integer µs, the month left to ``month_bucket``)."""
        if unit in FIXED_US:
            return self.floor_to(self.ts, FIXED_US[unit])
        if unit == "week":  # 1970-01-01 was a Thursday; ISO weeks start on Monday
            return self.floor_to(self.ts, WEEK_US, 3 * DAY_US)
        return self.month_bucket()

    def month_bucket(self) -> str:
        raise NotImplementedError

    def fixed_bucket(self, width_us: int, origin_us: int) -> str:
        """The µs start of the ``width_us`` bucket aligned on ``origin_us`` holding each event."""
        width, origin = self.int_literal(width_us), self.int_literal(origin_us)
        inner = self.mod(f"{self.ts} - ({origin})", width)
        return f"({self.ts} - {self.mod(f'{inner} + {width}', width)})"

    # ------------------------------------------------------------ aggregates
    def ascending_nulls_last(self, column: str) -> str:
        return f"{column} ASC NULLS LAST"

    def group_key(self, groups: list[str]) -> list[str]:
        """Expressions equal for two events exactly when their ``groups`` values are (NULL matching NULL)."""
        return groups

    def count_all(self) -> str:
        return "count(*)"

    def count_if(self, condition: str) -> str:
        return f"count(*) FILTER (WHERE {condition})"

    def at_most(self, column: str, le: float) -> str:
        return f"{column} <= {float(le)!r}"

    def count_distinct(self, column: str) -> str:
        return f"count(DISTINCT {column})"

    def sum(self, column: str) -> str:
        return f"sum({column})"

    def avg(self, column: str) -> str:
        return f"avg({column})"

    def quantile(self, column: str, q: float) -> str:
        """Exact, linear interpolation between the closest ranks (as pyagg's)."""
        raise NotImplementedError

    def quantiles(self, column: str, qs: list[float]) -> str | None:
        """Several quantiles of one column as one list (the values sorted once), or None: one each."""
        return None

    def sorted_values(self, column: str) -> str:
        """The group's non-NULL values of ``column`` as a sorted 1-based array."""
        raise NotImplementedError

