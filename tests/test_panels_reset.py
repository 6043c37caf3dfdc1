"""Panels that count from the start again without a (proper) reboot: memory wiped, a unit
replaced by one with the same serial number, a simulated panel restarted with its terminal.

The real drivers against the real simulators (pymodbus over ``socket://``, the serial line
simulator): presses made after the panel came back are journaled at once and exactly once, and
the driver says in one WARNING what it saw. Then ``kill -9`` in the middle of the first
deliveries after such a reset (``tests/panel_crash.py``), at both steps of the ledger's
intent/mark protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.modbus_panel import ModbusPanelSim, SimPanel
from simulators.panel_sims import simulated_panel
from simulators.serial_panel import SerialPanelSim
from terminal.config import TerminalConfig, load
from terminal.errors import PanelError
from terminal.journal import read_summary
from terminal.panel import Key, KeyKind
from terminal.panels.buttons import button_map
from terminal.runner import Terminal
from tests.helpers_panels import TABLES, terminal_config, wait_until, write_config

ROOT = Path(__file__).resolve().parent.parent
SATISFIED = Key(KeyKind.LEVEL, "satisfied")
BASIC = Key(KeyKind.LEVEL, "basic")
Sim = ModbusPanelSim | SerialPanelSim


def make_sim(kind: str, config: TerminalConfig) -> Sim:
    buttons = button_map(getattr(config, kind), config.reasons)
    if kind == "modbus":
        return ModbusPanelSim([SimPanel(1, buttons, serial=4242)])
    return SerialPanelSim(buttons, serial=4242, heartbeat_s=0.2, repeat_s=0.05)


def levels(terminal: Terminal) -> list[str]:
    return [str(r.body["level"]) for r in terminal.journal.rows_after(0, 10_000)]


def settle(kind: str, sim: Sim, terminal: Terminal) -> None:
    """Let the driver look at the panel a few more times (a late duplicate would show)."""
    if isinstance(sim, ModbusPanelSim):
        reads = sim.panel().reads
        wait_until(lambda: sim.panel().reads >= reads + 5, what="more polls")
    else:
        wait_until(lambda: not sim.queue, what="every press acked")
        frames = terminal.panel.parser.counts["frames"]  # type: ignore[attr-defined]
        wait_until(lambda: terminal.panel.parser.counts["frames"] >= frames + 3, what="more frames")  # type: ignore[attr-defined]


def warnings_from(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    module = "terminal.panels.modbus" if kind == "modbus" else "terminal.panels.serialline"
    return [r.getMessage() for r in caplog.records if r.name == module and r.levelno >= logging.WARNING]


@pytest.fixture(params=["modbus", "serial"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Sim, Terminal]]:
    kind = str(request.param)
    config = terminal_config(tmp_path, kind, **TABLES[kind])
    sim = make_sim(kind, config)
    url = sim.start()
    terminal = Terminal(dataclasses.replace(config, **{kind: dataclasses.replace(getattr(config, kind), port=url)}))
    terminal.start()
    wait_until(lambda: terminal.panel.online, what="panel online")  # type: ignore[attr-defined]
    try:
        yield kind, sim, terminal
    finally:
        terminal.close()
        sim.stop()


def test_wiped_panel_is_a_new_baseline_at_once(
    rig: tuple[str, Sim, Terminal], caplog: pytest.LogCaptureFixture
) -> None:
    """Same serial number, same boot number, counters / press ids from zero."""
    kind, sim, terminal = rig
    for key in (SATISFIED, SATISFIED, SATISFIED, BASIC):
        sim.press(key)
    wait_until(lambda: terminal.journal.last_seq == 4, what="4 rows")
    settle(kind, sim, terminal)
    caplog.clear()
    sim.unplug()
    wait_until(lambda: terminal.panel.online is False, what="link down")  # type: ignore[attr-defined]
    sim.wipe()
    for key in (SATISFIED, BASIC, BASIC):  # one count below its mark, one above
        sim.press(key)
    sim.replug()
    wait_until(lambda: terminal.journal.last_seq == 7, what="the 3 presses made after the wipe")
    settle(kind, sim, terminal)
    assert terminal.journal.last_seq == 7
    assert sorted(levels(terminal)[4:]) == ["basic", "basic", "satisfied"]
    seen = warnings_from(caplog, kind)
    assert len(seen) == 1 and "went back" in seen[0] and "without a reboot" in seen[0], seen


def test_replaced_unit_with_boot_back_to_1(rig: tuple[str, Sim, Terminal], caplog: pytest.LogCaptureFixture) -> None:
    """A unit with the same serial number, its boot counter at 1 where the old one was at 3."""
    kind, sim, terminal = rig
    for _ in range(2):
        sim.reboot()
    sim.press(SATISFIED)
    sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 2, what="2 rows")
    settle(kind, sim, terminal)
    caplog.clear()
    sim.unplug()
    wait_until(lambda: terminal.panel.online is False, what="link down")  # type: ignore[attr-defined]
    sim.wipe(boot=1)
    sim.press(BASIC)
    sim.press(SATISFIED)
    sim.replug()
    wait_until(lambda: terminal.journal.last_seq == 4, what="the 2 presses of the replaced unit")
    settle(kind, sim, terminal)
    assert terminal.journal.last_seq == 4
    assert sorted(levels(terminal)[2:]) == ["basic", "satisfied"]
    seen = warnings_from(caplog, kind)
    assert len(seen) == 1 and "went back from 3 to 1" in seen[0], seen  # one WARNING, no ERROR of lost boots
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("kind", ["modbus", "serial"])
def test_kill_9_during_the_first_deliveries_after_a_wipe(kind: str, tmp_path: Path) -> None:
    """The panel is wiped while the terminal is down, then presses are made; the terminal dies
    after the first journal commit (intent left, mark not moved), then before the next commit
    (intent left, nothing journaled); a third start delivers the rest: each press exactly once."""
    config_path = write_config(tmp_path, kind, "socket://127.0.0.1:1")
    sim = make_sim(kind, load(config_path))
    with sim:
        config_path = write_config(tmp_path, kind, sim.url)
        config = load(config_path)
        with Terminal(config) as terminal:
            terminal.start()
            wait_until(lambda: terminal.panel.online, what="panel online")  # type: ignore[attr-defined]
            for key in (SATISFIED, SATISFIED, SATISFIED, BASIC):
                sim.press(key)
            wait_until(lambda: terminal.journal.last_seq == 4, what="4 rows")
            settle(kind, sim, terminal)
        sim.wipe()
        made = [SATISFIED, BASIC, BASIC]  # satisfied's count goes below its mark, basic's above
        for key in made:
            sim.press(key)
        for step, rows in (("after-commit", 5), ("before-commit", 5)):
            crash = subprocess.run(
                [sys.executable, "-m", "tests.panel_crash", str(config_path), step],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert crash.returncode == 9, crash.stderr
            assert read_summary(config.journal_path)["last_seq"] == rows, step
        with Terminal(config) as terminal:
            terminal.start()
            wait_until(lambda: terminal.journal.last_seq == 7, what="the rest of the presses")
            settle(kind, sim, terminal)
            assert terminal.journal.last_seq == 7
            assert sorted(levels(terminal)[4:]) == sorted(k.value for k in made)


def test_simulated_panel_keeps_its_identity_and_counts_its_boots(tmp_path: Path) -> None:
    """`sim terminal`'s panel is the device's own: a second one on the same folder is the same
    unit powered up again (its state file beside terminal.toml), and never two at once."""
    journal_rows = 0
    identities: list[tuple[Any, ...]] = []
    for _run in range(2):
        sim = simulated_panel(terminal_config(tmp_path, "modbus", **TABLES["modbus"]))
        try:
            with pytest.raises(PanelError, match="in use"):
                simulated_panel(terminal_config(tmp_path, "modbus"))
            panel = sim.sim.panel()  # type: ignore[attr-defined]
            identities.append((panel.serial, panel.boot))
            with Terminal(sim.config) as terminal:
                terminal.start()
                sim.press(SATISFIED)
                sim.press(BASIC)
                journal_rows += 2
                wait_until(lambda: terminal.journal.last_seq == journal_rows, what="2 more rows")  # noqa: B023
                polls = terminal.panel.counts["polls"]  # type: ignore[attr-defined]
                wait_until(lambda: terminal.panel.counts["polls"] >= polls + 5)  # type: ignore[attr-defined]  # noqa: B023
                counts = dict(terminal.panel.counts)  # type: ignore[attr-defined]
        finally:
            sim.close()
    (serial, boot), (serial_again, boot_again) = identities
    assert serial_again == serial and boot_again == boot + 1
    assert counts["reboots"] == 1 and counts["resets"] == 0  # the driver saw a reboot, not a wipe
    assert journal_rows == 4
