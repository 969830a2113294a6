"""The search for values no backend stores (tea.pipeline.storable): cheap on a clean batch, exact on a
suspect one — a literal backslash-u-0000 text is not a NUL, an exponent in a string is not a number."""
from __future__ import annotations

import json

import msgspec

from tea import semconv
from tea.pipeline.ingest import kinds_of, screen_lines
from tea.pipeline.storable import all_objects, joined_attributes, refusal, suspect, suspect_events
from tea.types import Event


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


def test_one_event_is_searched_as_a_batch_is() -> None:
    """A single event's attributes are searched as a batch's: the same answers, and the same for the semantic
    conventions' keys."""
    cases = {b'{"a":1e999}': True, b'{"a": 1E+400}': True, b"{}": False, b'{"a":1}': False,
             b'{"s":"1e999"}': False, b'{"gen_ai.system":"x"}': False, b'{"n":[2,3e308]}': True}
    for attributes, huge in cases.items():
        one = joined_attributes([msgspec.Raw(attributes)])
        batch = joined_attributes([msgspec.Raw(b'{"k":1}'), msgspec.Raw(attributes)])
        assert suspect_events(b"{}\n", one) == suspect_events(b"{}\n", batch) == huge
        assert semconv.marked(one) == semconv.marked(batch) == (b"gen_ai." in attributes)
    keys = {b'{"mcp.method.name":"x"}': True, b'{"rpc.jsonrpc.error_code":1}': True, b'{"error.type":"x"}': True,
            b'{"error.types":"x"}': False, b'{"agen_ai.x":1}': False,
            b'{"x":"mcp.y"}': True}
    for attributes, marked in keys.items():  # (each key the rules read, where a string starts: a may)
        assert semconv.marked(joined_attributes([msgspec.Raw(attributes)])) \
            == semconv.marked(joined_attributes([msgspec.Raw(b"{}"), msgspec.Raw(attributes)])) == marked


def test_all_objects_only_when_every_attributes_starts_an_object() -> None:
    """The batch-wide check the normaliser skips its per-event one on: exact, whatever the attributes hold."""
    raw = [msgspec.Raw(b) for b in (b'{"a":1}', b"{}", b'{"b":\n{"c":[1]}}')]
    assert all_objects(joined_attributes(raw))
    for other in (b"null", b"[1]", b'"x"', b"1", b""):
        for at in range(4):
            mixed = raw[:at] + [msgspec.Raw(other)] + raw[at:]
            assert not all_objects(joined_attributes(mixed)), (other, at)
    # a NUL inside some attributes (never from decoding) cannot hide one that is not an object
    assert not all_objects(b'{"a":"\x00{"}\x00[1]') and not all_objects(b"[1]\x00{}\x00{}")
    assert all_objects(b'{"a":"\x00{"}\x00{}') and not all_objects(b"") and not all_objects(b"{}\x00")


def test_a_single_events_type_is_the_set_its_batches_share() -> None:
    one = [Event(event_type="storable_kind", attributes=msgspec.Raw(b"{}"))]
    same = kinds_of(one * 3)
    assert kinds_of(one) is same and kinds_of(one) == frozenset(["storable_kind"])
    assert kinds_of(one + [Event(event_type="other_kind", attributes=msgspec.Raw(b"{}"))]) == \
        frozenset(["storable_kind", "other_kind"])
