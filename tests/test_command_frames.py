"""``cmd`` and ``state`` frames, built and parsed in protocol/ only (issue 13): round trips, the
exact bytes the hub has always sent, and the commands a terminal refuses."""

from __future__ import annotations

import json

import pytest

from protocol import commands
from protocol.errors import MalformedFrame
from protocol.frames import decode_state, encode_state
from protocol.state import OFFLINE, ONLINE, PanelState, State

from .test_terminal import BAD_COMMANDS  # what the CPython terminal refuses, one list

EVERY_COMMAND: list[commands.Command] = [
    commands.Invite("C-1", "ITEM", "S1"),
    commands.Invite("办件-2", None, None, ttl_ms=60_000, sent_ms=1_790_000_000_000),
    commands.Cancel("C-1"),
    commands.StaffSignIn("S1"),
    commands.StaffSignIn(None),
    commands.Rekey(2, "11" * 32, "p" * 24),
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=repr)
def test_every_command_round_trips(command: commands.Command) -> None:
    assert commands.decode(commands.encode(command)) == command
    assert commands.parse(json.loads(json.dumps(commands.payload(command)))) == command


def test_the_bytes_are_those_the_hub_sent_before() -> None:
    invite = commands.with_lifetime(commands.Invite("C-1", "I", None), 59_000, 1_000)
    assert (
        commands.encode(invite)
        == b'{"cmd":"invite","case":"C-1","item":"I","staff":null,"ttl_ms":59000,"sent_ms":1000}'
    )
    assert commands.encode(commands.Cancel("C-1")) == b'{"cmd":"cancel","case":"C-1"}'
    assert commands.encode(commands.StaffSignIn(None)) == b'{"cmd":"staff","staff":null}'
    # The hub's queue finds rekey commands by the start of their stored JSON (hub.store.keys).
    assert json.dumps(commands.payload(commands.Rekey(3, "ab" * 32, "q" * 20))).startswith('{"cmd": "rekey"')


def test_only_an_invitation_gets_a_lifetime() -> None:
    assert commands.with_lifetime(commands.Cancel("C-1"), 5, 6) == commands.Cancel("C-1")


@pytest.mark.parametrize("bad", BAD_COMMANDS, ids=lambda c: json.dumps(c, ensure_ascii=False)[:40])
def test_what_a_terminal_refuses_does_not_parse(bad: dict[str, object]) -> None:
    with pytest.raises(MalformedFrame):
        commands.parse(bad)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"cmd": "reboot"}, "cmd"),
        ({"cmd": "invite"}, "case"),
        ({"cmd": "invite", "case": "C", "sent_ms": "now"}, "sent_ms"),
        ({"cmd": "rekey", "kid": 0, "key": "11" * 32, "password": "p" * 24}, "kid"),
        ({"cmd": "rekey", "kid": 2, "key": "XY" * 32, "password": "p" * 24}, "key"),
        ({"cmd": "rekey", "kid": 2, "key": "11" * 32, "password": "short"}, "password"),
    ],
)
def test_a_bad_command_names_its_field(bad: dict[str, object], field: str) -> None:
    with pytest.raises(MalformedFrame, match=field):
        commands.parse(bad)


def test_a_rekey_never_shows_its_secrets() -> None:
    assert "11" * 32 not in repr(commands.Rekey(2, "11" * 32, "p" * 24))


def test_state_round_trips_and_reads_what_terminals_send() -> None:
    state = State(True, fw="1.0", kind="gpio", epoch="0123456789abcdef", backlog=3, clock="synced",
                  panel=PanelState(False, "no answer"), kid=2)  # fmt: skip
    assert State.decode(state.encode()) == state
    sent = encode_state(True, epoch="0123456789abcdef", backlog=0, future_field="dropped")
    assert State.decode(sent) == State(True, epoch="0123456789abcdef", backlog=0)
    assert State.decode(sent).fields() == decode_state(sent)
    assert ONLINE.encode() == encode_state(True) and OFFLINE.encode() == encode_state(False)


@pytest.mark.parametrize("bad", [b"{}", b'{"online": "yes"}', b'{"online": true, "backlog": -1}'])
def test_a_bad_state_is_malformed(bad: bytes) -> None:
    with pytest.raises(MalformedFrame):
        State.decode(bad)
