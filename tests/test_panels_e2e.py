"""`haocha sim terminal` with Modbus and serial panels, end to end: real Mosquitto, hub, terminal."""

from __future__ import annotations

import pytest

from simulators.hall import Hall, json_line

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
