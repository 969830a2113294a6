"""PostgREST's error shape and basic query language, over rows in Python.

``col=[not.]op.value`` with eq, neq, gt, gte, lt, lte, like, ilike (``*`` or ``%`` wildcards), in and
is; ``select`` (columns, ``alias:col``), ``order`` (``col.asc|desc[.nullsfirst|nullslast]``), ``limit``
and ``offset``. Values compare as the row's type: numbers as numbers, timestamps (the columns named
in ``time_columns``) as instants, booleans as booleans; a comparison with NULL is never true,
negated or not (SQL's three-valued logic).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from tea.errors import ClientError
from tea.http import Request, Response
from tea.http.response import JSON, encode_json
from tea.timeutil import parse_time

OBJECT = "application/vnd.pgrst.object+json"
RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}

# ---------------------------------------------------------------- errors in PostgREST's shape
class PgError(ClientError):
    """An error as PostgREST answers it: ``{"code", "details", "hint", "message"}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, hint: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, details=details, headers=headers)
        self.status = status
        self.hint = hint

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


def as_pg(exc: ClientError) -> PgError:
    if isinstance(exc, PgError):
        return exc
    # (503 storage_unavailable: PostgREST's PGRST000, "could not connect with the database")
    code = {401: "PGRST302" if exc.code == "missing_credentials" else "PGRST301", 403: "42501",
            503: "PGRST000" if exc.code == "storage_unavailable" else exc.code}.get(exc.status, exc.code)
    return PgError(exc.status, code, exc.message, exc.details, None, exc.headers)


def bad_text(name: str) -> PgError:
    """What PostgreSQL answers for a NUL in text (it has no such character), naming the parameter."""
    return PgError(400, "22021", 'invalid byte sequence for encoding "UTF8": 0x00', f"parameter {name}")


def checked_path(request: Request, name: str) -> str:
    """A path parameter, refused (PostgreSQL's 22021) when it holds a NUL."""
    value = request.path_params[name]
    if "\x00" in value:
        raise bad_text(name)
    return value


def parse_error(message: str, details: Any = None) -> PgError:
    return PgError(400, "PGRST100", message, details)


def no_column(relation: str, column: str, parameter: str | None = None) -> PgError:
    return PgError(400, "42703", f"column {relation}.{column} does not exist",
                   f"parameter {parameter}" if parameter else None)


# ---------------------------------------------------------------- the query language
@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: Any  # str, or a tuple of str for `in`
    negate: bool


_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "is", "cs", "cd", "ov")
_ITEMS = re.compile(r'"((?:[^"\\]|\\.)*)"|([^,]+)')


def parse_condition(column: str, text: str) -> Condition:
    negate = text.startswith("not.")
    rest = text[4:] if negate else text
    op, dot, value = rest.partition(".")
    if not dot or op not in _OPS:
        raise parse_error(f'"failed to parse filter ({text})" (line 1, column 1)',
                          f"unsupported operator in {column}={text}; TEA supports {', '.join(_OPS)} and not.")
    if op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error(f'"failed to parse filter ({text})" (line 1, column 1)', "in. needs (a,b,...)")
        return Condition(column, op, _list(value[1:-1]), negate)
    if op in ("cs", "cd", "ov") and not value.startswith(("{", "[")):
        raise parse_error(f'"failed to parse filter ({text})" (line 1, column 1)',
                          f"{op}. needs an array {{a,b}} (or a JSON value for a json column)")
    if op == "is" and value.lower() not in ("null", "not_null", "true", "false", "unknown"):
        raise parse_error(f'"failed to parse filter ({text})" (line 1, column 1)',
                          "is. takes null, not_null, true, false or unknown")
    return Condition(column, op, value, negate)


def _list(text: str) -> tuple[str, ...]:
    return tuple(q.replace('\\"', '"') if q else p.strip() for q, p in _ITEMS.findall(text))


def _contains(outer: Any, inner: Any) -> bool:
    """PostgreSQL's ``@>`` on JSON values (and on arrays): every part of ``inner`` is in ``outer``."""
    if isinstance(outer, dict) and isinstance(inner, dict):
        return all(k in outer and _contains(outer[k], v) for k, v in inner.items())
    if isinstance(outer, list) and isinstance(inner, list):
        return all(any(_contains(o, i) for o in outer) for i in inner)
    if isinstance(outer, list):
        return any(_contains(o, inner) for o in outer)
    return outer == inner


def _containment(raw: Any, c: Condition) -> bool:
    """``cs`` (contains), ``cd`` (contained in), ``ov`` (overlaps) of an array or a JSON column."""
    if isinstance(raw, list) and c.value.startswith("{"):
        other: Any = list(_list(c.value[1:-1]))
    else:
        try:
            other = msgspec.json.decode(c.value)
        except msgspec.DecodeError:
            raise PgError(400, "22P02", f'invalid input syntax for type json: "{c.value}"',
                          f"column {c.column}") from None
    if c.op == "ov":
        return isinstance(raw, list) and isinstance(other, list) and any(_contains(raw, o) for o in other)
    return _contains(raw, other) if c.op == "cs" else _contains(other, raw)


def coerce(sample: Any, text: str, column: str, is_time: bool) -> Any:
    if is_time:
        try:
            return parse_time(text)
        except ValueError:
            raise PgError(400, "22007", f'invalid input syntax for type timestamp with time zone: "{text}"',
                          f"column {column}") from None
    if isinstance(sample, bool):
        if text.lower() in ("true", "t", "1", "false", "f", "0"):
            return text.lower() in ("true", "t", "1")
        raise PgError(400, "22P02", f'invalid input syntax for type boolean: "{text}"', f"column {column}")
    if isinstance(sample, (int, float)):
        try:
            return float(text)
        except ValueError:
            raise PgError(400, "22P02", f'invalid input syntax for type numeric: "{text}"',
                          f"column {column}") from None
    if isinstance(sample, (dict, list)):
        return msgspec.json.decode(text) if text[:1] in "[{" else text
    return text


def _value(row_value: Any, is_time: bool) -> Any:
    return parse_time(row_value) if is_time and isinstance(row_value, str) else row_value


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    out = "".join(".*" if ch in "*%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(out, flags | re.DOTALL)


def matches(row: dict[str, Any], c: Condition, time_columns: frozenset[str]) -> bool:
    raw = row.get(c.column)
    if c.op == "is":
        wanted = c.value.lower()
        hit = {"null": raw is None, "not_null": raw is not None, "unknown": raw is None,
               "true": raw is True, "false": raw is False}[wanted]
        return hit != c.negate
    if raw is None:
        return False  # a comparison with NULL is NULL, and NOT NULL is NULL too
    is_time = c.column in time_columns
    value = _value(raw, is_time)
    if c.op in ("cs", "cd", "ov"):
        hit = _containment(raw, c)
    elif c.op in ("like", "ilike"):
        hit = _like(c.value, re.IGNORECASE if c.op == "ilike" else 0).fullmatch(str(raw)) is not None
    elif c.op == "in":
        hit = value in {_hashable(coerce(raw, v, c.column, is_time)) for v in c.value}
    else:
        other = coerce(raw, c.value, c.column, is_time)
        try:
            hit = {"eq": lambda: value == other, "neq": lambda: value != other, "gt": lambda: value > other,
                   "gte": lambda: value >= other, "lt": lambda: value < other, "lte": lambda: value <= other}[c.op]()
        except TypeError:
            raise PgError(400, "42883", f"operator does not exist: {c.column} {c.op} {c.value!r}") from None
    return hit != c.negate


def _hashable(value: Any) -> Any:
    return msgspec.json.encode(value) if isinstance(value, (dict, list)) else value


@dataclass(frozen=True)
class Query:
    conditions: tuple[Condition, ...]
    select: tuple[tuple[str, str], ...] | None  # (output name, column); None: every column
    order: tuple[tuple[str, bool, bool], ...]   # (column, descending, nulls first)
    limit: int | None
    offset: int


def parse_query(query: dict[str, list[str]], relation: str, columns: tuple[str, ...],
                skip: frozenset[str] = frozenset()) -> Query:
    """A request's query parameters (``request.query``) in PostgREST's language, over ``columns``."""
    known = set(columns)
    conditions: list[Condition] = []
    for name, values in query.items():
        if "\x00" in name or any("\x00" in v for v in values):
            raise bad_text(name.replace("\x00", ""))
    for name, values in query.items():
        if name in RESERVED or name in skip:
            continue
        if name in ("or", "and", "not.or", "not.and"):
            raise parse_error(f"logical filters ({name}=) are not supported by TEA", None)
        for text in values:
            c = parse_condition(name, text)
            if name != "tenant_id" and name not in known:
                raise no_column(relation, name)
            conditions.append(c)
    select = None
    text = _last(query, "select")
    if text is not None and text.strip() not in ("", "*"):
        chosen = []
        for part in (p.strip() for p in text.split(",")):
            alias, _, column = part.rpartition(":") if ":" in part.replace("::", "") else ("", "", part)
            column = column.split("::", 1)[0].strip()
            if "(" in column:
                raise PgError(400, "PGRST200", f"Could not find a relationship for '{column}' of '{relation}' "
                                               "in the schema cache", "TEA has no resource embedding")
            if column == "*":
                chosen.extend((c, c) for c in columns)
                continue
            if column not in known:
                raise no_column(relation, column, "select")
            chosen.append((alias.strip() or column, column))
        select = tuple(chosen)
    order: list[tuple[str, bool, bool]] = []
    for part in filter(None, (p.strip() for p in (_last(query, "order") or "").split(","))):
        column, *modifiers = part.split(".")
        if column not in known:
            raise no_column(relation, column, "order")
        unknown = set(modifiers) - {"asc", "desc", "nullsfirst", "nullslast"}
        if unknown:
            raise parse_error(f'"failed to parse order ({part})" (line 1, column 1)', None)
        descending = "desc" in modifiers
        nulls_first = "nullsfirst" in modifiers or (descending and "nullslast" not in modifiers)
        order.append((column, descending, nulls_first))
    return Query(tuple(conditions), select, tuple(order), _int(query, "limit"), _int(query, "offset") or 0)


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int(query: dict[str, list[str]], name: str) -> int | None:
    text = _last(query, name)
    if text is None:
        return None
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise parse_error(f'"failed to parse {name} ({text})"', f"{name} must be a non-negative integer")
    return int(digits)


def apply(rows: list[dict[str, Any]], q: Query, time_columns: frozenset[str],
          ) -> tuple[list[dict[str, Any]], int]:
    """Filter, order, count, page and select: (rows of the page, rows before paging)."""
    conditions = [c for c in q.conditions if c.column != "tenant_id" or "tenant_id" in (rows[0] if rows else {})]
    rows = [r for r in rows if all(matches(r, c, time_columns) for c in conditions)]
    for column, descending, nulls_first in reversed(q.order):
        present = [r for r in rows if r.get(column) is not None]
        missing = [r for r in rows if r.get(column) is None]
        is_time = column in time_columns
        present.sort(key=lambda r: _sort_key(_value(r[column], is_time)), reverse=descending)
        rows = missing + present if nulls_first else present + missing
    total = len(rows)
    end = q.offset + q.limit if q.limit is not None else None
    rows = rows[q.offset:end]
    if q.select is not None:
        rows = [{name: r.get(column) for name, column in q.select} for r in rows]
    return rows, total


def _sort_key(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return (2, msgspec.json.encode(value))
    if isinstance(value, str):
        return (1, value)
    return (0, value)


def prefer(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (request.header("prefer") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = value.strip().lower()
    return out


def content_range(offset: int, shown: int, total: int | None) -> str:
    whole = "*" if total is None else str(total)
    return f"*/{whole}" if shown == 0 else f"{offset}-{offset + shown - 1}/{whole}"


def rows_response(request: Request, rows: list[dict[str, Any]], status: int, headers: dict[str, str]) -> Response:
    if OBJECT in (request.header("accept") or ""):
        if len(rows) != 1:
            raise PgError(406, "PGRST116", "JSON object requested, multiple (or no) rows returned",
                          f"The result contains {len(rows)} rows")
        return Response(encode_json(rows[0]), status, OBJECT.encode(), headers)
    return Response(encode_json(rows), status, JSON, headers)

