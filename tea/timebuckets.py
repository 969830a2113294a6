"""UTC time buckets: alignment and enumeration, the same in every backend and in the query layer."""
from __future__ import annotations

from datetime import datetime

from tea.timeutil import UTC, datetime_to_us, us_to_datetime

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
WEEK_US = 7 * DAY_US
FIXED_US = {"minute": MINUTE_US, "hour": HOUR_US, "day": DAY_US}
_MONDAY_OFFSET_US = 3 * DAY_US  # 1970-01-01 was a Thursday; ISO weeks start on Monday


def floor(us: int, bucket: str) -> int:
    """Start of the bucket holding ``us``."""
    if bucket in FIXED_US:
        width = FIXED_US[bucket]
        return us - us % width
    if bucket == "week":
        shifted = us + _MONDAY_OFFSET_US
        return shifted - shifted % WEEK_US - _MONDAY_OFFSET_US
    if bucket == "month":
        dt = _dt(us)
        return datetime_to_us(datetime(dt.year, dt.month, 1, tzinfo=UTC))
    raise ValueError(f"unknown bucket {bucket!r}")


def next_start(start: int, bucket: str) -> int:
    if bucket in FIXED_US:
        return start + FIXED_US[bucket]
    if bucket == "week":
        return start + WEEK_US
    dt = _dt(start)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime_to_us(datetime(year, month, 1, tzinfo=UTC))


def starts(start_us: int, end_us: int, bucket: str) -> list[int]:
    """Every bucket start overlapping [start_us, end_us)."""
    out = []
    current = floor(start_us, bucket)
    while current < end_us:
        out.append(current)
        current = next_start(current, bucket)
    return out


def count(start_us: int, end_us: int, bucket: str) -> int:
    """How many buckets overlap [start_us, end_us) — without building them (fixed widths)."""
    if end_us <= start_us:
        return 0
    if bucket in FIXED_US or bucket == "week":
        width = FIXED_US.get(bucket, WEEK_US)
        first = floor(start_us, bucket)
        return (end_us - first + width - 1) // width
    return len(starts(start_us, end_us, bucket))


def _dt(us: int) -> datetime:
    return us_to_datetime(us)
