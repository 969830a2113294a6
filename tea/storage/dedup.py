"""Which stored event repeats a new one (``storage.dedup_match``, ``storage.dedup_window_s``), as every
backend decides it: one with the same ``(tenant_id, event_id)`` and

* the same timestamp — a client's retry, an exporter's resend and TEA's own replay send an event as it
  was; or
* for a new event stamped on arrival (sent without a timestamp: its ``timestamp`` is its ``received_at``),
  or every event with ``dedup_match = window``: a timestamp within ``dedup_window_s`` of its own.

Only the window's events need a look at a whole window of stored ids: where they are few, a write's
duplicate check reads the stored events of its own times, however long the window (docs/performance.md).
Backends that decide in SQL spell the same rule (DuckDB, PostgreSQL); the others call ``repeats``.
"""
from __future__ import annotations


def windowed(timestamp_us: int, received_at_us: int, same_time: bool) -> bool:
    """Whether the dedup window applies to a new event (stamped on arrival, or every one without ``same_time``:
    ``storage.dedup_match = same_time``)."""
    return not same_time or timestamp_us == received_at_us


def repeats(stored_us: int, timestamp_us: int, received_at_us: int, window_us: int, same_time: bool) -> bool:
    """Whether an event stored (or earlier in the batch) at ``stored_us`` repeats a new event of the same key at
    ``timestamp_us``, received at ``received_at_us``."""
    if stored_us == timestamp_us:
        return True
    return windowed(timestamp_us, received_at_us, same_time) and abs(stored_us - timestamp_us) <= window_us
