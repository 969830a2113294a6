"""format_us: RFC 3339 with a Z, the same text as strftime for every representable microsecond."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from tea.timeutil import MAX_US, format_us

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_US = -62135596800000000  # 0001-01-01T00:00:00Z


def reference(us: int) -> str:
    dt = EPOCH + timedelta(microseconds=us)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{dt.microsecond:06d}" if dt.microsecond else "") + "Z"


# (no time limits: on a loaded machine generating the examples alone can exceed Hypothesis's budgets)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(MIN_US, MAX_US), min_size=1, max_size=20), st.integers(0, 3_000_000))
def test_format_us_matches_strftime(values: list[int], step: int) -> None:
    for base in values:  # (neighbours share a second: the cached second's text must still be right)
        for us in (base, base + step, base - step, base):
            if MIN_US <= us <= MAX_US:
                assert format_us(us) == reference(us)


def test_format_us_examples() -> None:
    assert format_us(0) == "1970-01-01T00:00:00Z"
    assert format_us(1795132800000001) == "2026-11-20T00:00:00.000001Z"
    assert format_us(-1) == "1969-12-31T23:59:59.999999Z"
    assert format_us(MIN_US) == reference(MIN_US) and format_us(MAX_US) == "9999-12-31T23:59:59.999999Z"
