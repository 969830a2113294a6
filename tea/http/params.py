"""Query and path parameters, declared once per route as a msgspec Struct.

Parsing, validation (a 400 ``invalid_parameter`` naming the parameter) and the OpenAPI parameters
all come from that one declaration::

    class ListEvents(Params):
        limit: Annotated[int, Meta(ge=1, le=10000, description="page size")] = 100
        cursor: Text | None = None

    Route("GET", "/v1/events", list_events, "…", query=ListEvents)   # handler(request, params)

Every value arrives as text: numbers, booleans and enumerations are converted from it, a field whose
type is a tuple takes a comma list, a field named in the route's path is a path parameter. NUL, values
over ``MAX_PARAM_CHARS``, non-finite or out-of-range numbers and parameters the route does not declare
are refused before anything reaches a handler.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from tea.errors import InvalidParameter
from tea.timeutil import RFC3339_PATTERN, parse_time

MAX_PARAM_CHARS = 8192  # any one parameter's value, whatever its type (a cursor, a comma list)
TIME_HELP = "RFC 3339 / ISO 8601 time or epoch milliseconds"
NO_NUL = "^[^\x00]*$"  # (every text parameter: NUL is refused)
# what the OpenAPI document promises a time parameter takes: epoch milliseconds or an RFC 3339 time
TIME_PATTERN = f"^([0-9]{{1,14}}|{RFC3339_PATTERN})$"
P = TypeVar("P", bound="Params")


class Instant(int):
    """A time parameter (RFC 3339 / ISO 8601 text or epoch milliseconds), as UTC microseconds."""


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The base of every route's parameters. ``PATH`` names the path parameters (filled in by the
    route from its path template); every other field is a query parameter."""

    PATH: ClassVar[frozenset[str]] = frozenset()


Text = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Time = Annotated[Instant, msgspec.Meta(description=TIME_HELP)]


def text(description: str, max_length: int = 1024) -> Any:
    """A 1 to ``max_length`` character text parameter with its description."""
    return Annotated[str, msgspec.Meta(min_length=1, max_length=max_length, description=description)]


def time(description: str) -> Any:
    """A time parameter (UTC microseconds once parsed) with its description."""
    return Annotated[Instant, msgspec.Meta(description=f"{description} ({TIME_HELP})")]


def whole(description: str, minimum: int, maximum: int) -> Any:
    """A whole number from ``minimum`` to ``maximum`` with its description."""
    return Annotated[int, msgspec.Meta(ge=minimum, le=maximum, description=description)]


def choice(description: str, values: tuple[str, ...]) -> Any:
    """One of ``values``."""
    return Annotated[Literal[values], msgspec.Meta(description=description)]  # type: ignore[valid-type]


def choices(description: str, values: tuple[str, ...]) -> Any:
    """A comma list of ``values`` (at least one)."""
    return Annotated[tuple[Literal[values], ...],  # type: ignore[valid-type]
                     msgspec.Meta(min_length=1, description=description)]


def parse(cls: type[P], query: dict[str, list[str]], path: dict[str, str] | None = None) -> P:
    """``cls`` from a request's query (the last value of each name) and path parameters; 400 naming
    the first parameter that is not as ``cls`` declares it."""
    values: dict[str, Any] = {}
    lists = _list_fields(cls)
    for name, given in query.items():
        if name in cls.PATH:
            raise _unknown(cls, name)
        values[name] = _checked(name, given[-1])
    for name, value in (path or {}).items():
        values[name] = _checked(name, value)
    for name in _not_text(cls).intersection(values):
        if values[name] == "null":  # (msgspec's lax conversion would read it as None: "not given")
            raise InvalidParameter(name, f"parameter `{name}` cannot be `null`; leave it out instead")
    for name in lists.intersection(values):
        values[name] = [part.strip() for part in values[name].split(",") if part.strip()]
    try:
        return msgspec.convert(values, cls, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise _invalid(cls, str(exc), values) from None


def _checked(name: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidParameter(name, f"parameter `{name}` must not contain NUL characters")
    if len(value) > MAX_PARAM_CHARS:
        raise InvalidParameter(name, f"parameter `{name}` is longer than {MAX_PARAM_CHARS} characters")
    return value


def _decode(kind: type, value: Any) -> Any:
    if kind is Instant:
        try:
            return Instant(parse_time(value))
        except (ValueError, TypeError):
            raise ValueError(f"must be an RFC 3339 time or epoch milliseconds, got {value!r}") from None
    raise NotImplementedError(kind)


_AT = re.compile(r" - at `\$\.(\w+)(?:\[\d+\])?`$")
_UNKNOWN = re.compile(r"unknown field `(.+)`$")


def _invalid(cls: type[Params], problem: str, values: dict[str, Any]) -> InvalidParameter:
    unknown = _UNKNOWN.search(problem)
    if unknown:
        return _unknown(cls, unknown.group(1))
    at = _AT.search(problem)
    name = at.group(1) if at else next(iter(values), "")
    reason = problem[:at.start()] if at else problem
    accepted = _choices(cls, name)
    if name in values and not isinstance(values[name], list):
        reason = reason.replace("got `str`", f"got {values[name]!r}")
    message = f"parameter `{name}`: {reason[0].lower()}{reason[1:]}"
    if accepted:
        message += "; accepted: " + ", ".join(accepted)
    return InvalidParameter(name, message)


def _unknown(cls: type[Params], name: str) -> InvalidParameter:
    accepted = ", ".join(sorted(f for f in cls.__struct_fields__ if f not in cls.PATH))
    return InvalidParameter(name, f"unknown query parameter `{name}`; accepted: {accepted}")


def _hints(cls: type[Params]) -> dict[str, Any]:
    found = cls.__dict__.get("_tea_hints")
    if found is None:
        found = {f.name: f.type for f in msgspec.structs.fields(cls)}
        setattr(cls, "_tea_hints", found)
    return found  # type: ignore[no-any-return]


def _bare(hint: Any) -> Any:
    """The type under ``Annotated`` and ``| None``."""
    while True:
        origin = get_origin(hint)
        if origin is Annotated:
            hint = get_args(hint)[0]
        elif origin is Union or (origin is not None and type(None) in get_args(hint)):
            members = [a for a in get_args(hint) if a is not type(None)]
            hint = members[0] if len(members) == 1 else hint
            if len(members) != 1:
                return hint
        else:
            return hint


def _list_fields(cls: type[Params]) -> frozenset[str]:
    found = cls.__dict__.get("_tea_lists")
    if found is None:
        found = frozenset(n for n, t in _hints(cls).items() if get_origin(_bare(t)) is tuple)
        setattr(cls, "_tea_lists", found)
    return found  # type: ignore[no-any-return]


def _not_text(cls: type[Params]) -> frozenset[str]:
    """The fields whose values are not plain text (numbers, times, enumerations, lists)."""
    found = cls.__dict__.get("_tea_not_text")
    if found is None:
        found = frozenset(n for n, t in _hints(cls).items() if _bare(t) is not str)
        setattr(cls, "_tea_not_text", found)
    return found  # type: ignore[no-any-return]


def _choices(cls: type[Params], name: str) -> tuple[str, ...]:
    hint = _bare(_hints(cls).get(name))
    if get_origin(hint) is tuple:
        hint = _bare(get_args(hint)[0])
    return tuple(get_args(hint)) if get_origin(hint) is Literal else ()


def describe(cls: type[Params]) -> list[tuple[str, str, dict[str, Any], bool, bool]]:
    """``(name, description, JSON schema, required, in path)`` of each parameter, for OpenAPI."""
    (_, ), components = msgspec.json.schema_components([cls], schema_hook=_schema_hook)
    schema = components[cls.__name__]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        description = prop.pop("description", "")
        if prop.get("default", 0) is None:
            del prop["default"]
        if name in _list_fields(cls):  # a comma list: the description names the values
            accepted = _choices(cls, name)
            item = "(" + "|".join(re.escape(a) for a in accepted) + ")" if accepted else "[^,\x00]+"
            prop = {"type": "string", "pattern": f"^{item}(,{item})*$", "maxLength": MAX_PARAM_CHARS}
        elif prop.get("type") == "string":
            prop.setdefault("pattern", NO_NUL)
            prop["maxLength"] = min(prop.get("maxLength", MAX_PARAM_CHARS), MAX_PARAM_CHARS)
        out.append((name, description, prop, name in required, name in cls.PATH))
    return out


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    options = prop.get("anyOf")
    if options:
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1:
            merged = {**kept[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
            return merged
    return dict(prop)


def _schema_hook(kind: type) -> dict[str, Any]:
    if kind is Instant:
        return {"type": "string", "description": TIME_HELP, "pattern": TIME_PATTERN}
    raise NotImplementedError(kind)
