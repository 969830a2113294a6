"""Set-based writes into DuckDB: every table is loaded the way events are.

The rows of a write are NDJSON (the durable buffer's own lines for events, msgspec's encoding for
everything else), written to one staging file and read by DuckDB's NDJSON reader (``read_json``)
into a temporary table already typed as the target stores it; one ``INSERT … SELECT`` (or, for keyed
tables, one ``DELETE`` and one ``INSERT``) moves them into the target. No statement runs per row
(one ``INSERT`` per row stored 485–667 projection rows/s; the staged load tens of thousands).

Only the writer thread calls these (one staging file per database).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable, Iterator, NamedTuple

import duckdb
import msgspec

STAGED = "staged"
STAGED_SET = "_set"  # the column of ``stage_sets``' labels
_MIN_OBJECT_BYTES = 1 << 20
_lines = msgspec.json.Encoder()


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


class Shape(NamedTuple):
    """A table's columns as staged: how ``read_json`` types each key of a line (absent keys are NULL), and
    the stored value of each column computed from the line read as ``b`` — in the table's column order."""

    types: dict[str, str]
    values: dict[str, str]

    @classmethod
    def of(cls, types: dict[str, str], **stored: str) -> "Shape":
        """Columns read as ``types`` (" NOT NULL" dropped), stored as read unless ``stored`` says otherwise."""
        plain = {c: t.replace(" NOT NULL", "") for c, t in types.items()}
        return cls(plain, {c: stored.get(c, f"b.{quoted(c)}") for c in plain})

    def columns_sql(self) -> str:
        return "{" + ", ".join(f"{sql_string(c)}: {sql_string(t)}" for c, t in self.types.items()) + "}"

    def select_sql(self) -> str:
        return ", ".join(f"{expr} AS {quoted(c)}" for c, expr in self.values.items())


def encode(rows: Iterable[Any]) -> bytes:
    """NDJSON of dicts or msgspec structs (bytes as base64, like every JSON encoder)."""
    return _lines.encode_lines(rows)


def stage(con: duckdb.DuckDBPyConnection, path: str, shape: Shape, lines: bytes | list[bytes],
          max_object_bytes: int | None = None) -> None:
    """Load NDJSON ``lines`` into the temporary table ``staged``, typed by ``shape``.

    ``max_object_bytes``: the longest line expected (default: the whole text, at least 1 MiB)."""
    _stage(con, shape, {path: [lines] if isinstance(lines, bytes) else lines}, max_object_bytes, "")


def stage_sets(con: duckdb.DuckDBPyConnection, path: str, shape: Shape, sets: dict[str, bytes]) -> dict[str, str]:
    """Load several NDJSON texts into ``staged`` in one statement, as ``stage`` does one, each row with the
    ``STAGED_SET`` label of its text (``sets``' key) in the returned ``{key: label}`` (the files' names)."""
    labels = {key: f"{path}.{n}" for n, key in enumerate(sets)}
    _stage(con, shape, {labels[key]: [lines] for key, lines in sets.items()}, None,
           ", filename=true", f", b.filename AS {STAGED_SET}")
    return labels


def _stage(con: duckdb.DuckDBPyConnection, shape: Shape, files: dict[str, list[bytes]], max_object_bytes: int | None,
           options: str, more: str = "") -> None:
    """``files`` written, read into ``staged`` by one ``read_json`` (with ``options``, selecting ``more`` too),
    and removed."""
    try:
        for path, chunks in files.items():
            with open(path, "wb") as fh:
                fh.writelines(chunks)  # (the buffer's records as they are: no joined copy of the batch)
        if max_object_bytes is None:
            max_object_bytes = max(sum(len(c) for chunks in files.values() for c in chunks), _MIN_OBJECT_BYTES)
        paths = sql_string(next(iter(files))) if len(files) == 1 else \
            "[" + ", ".join(sql_string(path) for path in files) + "]"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {STAGED} AS SELECT {shape.select_sql()}{more} FROM read_json("
                    f"{paths}, format='newline_delimited', columns={shape.columns_sql()}, "
                    f"maximum_object_size={int(max_object_bytes) + 1024}{options}) b")
    finally:
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class Match(NamedTuple):
    """How a stored row ``e`` repeats a staged row ``s``: ``sql``, its ``?`` bound to ``params``."""

    sql: str
    params: tuple[Any, ...] = ()


class Target(NamedTuple):
    """A table staged rows go into: those matching ``only`` (on ``s``, its ``?`` bound to ``params``)."""

    table: str
    only: str = ""
    params: tuple[Any, ...] = ()
    columns: str = "*"  # what of a staged row is inserted (the table's columns, in order)


def insert_new(con: duckdb.DuckDBPyConnection, targets: list[Target], matches: list[Match]) -> int:
    """Insert into each target the staged rows (those it takes) that no stored row of its table repeats: a
    stored row repeats a staged one when any of ``matches`` relates them.

    Stored repeats are looked for first, in one statement for all targets and matches: an inner join each,
    which hashes the staged keys and streams the stored ones past them (an anti-join hashes every stored
    row in reach: its cost grew with the table); each match's own constant bounds let DuckDB skip the row
    groups out of its reach. Usually there are none, and a plain insert a target follows. Returns the rows
    inserted."""
    pairs = [(n, t, m) for n, t in enumerate(targets) for m in matches]
    check = " UNION ALL ".join(f"(SELECT {n} AS n FROM {STAGED} s JOIN {t.table} e ON {m.sql} WHERE TRUE{t.only} "
                               f"LIMIT 1)" for n, t, m in pairs)
    stored = {row[0] for row in con.execute(f"SELECT n FROM ({check})",
                                            [p for _, t, m in pairs for p in (*m.params, *t.params)]).fetchall()}
    return sum(_insert(con, t, matches if n in stored else []) for n, t in enumerate(targets))


def _insert(con: duckdb.DuckDBPyConnection, t: Target, matches: list[Match]) -> int:
    """One INSERT … SELECT of the staged rows ``t`` takes (those no stored row repeats, given ``matches``)."""
    if matches:
        absent = "".join(f" AND NOT EXISTS (SELECT 1 FROM {t.table} e WHERE {m.sql})" for m in matches)
        row = con.execute(f"INSERT INTO {t.table} SELECT {t.columns} FROM {STAGED} s WHERE TRUE{absent}{t.only}",
                          [*(p for m in matches for p in m.params), *t.params]).fetchone()
    else:
        row = con.execute(f"INSERT INTO {t.table} SELECT {t.columns} FROM {STAGED} s WHERE TRUE{t.only}",
                          list(t.params)).fetchone()
    return row[0] if row else 0


def replace_keyed(con: duckdb.DuckDBPyConnection, table: str, keys: tuple[str, ...]) -> None:
    """Upsert the staged rows: the stored rows with a staged key go, every staged row is inserted.
    (Delete + insert: DuckDB refuses an in-place update of a row whose other UNIQUE column changes.)"""
    same = " AND ".join(f"s.{quoted(k)} = {table}.{quoted(k)}" for k in keys)
    con.execute(f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {STAGED} s WHERE {same})")
    con.execute(f"INSERT INTO {table} SELECT * FROM {STAGED}")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction around a staged write; the staging table goes with it."""
    con.execute("BEGIN")
    try:
        yield
        con.execute(f"DROP TABLE IF EXISTS {STAGED}")
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # (no transaction was open any more)
        raise
