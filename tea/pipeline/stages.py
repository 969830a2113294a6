"""What a validator stage may raise, and the built-in stages."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any, Callable, Iterable

import msgspec

from tea.pii import DEFAULT_PII_CONTAINS, DEFAULT_PII_KEYS, REDACTED
from tea.types import Event

log = logging.getLogger(__name__)
Stage = Callable[[Event], Event]

_HEX16 = re.compile(r"^[0-9a-f]{16}$")


class Invalid(Exception):
    """Refuse this event; it is reported in the batch's errors with ``code`` and ``field``."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class Drop(BaseException):
    """Discard this event without error (counted as dropped). A BaseException so that a broad
    ``except Exception`` in a stage cannot swallow it."""


class AllowList:
    """Telemetron's SourceIdValidator / EventTypeValidator: only listed values pass; empty allows all."""

    def __init__(self, field: str, allowed: Iterable[str], message: str, code: str) -> None:
        self.field, self.allowed, self.message, self.code = field, frozenset(allowed), message, code
        self.__name__ = f"{field}_allow_list"
        if not self.allowed:
            log.warning("validator %s: the allow list is empty, every %s passes", self.__name__, field)

    def __call__(self, event: Event) -> Event:
        value = getattr(event, self.field)
        if self.allowed and (value is None or value not in self.allowed):
            raise Invalid(self.code, self.message.format(value), self.field)
        return event


class JsonSchemas:
    """Attributes of an event type must match ``<directory>/<event_type>.json`` (types without a file pass)."""

    __name__ = "json_schema"

    def __init__(self, directory: str) -> None:
        from jsonschema import Draft202012Validator

        self.validators = {}
        for name in sorted(os.listdir(directory)):
            if name.endswith(".json"):
                with open(os.path.join(directory, name)) as fh:
                    schema = json.load(fh)
                Draft202012Validator.check_schema(schema)
                self.validators[name[:-5]] = Draft202012Validator(schema)
        log.info("json schemas for event types: %s", ", ".join(self.validators) or "(none)")

    def __call__(self, event: Event) -> Event:
        validator = self.validators.get(event.event_type)
        if validator is not None:
            error = next(iter(validator.iter_errors(msgspec.json.decode(event.attributes))), None)
            if error is not None:
                path = ".".join(str(p) for p in error.absolute_path)
                raise Invalid("schema_mismatch", f"attributes do not match the {event.event_type!r} schema: "
                              f"{error.message}", "attributes" + (f".{path}" if path else ""))
        return event


class PiiRedactor:
    """Replace sensitive attribute values with ``[REDACTED]``; optionally hash ``user_id`` (SHA-256, 16 hex
    characters, unless it already is such a hash). Attributes are parsed only when a sensitive key may occur."""

    __name__ = "pii_redaction"

    def __init__(self, keys: Iterable[str] = DEFAULT_PII_KEYS, contains: Iterable[str] | None = None,
                 hash_user_id: bool = False) -> None:
        self.keys = frozenset(k.lower() for k in keys)
        self.contains = tuple(c.lower() for c in (DEFAULT_PII_CONTAINS if contains is None else contains))
        # A cheap prefilter over the raw JSON (lower-cased): the fewest substrings that every sensitive
        # key contains. Attributes are parsed only when one occurs (~0.5 µs per event otherwise).
        words = sorted(self.keys | set(self.contains), key=len)
        needles = [w.encode() for i, w in enumerate(words) if not any(v in w for v in words[:i])]
        self.prefilter = re.compile(b"|".join(re.escape(n) for n in needles)) if needles else None
        self.hash_user_id = hash_user_id

    def sensitive(self, key: str) -> bool:
        lowered = key.lower()
        return lowered in self.keys or any(word in lowered for word in self.contains)

    def _clean(self, value: Any) -> tuple[Any, bool]:
        if isinstance(value, dict):
            changed = False
            out = {}
            for key, item in value.items():
                if self.sensitive(key):
                    out[key], changed = REDACTED, True
                else:
                    out[key], inner = self._clean(item)
                    changed = changed or inner
            return out, changed
        if isinstance(value, list):
            cleaned = [self._clean(item) for item in value]
            return [c for c, _ in cleaned], any(changed for _, changed in cleaned)
        return value, False

    def __call__(self, event: Event) -> Event:
        raw = bytes(event.attributes)
        if self.prefilter is not None and self.prefilter.search(raw.lower()):
            cleaned, changed = self._clean(msgspec.json.decode(raw))
            if changed:
                event.attributes = msgspec.Raw(msgspec.json.encode(cleaned))
        if self.hash_user_id and event.user_id and not _HEX16.match(event.user_id):
            event.user_id = hashlib.sha256(event.user_id.encode()).hexdigest()[:16]
        return event
