"""Time as TEA stores it: integer microseconds since the Unix epoch, UTC."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
MAX_US = 253402300799999999  # 9999-12-31T23:59:59.999999Z
# The RFC 3339 times the OpenAPI document promises are read (as a JSON Schema pattern, unanchored): every one
# is in range whatever its offset (years 1971-9998) and a real date (days 01-28 of any month). Wider forms are
# read too; a generated client needs only these.
RFC3339_PATTERN = ("(197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
                   "-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                   "(\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")


def now_us() -> int:
    return time.time_ns() // 1000


def datetime_to_us(value: datetime) -> int:
    """A datetime (naive means UTC) → µs since the epoch."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _US


def us_to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def format_us(us: int) -> str:
    """RFC 3339 in UTC with a Z; fractional seconds only when present. Pages of events format two per
    event, so the second's text is kept for the next call (events of a page share seconds): with it a
    call costs a divmod and one f-string instead of a strftime."""
    global _last_second
    second, micro = divmod(us, 1_000_000)
    cached = _last_second
    if cached[0] == second:
        text = cached[1]
    else:
        dt = _NAIVE_EPOCH + timedelta(seconds=second)
        text = dt.isoformat() if dt.year >= 1000 else dt.strftime("%Y-%m-%dT%H:%M:%S")  # (isoformat pads years)
        _last_second = (second, text)
    return f"{text}.{micro:06d}Z" if micro else text + "Z"


_NAIVE_EPOCH = datetime(1970, 1, 1)
_last_second: tuple[int | None, str] = (None, "")


def parse_iso(text: str) -> datetime:
    """ISO 8601 date or date-time text as ``datetime.fromisoformat`` reads it (basic and extended forms,
    ``2024-01-15``, ``2024-01-15T10:30Z``, ``20240115T103000Z``, offsets; naive means UTC). Raises ValueError."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def parse_time(text: str) -> int:
    """RFC 3339 / ISO 8601 text or epoch milliseconds (all digits) → µs. Raises ValueError."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        us = int(text) * 1000
    else:
        us = datetime_to_us(parse_iso(text))
    if not 0 <= us <= MAX_US:
        raise ValueError("out of range")
    return us
