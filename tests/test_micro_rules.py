"""The firmware's copy of the field rules (SPEC section 10), run in the real MicroPython interpreter:
the shared vectors of ``protocol/vectors/rules.json``, a ``config.json`` that would make invalid
rows, rows refused at commit, bad commands from the hub refused (issue 10, item 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import rules
from protocol.frames import Event
from terminal.micro_host import MicroSimError, SimBoardProcess, firmware_config, journal_summary, write_sim_config

try:
    from .core_cases import BAD_COMMANDS  # the same bad commands the core's own tests refuse
    from .micro_harness import KEY_HEX, Broker, StandInHub, make_config, run_micropython, wait_for
except ImportError:
    from core_cases import BAD_COMMANDS  # type: ignore[no-redef]
    from micro_harness import (  # type: ignore[no-redef]
        KEY_HEX,
        Broker,
        StandInHub,
        make_config,
        run_micropython,
        wait_for,
    )

RULES = Path(rules.__file__).parent / "vectors" / "rules.json"


def test_rules_vectors_in_micropython() -> None:
    vectors = json.loads(RULES.read_text(encoding="utf-8"))["vectors"]
    out = run_micropython(
        f"""
import json, wire
for v in json.load(open({str(RULES)!r}))["vectors"]:
    print(json.dumps([v["name"], wire.event_problem(v["event"])]))
""",
        heap="512k",  # the whole vector file at once; the firmware itself checks one row at a time
    )
    got = dict(json.loads(line) for line in out.splitlines())
    assert got == {v["name"]: v["problem"] for v in vectors}


def test_checking_text_interns_no_characters() -> None:
    """Iterating a str in MicroPython makes every character a permanent qstr: a hall's item names
    would grow the heap press by press."""
    out = run_micropython("""
import micropython, wire
def qstrs():
    micropython.qstr_info()
for i in range(3):
    qstrs()
    print(wire.valid("\\u529e\\u4ef6-%d-xyzXYZ" % i), wire.valid("W-%d" % i, 32))
""")
    pools = [line for line in out.splitlines() if line.startswith("qstr pool")]
    assert "True True" in out and len(set(pools[1:])) == 1, out


BAD_CONFIGS = {
    "staff": {"staff": ""},
    "item": {"item": "x" * 65},
    "window": {"window": "W01\n"},
    "device": {"device": "M 01"},
    "reasons": {"reasons": ["cold", "la zy"]},
    "pins": {"pins": {"keys": {"great": 32}}},
}


def test_config_problem_names_the_key_of_a_config_that_would_make_invalid_rows(tmp_path: Path) -> None:
    good = firmware_config(make_config(tmp_path, 18830, mode="staff"))
    configs = [good] + [{**good, **change} for change in BAD_CONFIGS.values()]
    script = f"import json, wire\nfor c in json.loads({json.dumps(configs)!r}):\n print(wire.config_problem(c))"
    out = run_micropython(script)
    assert out.split() == ["None", *BAD_CONFIGS]


@pytest.mark.parametrize("key", ["staff", "item"])
def test_firmware_refuses_to_start_with_a_poisoned_config_json(tmp_path: Path, key: str) -> None:
    config = make_config(tmp_path / "dev", 9)
    path = write_sim_config(config, tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), **BAD_CONFIGS[key]}))
    with SimBoardProcess(path) as board, pytest.raises(MicroSimError, match=f"config.json refused: its {key}"):
        board.start()
    assert board.proc is not None and board.proc.wait(5) == 0  # stopped on its own, after one line
    assert not config.journal_path.exists()


# -- the firmware in micropython ------------------------------------------------------------------
FIRMWARE = """
import json, main

class Board:
    levels = ("satisfied", "basic")
    reasons = ()
    def __init__(self):
        self.shown, self.logged = [], []
    def show(self, feedback):
        self.shown.append(feedback)
    def log(self, text):
        self.logged.append(text)
    def synced(self):
        return False
    network_up = synced

cfg = {"hall": "H1", "device": "M01", "window": "W01", "mode": "invited", "staff": "S0", "key": "00" * 32,
       "clock": "unsynced", "journal": %r}
board = Board()
fw = main.Firmware(cfg, board)
ev, clk = fw.rules, fw.clock
out = {}
"""


def mpy(folder: Path, body: str) -> Any:
    script = FIRMWARE % str(folder / "journal") + body + "\nprint(json.dumps(out))\n"
    # Compiled from source here, which needs more heap than the precompiled firmware.
    return json.loads(run_micropython(script, heap="256k").strip().splitlines()[-1])


def test_bad_commands_are_refused_and_change_nothing(tmp_path: Path) -> None:
    commands = json.dumps([command for command, _ in BAD_COMMANDS])
    out = mpy(
        tmp_path,
        f"""
fw._command({{"cmd": "invite", "case": "C-0", "item": "I", "ttl_ms": 60000}})
out["refused"] = [fw._command(c) for c in json.loads({commands!r})]
out["kept"] = [ev.invitation[0], ev.invitation[1], ev.staff]
out["press"] = fw.press(("level", "satisfied"))
out["row"] = [b for s, b in fw.journal.rows(0, 9)][0]
""",
    )
    assert out["refused"] == [field for _, field in BAD_COMMANDS]
    assert out["kept"] == ["C-0", "I", "S0"]
    assert out["press"] == [1, "rating"]
    assert (out["row"]["case"], out["row"]["item"], out["row"].get("staff")) == ("C-0", "I", None)


def test_a_row_that_breaks_a_rule_is_refused_at_commit_and_the_next_one_commits(tmp_path: Path) -> None:
    out = mpy(
        tmp_path,
        """
ev.invite("C-1", "x" * 65, None, 60000, clk.mono_ms())  # got past every check: the commit still refuses it
out["bad"] = fw.press(("level", "satisfied"))
out["after_bad"] = [fw.journal.last_seq, board.shown[-1], ev.invitation[0], board.logged]
ev.invite("C-2", "I", None, 60000, clk.mono_ms())
out["good"] = fw.press(("level", "satisfied"))
out["shown"] = board.shown[-1]
""",
    )
    assert out["bad"] == [None, None]
    last_seq, shown, invitation, logged = out["after_bad"]
    assert (last_seq, shown, invitation) == (0, "refused", "C-1")
    assert len(logged) == 1 and "breaks the rule of field item" in logged[0]
    assert (out["good"], out["shown"]) == ([1, "rating"], "thanks")


def test_a_synced_clock_outside_the_rules_range_counts_as_unsynced() -> None:
    out = run_micropython("""
import clock
c = clock.Clock("synced")
print(c.synced(), c.synced(0), c.synced(4102444800000), c.synced(1795000000000))
""")
    assert out.split() == ["True", "False", "False", "True"]


# -- against a real Mosquitto and the stand-in hub --------------------------------------------------
@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Broker, StandInHub]]:
    with Broker(tmp_path) as broker, StandInHub("H1", broker.port, {"M01": bytes.fromhex(KEY_HEX)}, broker.ca) as hub:
        yield broker, hub


def test_firmware_refuses_a_bad_invitation_takes_the_next_and_keeps_draining(
    tmp_path: Path, hub: tuple[Broker, StandInHub]
) -> None:
    broker, standin = hub
    config = make_config(tmp_path / "dev", broker.port, mode="invited", ca=broker.ca)
    with SimBoardProcess(write_sim_config(config, tmp_path)) as board:
        board.start()
        wait_for(lambda: board.status()["connected"], 20, "the board to connect")
        standin.invite("M01", "C-BAD", item="x" * 65)
        wait_for(lambda: any("refused a command" in line for line in board.log), 20, "the refusal")
        assert board.lights == "idle"
        assert board.press("press satisfied") == (1, "ignored")  # no invitation: never a rating for C-BAD
        standin.invite("M01", "C-OK", item="I" * 64)
        board.wait_lights("ready", 20)
        assert board.press("press satisfied") == (2, "rating")
        wait_for(lambda: journal_summary(config.journal_path)["pending"] == 0, 30, "the hub's ack")
        assert board.quit() == 0
    epoch = journal_summary(config.journal_path)["epoch"]
    events = standin.events("M01", epoch)
    assert [(e["kind"], e["case"]) for e in events] == [("ignored", None), ("rating", "C-OK")]
    assert all(rules.event_problem(Event(**{k: v for k, v in e.items() if k != "reasons"})) is None for e in events)


def test_an_ack_beyond_last_seq_is_refused_once_and_a_good_ack_after_it_counts(tmp_path: Path) -> None:
    """As the CPython terminal (tests/test_terminal_acks.py): both run terminal.core's Window."""
    out = mpy(
        tmp_path,
        """
fw.rules.mode = "free"
for _ in range(3):
    fw.press(("level", "satisfied"))
    fw.rules.lockout_until = 0
up = fw.uplink
ack = '{"epoch":"%s","upto":%d}'
up._on_message(up.t_ack, ack % (fw.journal.epoch, 10), True)
up._apply_ack()
out["after_bad"] = [fw.journal.acked, board.logged]
up._on_message(up.t_ack, ack % (fw.journal.epoch, 2), True)
up._apply_ack()
out["acked"] = fw.journal.acked
""",
    )
    assert out["after_bad"] == [0, ["hub acked seq 10 beyond last_seq 3: ignored"]]
    assert out["acked"] == 2
