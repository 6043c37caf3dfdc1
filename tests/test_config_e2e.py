"""Layered configuration end to end (SPEC section 13, issue 14 "It must hold"): a real broker and
hub, a CPython terminal on mock GPIO pins, one behind a simulated serial panel and the firmware on
the simulated board. A window-level and a device-level setting reach every kind, which applies
them (the presses that count change) and reports the version; a bad configuration sent straight
on the ``cmd`` topic is refused and reported with its reason while the old one stays in force; a
terminal offline during a push gets it when it is back; a restarted terminal keeps what it
applied."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from haocha.cli import main
from hub import layers
from simulators.hall import Hall, wait_for
from simulators.panel_sims import SimulatedPanel, simulated_panel
from simulators.rig import TerminalRig
from terminal.config import load
from terminal.micro_host import SimBoardProcess, write_sim_config
from terminal.panel import Key, KeyKind
from terminal.runner import Terminal

from .mqtt_peer import publish_as_hub


class SerialRig:
    """A CPython terminal behind a simulated serial panel, run in this process."""

    def __init__(self, hall: Hall, device: str) -> None:
        self.sim: SimulatedPanel = simulated_panel(load(hall.terminal_config(device)))
        self.term = Terminal(self.sim.config)  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.term.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self.term.uplink.connected, 20, f"{device} to connect")

    def press(self, hall: Hall, *levels: str) -> list[tuple[str, str]]:
        """Press keys on the panel: (kind, level) of the rows they made, as the hub stored them."""
        before = self.term.journal.last_seq
        for level in levels:
            self.sim.press(Key(KeyKind.LEVEL, level))
        self.sim.press(Key(KeyKind.LEVEL, "basic"))  # a marker that makes a row in every layout
        marker = ([("rating", "basic")], [("ignored", "basic")])
        wait_for(lambda: stored(hall, "T02", before)[-1:] in marker, 20, "the marker's row at the hub")
        return stored(hall, "T02", before)[:-1]

    def close(self) -> None:
        self.term.close()
        self._thread.join(timeout=10)
        self.sim.close()


def stored(hall: Hall, device: str, after: int) -> list[tuple[str, str]]:
    """(kind, level) of the ratings and ignored presses the hub stored from ``device`` after seq ``after``."""
    with hall.store() as store:
        return store.conn.execute(
            "SELECT kind, level FROM events WHERE device = ? AND seq > ? AND kind IN ('rating', 'ignored') "
            "ORDER BY seq", (device, after),
        ).fetchall()  # fmt: skip


def pressed(hall: Hall, rig: TerminalRig, *levels: str) -> list[tuple[str, str]]:
    """Press ``levels`` on a GPIO terminal: (kind, level) of each row, as the hub stored them."""
    before = rig.term.journal.last_seq
    seqs = [rig.press(level) for level in levels]
    wait_for(lambda: len(stored(hall, rig.config.device, before)) >= len(seqs), 20, "the hub to store the presses")
    return stored(hall, rig.config.device, before)


class Board:
    """The firmware on the simulated board, its flash in ``folder``."""

    def __init__(self, hall: Hall, device: str, folder: Path) -> None:
        folder.mkdir()
        self.path = write_sim_config(load(hall.terminal_config(device)), folder)
        self.proc = SimBoardProcess(self.path).start(30)

    def press(self, level: str) -> str | None:
        """The kind of row the press made (None: nothing)."""
        return self.proc.press(f"press {level}")[1]

    def restart(self) -> None:
        assert self.proc.quit() == 0
        self.proc = SimBoardProcess(self.path, code_dir=self.path.parent / "firmware").start(30)

    def close(self) -> None:
        self.proc.close()
        print("\n".join(self.proc.log[-30:]))  # shown when the test failed


@pytest.fixture
def terminals(running_hall: Hall, tmp_path: Path) -> Iterator[dict[str, Any]]:
    hall = running_hall
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01", kind="serial")
    hall.add_device("M01", "W01", kind="micro")
    running: dict[str, Any] = {}
    try:
        running["T01"] = TerminalRig(hall, "T01")
        running["T02"] = SerialRig(hall, "T02")
        running["M01"] = Board(hall, "M01", tmp_path / "on-M01")
        yield running
    finally:
        for rig in running.values():
            rig.close()


def config(hall: Hall, *args: str) -> str:
    result = CliRunner().invoke(main, ["config", *args, "--home", str(hall.home)])
    assert result.exit_code == 0, result.output
    return result.stdout


def reports(hall: Hall) -> dict[str, dict[str, Any]]:
    with hall.store() as store:
        return layers.device_status(store.conn)


def wait_applied(hall: Hall, version: int, *devices: str) -> None:
    wait_for(
        lambda: all(reports(hall).get(d, {}).get("applied") == version for d in devices),
        30,
        f"{', '.join(devices)} to report configuration {version}",
    )


def device_list(hall: Hall) -> dict[str, str | None]:
    result = CliRunner().invoke(main, ["device", "list", "--home", str(hall.home), "--format", "json"])
    return {row["device"]: row["config"] for row in json.loads(result.stdout)}


def test_a_configuration_reaches_every_kind_and_a_bad_one_is_refused(
    running_hall: Hall, terminals: dict[str, Any]
) -> None:
    hall = running_hall
    gpio, serial, board = terminals["T01"], terminals["T02"], terminals["M01"]
    wait_applied(hall, 0, "T01", "T02", "M01")  # each said it takes configurations
    assert pressed(hall, gpio, "satisfied", "satisfied") == [("rating", "satisfied"), ("ignored", "satisfied")]

    # A window's setting reaches its three terminals: no lockout, presses in a row count now
    config(hall, "set", "lockout_s", "0", "--window", "W01")
    wait_applied(hall, 1, "T01", "T02", "M01")
    assert pressed(hall, gpio, "satisfied", "basic") == [("rating", "satisfied"), ("rating", "basic")]
    assert serial.press(hall, "satisfied", "satisfied") == [("rating", "satisfied")] * 2
    assert (board.press("satisfied"), board.press("satisfied")) == ("rating", "rating")

    # A device's setting reaches that device alone: the 3-key layout
    config(hall, "set", "layout", "3", "--device", "T02")
    config(hall, "set", "layout", "3", "--device", "M01")
    wait_applied(hall, 2, "T02", "M01")
    assert serial.press(hall, "very_satisfied", "satisfied") == [("rating", "satisfied")]  # no very_ key now
    assert (board.press("very_satisfied"), board.press("basic")) == (None, "rating")
    assert pressed(hall, gpio, "very_satisfied") == [("rating", "very_satisfied")]  # T01 keeps five keys
    shown = json.loads(config(hall, "show", "--device", "T02", "--format", "json"))
    assert {r["key"]: r["layer"] for r in shown} == {"lockout_s": "window W01", "layout": "device T02"}
    assert (shown[0]["pushed"], shown[0]["applied"]) == (2, 2)
    assert device_list(hall) == {"T01": "1", "T02": "2", "M01": "2"}

    # A bad one, straight on the cmd topic: refused with the reason, the old one stays in force
    publish_as_hub(
        hall, ["T01", "T02", "M01"], [{"cmd": "config", "version": 50, "settings": {"layout": 3, "invite_s": -5}}]
    )
    wait_for(lambda: all(reports(hall)[d].get("refused") == 50 for d in ("T01", "T02", "M01")), 30, "the refusals")
    listed = device_list(hall)
    assert listed["T02"] == "2, refused 50: field 'settings': invite_s must be more than 0 to 604800 seconds, got -5"
    assert listed["M01"] == "2, refused 50: invite_s is not valid"
    assert listed["T01"].startswith("1, refused 50: ")  # type: ignore[union-attr]
    assert serial.press(hall, "very_satisfied") == [] and board.press("very_satisfied") is None
    assert pressed(hall, gpio, "very_satisfied", "satisfied") == [("rating", "very_satisfied"), ("rating", "satisfied")]

    # Offline during a push: it gets it when it is back; restarted terminals keep theirs
    gpio.close()
    wait_for(lambda: online(hall, "T01") is False, 30, "T01's goodbye")
    config(hall, "set", "invite_s", "30", "--window", "W01")  # version 51: past the one refused
    wait_applied(hall, 51, "T02", "M01")
    assert reports(hall)["T01"]["applied"] == 1 and device_list(hall)["T01"] == "1, pending 51"
    terminals["T01"] = gpio = TerminalRig(hall, "T01")
    wait_applied(hall, 51, "T01")
    assert (gpio.term.evaluator.rules.invite_ms, gpio.term.evaluator.rules.lockout_ms) == (30_000, 0)
    serial.close()
    terminals["T02"] = serial = SerialRig(hall, "T02")
    assert serial.term.evaluator.rules.conf[0] == 51  # from hub-config.json, before any word from the hub
    assert serial.press(hall, "very_satisfied", "dissatisfied") == [("rating", "dissatisfied")]
    board.restart()
    assert board.press("very_satisfied") is None and board.press("satisfied") == "rating"
    assert device_list(hall) == {"T01": "51", "T02": "51", "M01": "51"}


def online(hall: Hall, device: str) -> bool | None:
    with hall.store() as store:
        state = store.conn.execute("SELECT state FROM devices WHERE id = ?", (device,)).fetchone()[0]
    return json.loads(state).get("online") if state else None
