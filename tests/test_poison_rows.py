"""Issue 10, item 7 (SPEC section 10): a terminal never journals a row the hub could only store as
invalid. A config that would make one stops the terminal at start with one line; a command from
the hub that would make one is refused, and the terminal keeps draining."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from haocha.cli import main
from hub.store import now_ms
from simulators.hall import Hall, wait_for

from .invariant import assert_invariant
from .rig import HubApi, TerminalRig

POISONS = {"staff-empty": ("staff", ""), "item-65": ("item", "x" * 65)}


def poison(path: Path, key: str, value: Any) -> None:
    """Edit ``terminal.toml`` as a technician would (the rest of the file unchanged)."""
    settings = tomllib.loads(path.read_text())
    settings[key] = value
    path.write_text(tomli_w.dumps(settings))


def haocha(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "haocha", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["gpio", "micro"])
def test_device_add_never_writes_a_config_the_terminal_would_refuse(hall: Hall, kind: str) -> None:
    """A window id that slipped into the registry with a trailing newline (an id check ending in
    ``$``): provisioning refuses, and registers and writes nothing."""
    with hall.store() as store, store.transaction() as conn:
        conn.execute("INSERT INTO windows (id, name, created_ms) VALUES ('W01\n', 'x', 0)")
    args = ["device", "add", "T01", "--window", "W01\n", "--kind", kind, "--home", str(hall.home)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "window" in result.stderr
    assert not (hall.home / "devices" / "T01").exists()
    with hall.store() as store:
        assert store.conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


@pytest.mark.parametrize("kind", ["gpio", "micro"])
@pytest.mark.parametrize("poison_id", list(POISONS))
def test_a_poisoned_config_stops_terminal_run_and_sim_terminal_with_one_line(
    hall: Hall, kind: str, poison_id: str
) -> None:
    key, value = POISONS[poison_id]
    path = hall.add_device("T01", "W01", kind=kind)
    poison(path, key, value)
    runs = [("sim", "terminal", "--config", str(path), "--presses", "3", "--timeout", "10")]
    if kind != "micro":  # kind micro runs on its board, or under `sim terminal`
        runs.append(("terminal", "run", "--config", str(path)))
    for args in runs:
        result = haocha(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert str(path) in result.stderr and f"'{key}' must be 1-64 characters" in result.stderr
    assert not (path.parent / ("journal" if kind == "micro" else "journal.db")).exists()


def test_bad_commands_never_stall_a_terminal_and_it_keeps_draining(running_hall: Hall) -> None:
    """The case from the issue, through a running broker and hub: the hub's command queue holds
    invitations and a sign-in that no row may carry (written past the hub's own checks). The hub
    reads every queued command with protocol.commands before it sends it: it drops these with
    one ERROR each and goes on, so the terminal never sees them (the terminal's own refusal of
    such commands is tested in test_terminal.py), takes the next good invitation, and its ack
    keeps up with its journal."""
    hall = running_hall
    hall.add_device("T01", "W01", mode="invited")
    api = HubApi(hall)
    rig = TerminalRig(hall, "T01")
    try:
        expires = now_ms() + 60_000
        bad = [
            ({"cmd": "staff", "staff": ""}, None),
            ({"cmd": "invite", "case": "C-" + "9" * 63, "item": None, "staff": None}, expires),
            ({"cmd": "invite", "case": "C-BAD", "item": "x" * 65, "staff": None}, expires),
        ]
        with hall.store() as store, store.transaction() as conn:
            for payload, until in bad:
                conn.execute(
                    "INSERT INTO commands (device, payload, created_ms, expires_ms) VALUES ('T01', ?, ?, ?)",
                    (json.dumps(payload), now_ms(), until),
                )
        wait_for(lambda: _unsent_commands(hall) == 0, 20, "the hub to go through its queue")
        assert rig.term.evaluator.invitation is None
        rig.press("satisfied")  # no invitation: an ignored press, never a rating for C-BAD
        api.open_case("C-OK", "W01", item="11010000-XK-001")
        rig.wait_invited("C-OK")
        rig.press("very_satisfied")
        rig.wait_acked()
        assert rig.term.uplink.counts["commands"] == 1  # the good invitation alone
        assert rig.term.commands.counts["refused"] == 0
    finally:
        rig.close()
        api.close()
    assert hall.log("hub").count("dropped queued command") == len(bad)
    assert_invariant(hall, ["T01"])
    with hall.store() as store:
        rows = store.conn.execute("SELECT kind, case_no FROM events WHERE device = 'T01' ORDER BY seq").fetchall()
    assert rows == [("ignored", None), ("rating", "C-OK")]


def _unsent_commands(hall: Hall) -> int:
    with hall.store() as store:
        return int(store.conn.execute("SELECT count(*) FROM commands WHERE published_ms IS NULL").fetchone()[0])
