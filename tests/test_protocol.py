"""Wire frames against the stored golden vectors, and every way a frame is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import frames
from protocol.errors import BadMac, BadTopic, MalformedFrame, OversizeFrame
from protocol.frames import Ack, Event, canonical_bytes, compute_mac, encode_batch, parse_batch, verify_event
from protocol.levels import LEVEL_IDS, Level
from protocol.rules import event_problem
from protocol.topics import Leaf, check_device_id, parse_topic, topic

VECTORS = json.loads((Path(frames.__file__).parent / "vectors" / "events.json").read_text())
KEY = bytes.fromhex(VECTORS["key_hex"])
HALL, DEVICE = VECTORS["hall"], VECTORS["device"]


def _event(fields: dict[str, object]) -> Event:
    data = dict(fields)
    if data.get("reasons") is not None:
        data["reasons"] = tuple(data["reasons"])  # type: ignore[arg-type]
    return Event(**data)  # type: ignore[arg-type]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_golden_canonical_bytes_and_mac(vector: dict[str, object]) -> None:
    event = _event(vector["event"])  # type: ignore[arg-type]
    assert canonical_bytes(HALL, DEVICE, event).hex() == vector["canonical_hex"]
    assert compute_mac(KEY, HALL, DEVICE, event) == vector["mac"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_golden_wire_object_parses_back(vector: dict[str, object]) -> None:
    event, mac = frames.parse_event(vector["wire"])
    assert event == _event(vector["event"])  # type: ignore[arg-type]
    verify_event(KEY, HALL, DEVICE, event, mac)


def test_golden_batch_bytes() -> None:
    events = [_event(v["event"]) for v in VECTORS["vectors"][:3]]
    assert encode_batch(KEY, HALL, DEVICE, events).hex() == VECTORS["batch"]["payload_hex"]


def test_mac_binds_hall_device_and_every_field() -> None:
    event = _event(VECTORS["vectors"][0]["event"])
    (good,) = parse_batch(encode_batch(KEY, HALL, DEVICE, [event]))
    verify_event(KEY, HALL, DEVICE, *good)
    with pytest.raises(BadMac):
        verify_event(KEY, HALL, "T02", *good)
    with pytest.raises(BadMac):
        verify_event(b"x" * 32, HALL, DEVICE, *good)
    tampered = frames.Event(**{**good[0].fields(), "level": "dissatisfied"})
    with pytest.raises(BadMac):
        verify_event(KEY, HALL, DEVICE, tampered, good[1])


def test_strings_are_length_prefixed_so_fields_cannot_be_shifted() -> None:
    a = Event(epoch="0" * 16, seq=1, kind="staff", case="a", item="b", boot="x")
    b = Event(epoch="0" * 16, seq=1, kind="staff", case="a\nitem=s1:b", item=None, boot="x")
    assert canonical_bytes(HALL, DEVICE, a) != canonical_bytes(HALL, DEVICE, b)


@pytest.mark.parametrize("payload, error", [
    (b"not json", MalformedFrame),
    (b"[1, 2]", MalformedFrame),
    (b'{"v": 1, "ev": []}', MalformedFrame),
    (b'{"v": 2, "ev": [{}]}', MalformedFrame),
    (b"{" + b" " * frames.MAX_FRAME_BYTES + b"}", OversizeFrame),
    (b"\xff\xfe", MalformedFrame),
])  # fmt: skip
def test_bad_frames_raise_their_own_errors(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_batch(payload)


@pytest.mark.parametrize("change, message", [
    ({"seq": 0}, "seq"), ({"seq": True}, "seq"), ({"seq": "1"}, "seq"), ({"epoch": "xyz"}, "epoch"),
    ({"extra": 1}, "unknown"), ({"mac": "00"}, "mac"), ({"level": 4.5}, "level"),
])  # fmt: skip
def test_misshapen_fields_are_named(change: dict[str, object], message: str) -> None:
    wire = {**VECTORS["vectors"][0]["wire"], **change}
    wire = {k: v for k, v in wire.items() if v is not None}
    with pytest.raises(MalformedFrame, match=message):
        frames.parse_event(wire)


@pytest.mark.parametrize("change, field", [
    ({"kind": "vote"}, "kind"), ({"level": "great"}, "level"), ({"level": None}, "kind"),
    ({"trigger": None}, "kind"), ({"synced": "yes"}, "synced"), ({"case": "x" * 65}, "case"),
    ({"case": "a\u0000b"}, "case"),
])  # fmt: skip
def test_rule_breaks_parse_and_are_named_by_the_rules(change: dict[str, object], field: str) -> None:
    """Well-shaped but meaningless values parse (so the hub can verify and store them as invalid);
    :func:`protocol.rules.event_problem` names the field."""
    wire = {**VECTORS["vectors"][0]["wire"], **change}
    wire = {k: v for k, v in wire.items() if v is not None}
    event, _mac = frames.parse_event(wire)
    problem = event_problem(event)
    assert problem is not None and problem.startswith(field + ":"), problem


def test_ack_round_trip_and_validation() -> None:
    ack = Ack("0123456789abcdef", 42)
    assert Ack.decode(ack.encode()) == ack
    assert ack.encode() == b'{"epoch":"0123456789abcdef","upto":42}'
    with pytest.raises(MalformedFrame):
        Ack.decode(b'{"epoch":"0123456789abcdef","upto":-1}')


def test_topics() -> None:
    assert topic("H1", "T01", Leaf.EV) == "haocha/v1/H1/T01/ev"
    assert parse_topic("H1", "haocha/v1/H1/T01/ev") == ("T01", Leaf.EV)
    for bad in ("haocha/v1/H2/T01/ev", "haocha/v1/H1/hub/ev", "haocha/v1/H1/T01/xx", "haocha/v1/H1/a b/ev"):
        with pytest.raises(BadTopic):
            parse_topic("H1", bad)
    with pytest.raises(ValueError):
        check_device_id("hub")


def test_levels_scale() -> None:
    assert LEVEL_IDS == ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")
    assert [Level(lv).score for lv in LEVEL_IDS] == [5, 4, 3, 2, 1]
    assert [Level(lv).is_bad for lv in LEVEL_IDS] == [False, False, False, True, True]
