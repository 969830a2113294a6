"""The benchmark's events: one generator shared by the HTTP phases and the DuckDB baseline."""
from __future__ import annotations

import random
import time

import msgspec
import uuid_utils

EVENT_TYPES = ("mcp_request", "mcp_request", "mcp_request", "tool_call", "llm_call")
METHODS = ("tools/call", "tools/list", "resources/read", "prompts/get", "initialize")
TOOLS = ("search", "fetch", "summarise", "translate", "calendar")

_encoder = msgspec.json.Encoder()


def make_event(rng: random.Random) -> dict:
    """One wide event as a client sends it: no event_id, no timestamp (the server sets both)."""
    return {
        "event_type": rng.choice(EVENT_TYPES),
        "tenant_id": f"t{rng.randrange(10)}",
        "user_id": f"u{rng.randrange(1000)}",
        "method": rng.choice(METHODS),
        "duration_ms": round(rng.uniform(0.5, 250.0), 2),
        "status_code": 200 if rng.random() < 0.95 else 500,
        "request_size": rng.randrange(64, 8192),
        "response_size": rng.randrange(64, 65536),
        "attributes": {"tool": rng.choice(TOOLS), "k": rng.randrange(100)},
    }


def batch_bodies(count: int, events_per_body: int, seed: int = 1) -> list[bytes]:
    """``count`` distinct JSON-array bodies of ``events_per_body`` events each."""
    rng = random.Random(seed)
    return [_encoder.encode([make_event(rng) for _ in range(events_per_body)]) for _ in range(count)]


def single_bodies(count: int, seed: int = 2) -> list[bytes]:
    """``count`` distinct one-event bodies (a JSON array of one event, as an SDK would send)."""
    return batch_bodies(count, 1, seed)


def base_events(count: int, seed: int = 3) -> list[dict]:
    """``count`` client events, generated once and re-stamped per DuckDB batch."""
    rng = random.Random(seed)
    return [make_event(rng) for _ in range(count)]


def stored_ndjson(events: list[dict], first_us: int) -> bytes:
    """The events as NDJSON the way TEA stores them.

    Each line gains a fresh UUIDv7 ``event_id`` and integer-microsecond ``timestamp`` and
    ``received_at`` (``tenant_id`` is already set), which is what TEA's buffer hands to DuckDB.
    """
    lines = []
    for i, event in enumerate(events):
        stamped = dict(event, event_id=str(uuid_utils.uuid7()), timestamp=first_us + i, received_at=first_us + i)
        lines.append(_encoder.encode(stamped))
    return b"\n".join(lines) + b"\n"


def now_us() -> int:
    return int(time.time() * 1_000_000)
