"""``haocha device list`` shows each terminal's health as the hub knows it (SPEC section 13):
online, last seen, last press, backlog, clock, firmware, and a terminal gone silent stands out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from simulators.hall import Hall, wait_for
from simulators.rig import TerminalRig

REPO = Path(__file__).resolve().parent.parent


def device_list(hall: Hall) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "haocha", "device", "list", "--home", str(hall.home), "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=True,
    )  # fmt: skip
    return {row["device"]: row for row in json.loads(done.stdout)}


def test_device_list_shows_health_and_the_silent_terminal(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01")  # provisioned, never installed
    assert hall.sim_terminal("T01", 3).wait(90) == 0  # presses, drains, publishes offline, exits
    wait_for(lambda: device_list(hall)["T01"]["online"] is False, 30, "T01's offline state")
    rows = device_list(hall)
    t01, t02 = rows["T01"], rows["T02"]
    assert t01["events"] == 3 and t01["not_stored"] == 0
    assert t01["backlog"] == 0  # its goodbye state says what it left behind
    assert t01["last_press"] is not None and t01["last_seen"] >= t01["last_press"]
    assert t01["firmware"] and t01["clock"] in ("synced", "unsynced") and t01["panel"] == "ok"
    assert t01["silent"] is True  # it said goodbye: offline stands out
    assert (t02["online"], t02["last_seen"], t02["silent"]) == (None, None, True)


def test_a_terminal_whose_journal_cannot_be_read_still_says_goodbye(running_hall: Hall) -> None:
    """The goodbye state carries the journal's figures; a journal that fails to read them (its
    connection gone, a disk error) must not keep the terminal from saying it is offline."""
    hall = running_hall
    hall.add_device("T01", "W01")
    rig = TerminalRig(hall, "T01")
    try:
        rig.press("satisfied")
        rig.wait_acked()
        wait_for(lambda: device_list(hall)["T01"]["online"] is True, 40, "T01's online state")
        rig.term.journal._reader.close()  # the next read of the journal fails: sqlite3.ProgrammingError
    finally:
        rig.close()
    wait_for(lambda: device_list(hall)["T01"]["online"] is False, 30, "T01's goodbye")
    assert device_list(hall)["T01"]["silent"] is True
