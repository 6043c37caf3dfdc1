"""The field rules of an event (protocol/rules.py) against the shared vectors, and how the hub and
the frame parser split shape from meaning (SPEC section 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol import rules
from protocol.errors import MalformedFrame
from protocol.frames import compute_mac, parse_batch, parse_event

VECTORS = json.loads((Path(rules.__file__).parent / "vectors" / "rules.json").read_text(encoding="utf-8"))["vectors"]
KEY = bytes(range(32))


def _event_from(wire: dict[str, Any]) -> Any:
    event, _mac = parse_event({**wire, "mac": "0" * 64})
    return event


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rules_vectors(vector: dict[str, Any]) -> None:
    problem = rules.event_problem(_event_from(vector["event"]))
    if vector["problem"] is None:
        assert problem is None
    else:
        assert problem is not None and problem.split(":", 1)[0] == vector["problem"], problem


def test_every_rule_has_a_vector() -> None:
    fields = {v["problem"] for v in VECTORS}
    assert fields >= {"v", "kind", "level", "trigger", "case", "item", "staff", "boot", "window", "reasons", "ref"}
    assert fields >= {"mono_ms", "synced", "wall_ms", "age_ms"}


def test_problem_lines_are_short_whatever_the_value() -> None:
    event = _event_from({**VECTORS[0]["event"], "item": "x" * 60_000})
    problem = rules.event_problem(event)
    assert problem is not None and len(problem) < 120


@pytest.mark.parametrize(
    "change",
    [
        {"epoch": "XYZ"},
        {"epoch": "0123456789abcdef\n"},
        {"seq": 0},
        {"seq": 2**63},
        {"seq": "1"},
        {"level": 1.5},
        {"case": {"a": 1}},
        {"reasons": [["cold"]]},
        {"reasons": "cold"},
        {"extra": 1},
    ],
)
def test_shape_errors_are_malformed_not_invalid(change: dict[str, Any]) -> None:
    """Without a well-formed key and encodable values there is nothing to verify or store."""
    wire = {**VECTORS[0]["event"], "mac": "0" * 64, **change}
    with pytest.raises(MalformedFrame):
        parse_event(wire)


def test_mac_covers_values_that_break_rules() -> None:
    """An event that breaks a rule still has a checkable MAC: the hub can prove it came from the
    device before storing it as invalid."""
    from protocol.frames import verify_event

    wire = {**VECTORS[0]["event"], "wall_ms": 2**62}
    event = _event_from(wire)
    mac = compute_mac(KEY, "H1", "T01", event)
    [(parsed, claimed)] = parse_batch(json.dumps({"v": 1, "ev": [{**wire, "mac": mac}]}).encode())
    verify_event(KEY, "H1", "T01", parsed, claimed)
    assert rules.event_problem(parsed) is not None


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 60_000,
        b'{"v":1,"ev":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"seq":' + b"9" * 5_000 + b"}",
        b"\xff\xfe{}",
        b'{"a":"\\ud800"}',
        b"",
        b"null",
    ],
    ids=["brackets", "nested-ev", "5000-digits", "not-utf8", "lone-surrogate", "empty", "null"],
)
def test_hostile_payloads_are_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedFrame):
        parse_batch(payload)


def test_golden_events_obey_the_rules() -> None:
    golden = json.loads((Path(rules.__file__).parent / "vectors" / "events.json").read_text(encoding="utf-8"))
    for vector in golden["vectors"]:
        event, _mac = parse_event(vector["wire"])
        assert rules.event_problem(event) is None, vector["name"]
