"""The ``update`` command and the ``update`` state field (protocol/updates.py, SPEC section 13)."""

from __future__ import annotations

import hashlib

import pytest

from protocol import commands
from protocol.errors import MalformedFrame
from protocol.state import State
from protocol.updates import Manifest, ReleaseFile, ReleaseKind, UpdatePhase, UpdateState

WHEEL = ReleaseFile("haocha-0.2.0-py3-none-any.whl", hashlib.sha256(b"wheel").hexdigest(), 5)
MANIFEST = Manifest("0.2.0", ReleaseKind.TERMINAL, (WHEEL,))
TEXT = MANIFEST.encode().decode()
URL = "https://hub.local:8443/fleet/releases/0.2.0/"


def test_update_round_trips_with_the_manifest_text_as_signed() -> None:
    update = commands.Update("0.2.0", TEXT, "ab" * 64, URL)
    assert commands.decode(commands.encode(update)) == update
    assert update.parsed_manifest() == MANIFEST
    assert Manifest.decode(MANIFEST.encode()).encode() == MANIFEST.encode()


def test_a_board_s_update_carries_its_manifest_by_reference_and_is_small() -> None:
    """A board fetches ``url`` + manifest.json: the command holds release, HMAC and url alone, and
    stays a few hundred bytes even with the longest url (docs/micro.md, "Limits and figures")."""
    url = "https://" + "h" * 180 + ".local/"
    update = commands.Update("micro-0.2.0-rc.1+build", None, "ab" * 32, url)
    frame = commands.encode(update)
    assert commands.decode(frame) == update
    assert "manifest" not in commands.payload(update) and update.parsed_manifest() is None
    assert len(frame) <= 400


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"manifest": None}, "manifest"),  # by reference is no manifest at all, not null
        ({"sig": "ab" * 64, "manifest": None}, "manifest"),
        ({"sig": "zz"}, "sig"),
        ({"release": "0.3.0"}, "manifest"),
        ({"release": "../up"}, "release"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"manifest": TEXT.replace("haocha-0.2.0", "../../x")}, "files"),
        ({"manifest": TEXT.replace('"kind":"terminal"', '"kind":"rootkit"')}, "kind"),
        ({"manifest": "[" * 5000}, "manifest"),
        ({"manifest": TEXT.replace(WHEEL.sha256, "00")}, "files"),
    ],
)
def test_a_bad_update_is_refused_naming_the_field(change: dict[str, str | None], field: str) -> None:
    frame = {"cmd": "update", "release": "0.2.0", "manifest": TEXT, "sig": "ab" * 32, "url": URL, **change}
    with pytest.raises(MalformedFrame, match=repr(field)):
        commands.parse(frame)


def test_only_a_board_hmac_may_come_without_its_manifest() -> None:
    """An ed25519 signature (a CPython terminal's) needs the text it signs in the command."""
    frame = {"cmd": "update", "release": "0.2.0", "sig": "ab" * 64, "url": URL}
    with pytest.raises(MalformedFrame, match="'manifest'"):
        commands.parse(frame)
    assert commands.parse({**frame, "sig": "ab" * 32}) == commands.Update("0.2.0", None, "ab" * 32, URL)


def test_a_file_listed_twice_is_refused() -> None:
    twice = Manifest("0.2.0", ReleaseKind.MICRO, (WHEEL, WHEEL)).encode()
    with pytest.raises(MalformedFrame, match="twice"):
        Manifest.decode(twice)


def test_the_update_state_round_trips_and_a_bad_phase_refuses_the_state() -> None:
    state = State(online=True, update=UpdateState("0.2.0", UpdatePhase.ROLLED_BACK, "self-test: broker not reached"))
    assert State.decode(state.encode()) == state
    with pytest.raises(MalformedFrame, match="'update'"):
        State.parse({"online": True, "update": {"release": "0.2.0", "phase": "pwned"}})


def test_a_board_signature_is_bound_to_the_key_and_the_text() -> None:
    from protocol.updates import board_signature

    key = bytes(range(32))
    sig = board_signature(key, MANIFEST.encode())
    assert len(sig) == 64
    assert sig != board_signature(bytes(32), MANIFEST.encode())
    assert sig != board_signature(key, MANIFEST.encode() + b" ")
