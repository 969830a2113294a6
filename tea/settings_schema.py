"""How a setting is declared, and the one table every consumer derives from the declarations.

A setting is a field of a frozen msgspec Struct (a ``Section``) whose type carries a ``doc(...)`` annotation:

    class BufferSettings(Section, frozen=True):
        max_bytes: Annotated[Size, doc("bound of the backlog", ge=4096)] = 1024 * MiB

The field's type is what the code reads (``settings.buffer.max_bytes: int``) and what msgspec validates
(bounds, ``Literal`` choices, ``| None``); ``doc`` holds the rest (help, secret, the seeds' names, a flag).
``table(Settings)`` walks the declarations into ``Setting`` rows: loading, ``tea config``, the CLI's
flags, the docs' table and the error messages all read those rows, so nothing is declared twice.
"""
from __future__ import annotations

import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Mapping

import msgspec

from tea.errors import ConfigError

MiB = 1024 * 1024
_MASK = "********"


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """A group of settings: ``[buffer]`` in tea.toml, ``TEA_BUFFER__*`` in the environment."""

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return _masked_repr(self)


# Kinds the type alone does not tell apart (both are an int / a str); the type decides the others.
Size = Annotated[int, msgspec.Meta(extra={"kind": "size"})]
FilePath = Annotated[str, msgspec.Meta(extra={"kind": "path"})]
# per-tenant hours: {"acme": 48}; tenants are non-empty, hours >= 0
HoursMap = dict[Annotated[str, msgspec.Meta(min_length=1)], Annotated[int, msgspec.Meta(ge=0)]]
Tables = tuple[dict[str, Any], ...]  # [[alerts.rules]] in tea.toml, a JSON array in the environment
# a comma list of words ("events,spans"), an array in tea.toml; which words, the field's Literal says
Words = Annotated[tuple[str, ...], msgspec.Meta(extra={"kind": "words"})]
# histogram bounds: ascending finite numbers, "1,2.5,5" in the environment, an array in tea.toml
Bounds = Annotated[tuple[float, ...], msgspec.Meta(min_length=1, extra={"kind": "bounds"})]


def doc(help: str, *, ge: float | None = None, le: float | None = None, multiple_of: int | None = None,
        secret: bool = False, env: tuple[str, ...] = (), telemetron: str | None = None,
        flag: bool = False) -> msgspec.Meta:
    """The annotation of a setting: ``help`` (the docs' text), bounds (checked by msgspec), ``secret``
    (masked in ``tea config``, errors and reprs), ``env`` (the seeds' extra environment names, below
    ``TEA_*``), ``telemetron`` (its config.toml key, ``"http.port"``; ``TELEMETRON_HTTP__PORT`` too) and
    ``flag`` (a command-line flag of serve/config/migrate/plugins/token)."""
    extra = {"help": help, "secret": secret, "env": env, "telemetron": telemetron, "flag": flag}
    return msgspec.Meta(ge=ge, le=le, multiple_of=multiple_of, description=help, extra=extra)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def _parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE_RE.match(str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _parse_hours_map(value: Any) -> dict[str, int]:
    """``{"acme": 48}`` from tea.toml, or ``acme=48,beta=0`` from the environment or a flag."""
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise ValueError
    return {str(k): _parse_int(v) for k, v in value.items()}


def _parse_tables(value: Any) -> Any:
    """A JSON array from the environment; tea.toml's ``[[...]]`` arrives as a list already."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []
    return value


def _parse_words(value: Any) -> tuple[str, ...]:
    items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError
    return tuple(dict.fromkeys(items))


def _parse_bounds(value: Any) -> tuple[float, ...]:
    items = [part for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError
    bounds = tuple(_parse_float(v) for v in items)
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError
    return bounds


def _parse_str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError
    return str(value)


# kind: (text or TOML value -> Python value, what it accepts, an example); msgspec then checks bounds and choices
_KINDS: dict[str, tuple[Callable[[Any], Any], str, str]] = {
    "int": (_parse_int, "a whole number", ""),
    "float": (_parse_float, "a number", ""),
    "bool": (_parse_bool, "true or false", ""),
    "size": (_parse_size, "a size in bytes", ", e.g. 1048576, 20MiB, 1GiB"),
    "str": (_parse_str, "a string", ""),
    "path": (_parse_str, "a path", ""),
    "hours_map": (_parse_hours_map, "tenant=hours pairs", ", e.g. acme=48,beta=0 (or a TOML table)"),
    "json_list": (_parse_tables, "a list of tables ([[...]] in tea.toml) or a JSON array of objects", ""),
    "bounds": (_parse_bounds, "ascending numbers", ", e.g. 5,10,25 (or a TOML array)"),
    "words": (_parse_words, "a comma list", " (or a TOML array)"),
}
def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Setting:
    """One row of the table, derived from a declaration (never written by hand)."""

    key: str
    kind: str
    default: Any
    help: str
    type: Any  # the field's annotation: what msgspec validates a parsed value against
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    secret: bool = False
    nullable: bool = False
    aliases: tuple[str, ...] = ()  # the seeds' environment names, read below TEA_*
    telemetron: str | None = None  # Telemetron's config.toml key, e.g. "http.port"
    flag: bool = False

    @functools.cached_property
    def env(self) -> str:
        return "TEA_" + self.key.upper().replace(".", "__")

    @functools.cached_property
    def env_names(self) -> tuple[str, ...]:
        """Every environment name, highest precedence first."""
        seed = ("TELEMETRON_" + self.telemetron.upper().replace(".", "__"),) if self.telemetron else ()
        return (self.env, *self.aliases, *seed)

    @functools.cached_property
    def flag_name(self) -> str:
        return "--" + self.key.replace("_", "-").replace(".", "-")

    def accepted(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind == "words":  # tuple[Literal[...], ...]: the words it may list
            inner = typing.get_args(_declared(self.type).base)
            words = typing.get_args(inner[0]) if inner and typing.get_origin(inner[0]) is typing.Literal else ()
            return "a comma list" + (" of " + ", ".join(words) if words else "") + " (or a TOML array)"
        _, text, example = _KINDS[self.kind]
        if self.minimum is not None and self.maximum is not None:
            text += f" from {_number(self.minimum)} to {_number(self.maximum)}"
        elif self.minimum is not None:
            text += f" >= {_number(self.minimum)}"
        if self.multiple_of is not None:
            text += f", a multiple of {self.multiple_of}"
        return text + example

    def parse(self, value: Any, where: str, origin: str = "") -> Any:
        """``value`` from a flag, the environment or tea.toml, checked; a ConfigError names ``where`` (the flag,
        the variable or the key) and the ``origin`` (`` in <file>``)."""
        if self.nullable and (value is None or isinstance(value, str) and value.strip().lower() in ("", "auto")):
            return None
        try:
            return msgspec.convert(_KINDS[self.kind][0](value), self.type)
        except (ValueError, TypeError, OverflowError, msgspec.ValidationError):
            shown = mask(value) if self.secret else repr(value)
            raise ConfigError(f"invalid {where}={shown}{origin}: expected {self.accepted()}") from None


_KIND_OF_TYPE = {int: "int", float: "float", bool: "bool", str: "str", typing.Literal: "str", dict: "hours_map",
                 tuple: "json_list"}


@dataclass
class _Declared:
    """What a field's annotation says: its base type, merged ``Meta`` constraints and extras, ``| None``."""

    base: Any
    nullable: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    ge: float | None = None
    le: float | None = None
    multiple_of: int | None = None


def _declared(annotation: Any) -> _Declared:
    """Read from the annotation itself (``Optional[Annotated[int, Meta(...), Meta(...)]]``): cheaper at
    import than msgspec.inspect's full type graph."""
    out = _Declared(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        out.nullable, out.base = len(rest) < len(typing.get_args(annotation)), rest[0]
    if typing.get_origin(out.base) is Annotated:
        for meta in out.base.__metadata__:
            if isinstance(meta, msgspec.Meta):
                out.extra.update(meta.extra or {})
                out.ge = meta.ge if meta.ge is not None else out.ge
                out.le = meta.le if meta.le is not None else out.le
                out.multiple_of = int(meta.multiple_of) if meta.multiple_of is not None else out.multiple_of
        out.base = out.base.__origin__
    return out


def _row(key: str, annotation: Any, default: Any) -> Setting:
    d = _declared(annotation)
    if "help" not in d.extra:
        raise TypeError(f"setting {key!r} has no doc(...) annotation")
    origin = typing.get_origin(d.base) or d.base
    if origin not in _KIND_OF_TYPE:
        raise TypeError(f"setting {key!r}: no parser for {d.base!r} (one of {', '.join(map(str, _KIND_OF_TYPE))})")
    return Setting(key=key, kind=d.extra.get("kind") or _KIND_OF_TYPE[origin], default=default, help=d.extra["help"],
                   type=annotation, choices=typing.get_args(d.base) if origin is typing.Literal else (),
                   minimum=d.ge, maximum=d.le, multiple_of=d.multiple_of, secret=d.extra["secret"],
                   nullable=d.nullable, aliases=tuple(d.extra["env"]), telemetron=d.extra["telemetron"],
                   flag=d.extra["flag"])


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The fields' annotations as objects; ``get_type_hints`` (several ms for every section) only when a
    module declares them as strings (``from __future__ import annotations``)."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        hints.update(klass.__dict__.get("__annotations__", {}))
    if any(isinstance(h, str) for h in hints.values()):
        return typing.get_type_hints(cls, include_extras=True)
    return hints


def _state_fields(cls: type) -> tuple[str, ...]:
    return getattr(cls, "_state_fields", ())  # e.g. Settings.sources: fields that are not settings


def table(cls: type[Section]) -> tuple[Setting, ...]:
    """Every setting declared in ``cls`` and its sections, in declaration order."""
    return tuple(_rows(cls, "", cls()))


def _rows(cls: type, prefix: str, defaults: Any) -> list[Setting]:
    """``defaults``: an instance of ``cls`` holding its defaults where it is used (``tier.free`` and
    ``tier.pro`` are both a ``TierQuota``, with different defaults)."""
    rows: list[Setting] = []
    for name, section in _sections(cls):
        if name in _state_fields(cls):
            continue
        if section is not None:
            rows.extend(_rows(section, prefix + name + ".", getattr(defaults, name)))
        else:
            rows.append(_row(prefix + name, _hints(cls)[name], getattr(defaults, name)))
    return rows


@functools.cache
def _sections(cls: type) -> tuple[tuple[str, type | None], ...]:
    """(field, its Section class or None) for every field of ``cls``."""
    hints = _hints(cls)
    return tuple((name, hints[name] if isinstance(hints[name], type) and issubclass(hints[name], Section) else None)
                 for name in getattr(cls, "__struct_fields__"))


def build(cls: type[Section], values: Mapping[str, Any], prefix: str = "", **state: Any) -> Any:
    """The struct ``cls`` from flat ``{"buffer.max_bytes": ...}`` values (already checked)."""
    fields: dict[str, Any] = dict(state)
    for name, section in _sections(cls):
        if name in state:
            continue
        fields[name] = values[prefix + name] if section is None else build(section, values, prefix + name + ".")
    return cls(**fields)


def replace(struct: Any, changes: Mapping[str, Any]) -> Any:
    """A copy of ``struct`` with dotted keys changed, e.g. ``{"buffer.max_bytes": 1}`` (not re-checked)."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = replace(getattr(struct, head), sub)
    return msgspec.structs.replace(struct, **direct)


def mask(value: Any) -> str:
    """Mask a secret; for URLs only the password is hidden so the target stays visible."""
    text = str(value)
    match = re.match(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)([^@]*)(@.*)$", text)
    if match:
        return match.group(1) + _MASK + match.group(3)
    return _MASK


_SECRET_FIELDS: dict[type, frozenset[str]] = {}


def _secret_fields(cls: type) -> frozenset[str]:
    if cls not in _SECRET_FIELDS:
        _SECRET_FIELDS[cls] = frozenset(name for name, section in _sections(cls)
                                        if section is None and _declared(_hints(cls)[name]).extra.get("secret"))
    return _SECRET_FIELDS[cls]


def _masked_repr(struct: Any) -> str:
    secret = _secret_fields(type(struct))
    parts = []
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        parts.append(f"{name}={mask(value) if name in secret and value else value!r}")
    return f"{type(struct).__name__}({', '.join(parts)})"
