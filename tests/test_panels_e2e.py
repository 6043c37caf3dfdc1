"""`haocha sim terminal` with Modbus and serial panels, end to end: real Mosquitto, hub, terminal."""

from __future__ import annotations

import json
import signal
import tomllib

import pytest
import tomli_w

from simulators.hall import Hall, json_line, wait_for

from .invariant import assert_invariant


@pytest.mark.parametrize("kind", ["modbus", "serial"])
def test_sim_terminal_with_bus_panels(running_hall: Hall, kind: str) -> None:
    running_hall.add_device("T01", "W01", kind=kind)
    proc = running_hall.sim_terminal("T01", 60, 50, 3)
    assert proc.wait(timeout=120) == 0, running_hall.log("sim-T01")
    summary = json_line(running_hall.log("sim-T01"))
    assert summary["last_seq"] == summary["acked"] >= 60 and summary["pending"] == 0
    assert_invariant(running_hall, ["T01"])
    rows = running_hall.stats(("device",))["rows"]
    assert rows[0]["evaluations"] == 60


@pytest.mark.parametrize("kind", ["gpio", "modbus", "serial", "micro"])
def test_sim_terminal_restarted_after_kill_9_works_like_a_first_run(running_hall: Hall, kind: str) -> None:
    """`kill -9` of `sim terminal` mid-burst, then `sim terminal --presses 40` on the same config:
    40 more ratings journaled and drained, none lost, none twice. No reason keys, so every press
    on the panel is one journal row; the simulated Modbus and serial panels count their presses
    in their memory file beside terminal.toml, across both runs."""
    hall = running_hall
    config = hall.add_device("T01", "W01", kind=kind)
    settings = tomllib.loads(config.read_text())
    settings["reasons"] = []
    config.write_text(tomli_w.dumps(settings))
    hall.sim_terminal("T01", 300, 50, 1)
    wait_for(lambda: _journaled(hall) >= 10, 60, "presses before the kill")
    hall.kill("sim-T01", signal.SIGKILL)
    before = hall.journal("T01")["last_seq"]
    proc = hall.sim_terminal("T01", 40, 50, 2)
    assert proc.wait(timeout=90) == 0, hall.log("sim-T01")[-3000:]
    summary = json_line(hall.log("sim-T01"))
    assert summary["pending"] == 0
    assert_invariant(hall, ["T01"])
    # The restarted panel is the same unit powered up again, not a faulty one counting backwards.
    assert not [line for line in hall.log("sim-T01").splitlines() if " ERROR terminal.panels" in line]
    if kind in ("modbus", "serial"):  # what the killed run pressed and had not journaled comes now
        memory = json.loads((config.parent / "sim-panel.json").read_text())
        assert summary["last_seq"] == memory["presses"] >= before + 40 and memory["boot"] == 2
    else:  # a press the killed run had not journaled died with it
        assert summary["last_seq"] == before + 40


def _journaled(hall: Hall) -> int:
    try:
        return int(hall.journal("T01")["last_seq"])
    except (OSError, ValueError, LookupError):
        return 0  # no journal yet
