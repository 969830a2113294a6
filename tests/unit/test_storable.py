"""The search for values no backend stores (tea.pipeline.storable): cheap on a clean batch, exact on a
suspect one — a literal backslash-u-0000 text is not a NUL, an exponent in a string is not a number."""
from __future__ import annotations

import json

from tea.pipeline.ingest import screen_lines
from tea.pipeline.storable import refusal, suspect


def line(event: dict) -> bytes:
    return json.dumps(event).encode() + b"\n"


def test_clean_batches_are_not_suspect() -> None:
    clean = b"".join(line({"event_type": "t", "event_id": f"e{i}", "duration_ms": 1.5e-05,
                           "attributes": {"x": 1e299, "y": 2.5e-300, "n": 10**300, "s": "back\\slash \u00e9"}}) for i in range(100))
    assert not suspect(clean)


def test_nul_and_huge_numbers_are_found_and_named() -> None:
    assert suspect(line({"event_type": "t", "user_id": "a\x00"}))
    assert refusal(line({"event_type": "t", "user_id": "a\x00"}))[1] == "user_id"  # type: ignore[index]
    assert refusal(line({"event_type": "t", "attributes": {"k": [{"\x00": 1}]}}))[1] == "attributes"  # type: ignore[index]
    huge = b'{"event_type":"t","attributes":{"a":1e999}}\n'
    assert suspect(huge) and refusal(huge)[1] == "attributes"  # type: ignore[index]
    long_mantissa = b'{"event_type":"t","attributes":{"a":' + b"9" * 400 + b'.0}}\n'
    assert refusal(long_mantissa) is not None  # (found when the line is suspect for another value)
    ids = b'{"event_type":"t","trace_id":"3e4569e3001e999","attributes":{"n":1.5e30,"m":[2,"9e999"]}}\n'
    assert not suspect(ids) and refusal(ids) is None  # (an 'e' and digits inside strings: no number)


def test_look_alikes_are_kept() -> None:
    literal = line({"event_type": "t", "attributes": {"path": "C:\\u0000", "e": "1e999", "big": 10**400}})
    assert suspect(literal)  # (the cheap search cannot tell) ...
    assert refusal(literal) is None  # ... the exact one can


def test_screen_lines_keeps_the_storable_lines() -> None:
    good = line({"event_type": "ok"})
    bad = line({"event_type": "t", "tags": ["\x00"]})
    kept, refused = screen_lines(good + bad + good)
    assert kept == good + good
    assert [(e.index, e.error, e.field) for e in refused] == [(1, "invalid_event", "tags")]
