"""The Modbus RTU panel driver through pymodbus' RTU client against the simulated panels' pymodbus
server (RTU framing over loopback TCP), with a real Terminal: journal, evaluator, uplink."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from protocol.config import ConfigError
from simulators.modbus_panel import ModbusPanelSim, SimPanel
from terminal.clock import Clock
from terminal.config import ModbusSettings, TerminalConfig, load, panel_table
from terminal.errors import JournalError
from terminal.evaluator import Evaluator
from terminal.journal import Journal, read_summary
from terminal.panel import Key, KeyKind
from terminal.panels.buttons import button_map
from terminal.panels.ledger import Mark, PressLedger
from terminal.panels.modbus import ModbusBus, ModbusPanel
from terminal.runner import Terminal
from tests.helpers_panels import terminal_config, wait_until

SATISFIED = Key(KeyKind.LEVEL, "satisfied")
BASIC = Key(KeyKind.LEVEL, "basic")
FAST: dict[str, Any] = {"poll_s": 0.01, "timeout_s": 0.5, "retries": 0, "reconnect_s": 0.2, "baudrate": 115200}


def bodies(terminal: Terminal) -> list[dict[str, object]]:
    return [r.body for r in terminal.journal.rows_after(0, 10_000)]


def make_sim(config: TerminalConfig, *units: int) -> ModbusPanelSim:
    buttons = button_map(config.modbus, config.reasons)
    return ModbusPanelSim([SimPanel(u, buttons, serial=1000 + u) for u in units or (config.modbus.unit,)])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[ModbusPanelSim, Terminal]]:
    config = terminal_config(tmp_path, "modbus", **FAST)
    sim = make_sim(config)
    url = sim.start()
    config = dataclasses.replace(config, modbus=dataclasses.replace(config.modbus, port=url))
    terminal = Terminal(config)
    terminal.start()
    wait_until(lambda: terminal.panel.online, what="panel online")  # type: ignore[attr-defined]
    try:
        yield sim, terminal
    finally:
        terminal.close()
        sim.stop()


def test_presses_become_journal_rows(rig: tuple[ModbusPanelSim, Terminal]) -> None:
    sim, terminal = rig
    for key in (SATISFIED, BASIC, SATISFIED):
        sim.press(key)
    wait_until(lambda: terminal.journal.last_seq == 3, what="3 rows")
    assert sorted(str(b["level"]) for b in bodies(terminal)) == ["basic", "satisfied", "satisfied"]


def test_presses_while_unplugged_are_counted_once(
    rig: tuple[ModbusPanelSim, Terminal], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="terminal")
    sim, terminal = rig
    panel: ModbusPanel = terminal.panel  # type: ignore[assignment]
    sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 1)
    sim.unplug()
    wait_until(lambda: panel.online is False, what="link down")
    assert terminal.uplink._panel["ok"] is False  # the retained state carries it
    for _ in range(3):
        sim.press(BASIC)
    sim.replug()
    wait_until(lambda: panel.online, what="link back")
    wait_until(lambda: terminal.journal.last_seq == 4, what="the 3 presses made while unplugged")
    polls = panel.counts["polls"]
    wait_until(lambda: panel.counts["polls"] >= polls + 5, what="more polls")
    assert terminal.journal.last_seq == 4
    assert terminal.uplink._panel["ok"] is True
    # one line for the link going down, not pymodbus' hex dump at every failed poll
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")]
    assert len([r for r in caplog.records if r.name == "terminal.panels.link" and r.levelno == logging.WARNING]) == 1


def test_reboot_neither_creates_nor_loses_presses(rig: tuple[ModbusPanelSim, Terminal]) -> None:
    sim, terminal = rig
    panel: ModbusPanel = terminal.panel  # type: ignore[assignment]
    for _ in range(5):
        sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 5)
    sim.reboot()  # counters back to 0: no new presses
    wait_until(lambda: panel.counts["reboots"] == 1, what="reboot seen")
    polls = panel.counts["polls"]
    wait_until(lambda: panel.counts["polls"] >= polls + 5)
    assert terminal.journal.last_seq == 5
    sim.unplug()  # presses the terminal has not polled yet, then a reboot, then more presses
    wait_until(lambda: panel.online is False)
    sim.press(BASIC)
    sim.press(BASIC)
    sim.reboot()
    sim.press(SATISFIED)
    sim.replug()
    wait_until(lambda: terminal.journal.last_seq == 8, what="2 presses of the old boot and 1 of the new")
    polls = panel.counts["polls"]
    wait_until(lambda: panel.counts["polls"] >= polls + 5)
    assert terminal.journal.last_seq == 8
    assert [b["level"] for b in bodies(terminal)][5:] == ["basic", "basic", "satisfied"]


def test_lights_change_only_after_the_commit(rig: tuple[ModbusPanelSim, Terminal]) -> None:
    sim, terminal = rig
    seen: list[int] = []
    journal = terminal.config.journal_path

    def on_lights(lights: dict[str, bool]) -> None:
        if lights["thanks"]:
            seen.append(read_summary(journal)["last_seq"])

    sim.panel().on_lights = on_lights
    sim.press(SATISFIED)
    wait_until(lambda: seen, what="thank-you light")
    assert seen[0] >= 1
    wait_until(lambda: sim.panel().beeps, what="beep")


def test_damaged_answers_are_retried_and_presses_delivered_once(rig: tuple[ModbusPanelSim, Terminal]) -> None:
    sim, terminal = rig
    sim.corrupt_next(3)
    sim.inject_noise(7)
    sim.press(SATISFIED)
    sim.press(BASIC)
    wait_until(lambda: terminal.journal.last_seq == 2)
    wait_until(lambda: sim.damaged >= 2, what="damage on the line")
    panel: ModbusPanel = terminal.panel  # type: ignore[assignment]
    polls = panel.counts["polls"]
    wait_until(lambda: panel.counts["polls"] >= polls + 5)
    assert terminal.journal.last_seq == 2


def test_terminal_restart_resumes_from_its_marks(tmp_path: Path) -> None:
    config = terminal_config(tmp_path, "modbus", **FAST)
    with make_sim(config) as sim:
        config = dataclasses.replace(config, modbus=dataclasses.replace(config.modbus, port=sim.url))
        with Terminal(config) as terminal:
            terminal.start()
            wait_until(lambda: terminal.panel.online)  # type: ignore[attr-defined]
            sim.press(SATISFIED)
            wait_until(lambda: terminal.journal.last_seq == 1)
        sim.press(BASIC)  # while the terminal is down
        sim.press(BASIC)
        with Terminal(config) as terminal:
            terminal.start()
            wait_until(lambda: terminal.journal.last_seq == 3, what="presses made while the terminal was down")
            panel: ModbusPanel = terminal.panel  # type: ignore[assignment]
            polls = panel.counts["polls"]
            wait_until(lambda: panel.counts["polls"] >= polls + 5)
            assert terminal.journal.last_seq == 3


def test_refused_press_stays_on_the_panel(tmp_path: Path) -> None:
    """on_key raises JournalError: the mark does not move, no light, the press comes again."""
    config = terminal_config(tmp_path, "modbus", **FAST)
    with make_sim(config) as sim:
        config = dataclasses.replace(config, modbus=dataclasses.replace(config.modbus, port=sim.url))
        journal = Journal(config.journal_path, config.device)
        panel = ModbusPanel(config)
        evaluator = Evaluator(config, journal, panel, Clock("unsynced"))
        failures = [2]

        def on_key(key: Key) -> None:
            if failures[0]:
                failures[0] -= 1
                raise JournalError("disk full")
            evaluator.press(key)

        lit_at: list[int] = []
        sim.panel().on_lights = lambda lights: lit_at.append(journal.last_seq) if lights["thanks"] else None
        with panel:
            panel.start(on_key, lambda ok, detail: None)
            wait_until(lambda: panel.online)
            sim.press(SATISFIED)
            wait_until(lambda: journal.last_seq == 1)
            assert panel.counts["not_accepted"] == 2
            wait_until(lambda: lit_at)
            assert lit_at[0] == 1
            polls = panel.counts["polls"]
            wait_until(lambda: panel.counts["polls"] >= polls + 5)
            assert journal.last_seq == 1
        journal.close()


def test_several_panels_on_one_bus(tmp_path: Path) -> None:
    configs = [
        terminal_config(tmp_path / f"T{u}", "modbus", device=f"T{u}", window=f"W{u}", unit=u, **FAST) for u in (1, 2)
    ]
    with make_sim(configs[0], 1, 2) as sim:
        configs = [dataclasses.replace(c, modbus=dataclasses.replace(c.modbus, port=sim.url)) for c in configs]
        with (
            ModbusBus(configs[0].modbus) as bus,
            Terminal(configs[0], bus=bus) as t1,
            Terminal(configs[1], bus=bus) as t2,
        ):
            t1.start()
            t2.start()
            wait_until(lambda: t1.panel.online and t2.panel.online)  # type: ignore[attr-defined]
            sim.press(SATISFIED, unit=1)
            sim.press(BASIC, unit=2)
            sim.press(BASIC, unit=2)
            wait_until(lambda: t1.journal.last_seq == 1 and t2.journal.last_seq == 2)
            sim.unplug(unit=2)
            wait_until(lambda: t2.panel.online is False)  # type: ignore[attr-defined]
            sim.press(SATISFIED, unit=2)
            sim.press(BASIC, unit=1)
            wait_until(lambda: t1.journal.last_seq == 2, what="unit 1 keeps working while unit 2 is silent")
            sim.replug(unit=2)
            wait_until(lambda: t2.journal.last_seq == 3)
            assert [b["level"] for b in bodies(t2)] == ["basic", "basic", "satisfied"]
            assert [b["level"] for b in bodies(t1)] == ["satisfied", "basic"]


def test_ledger_settles_an_intent_left_by_a_crash(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", "T01")
    ledger = PressLedger(tmp_path / "state.db", journal.path)
    ledger.set("a", Mark(1, 4))
    ledger.set("b", Mark(1, 9))
    db = ledger._conn()
    # As if killed after on_key committed a's press 5, and before b's press 10 was committed:
    db.execute("INSERT INTO intent VALUES ('a', 1, 5, 0)")
    journal.append({"kind": "rating", "level": "basic", "trigger": "free", "window": "W01", "boot": "b"})
    db.execute("INSERT INTO intent VALUES ('b', 1, 10, 1)")
    ledger.close()
    with PressLedger(tmp_path / "state.db", journal.path) as again:
        assert again.get("a") == Mark(1, 5)
        assert again.get("b") == Mark(1, 9)
    journal.close()


def test_config_tables(tmp_path: Path) -> None:
    path = tmp_path / "terminal.toml"
    path.write_text(
        'device = "T01"\nhall = "H1"\nwindow = "W01"\nkey = "' + "ab" * 32 + '"\nkind = "modbus"\n'
        '[modbus]\nport = "socket://127.0.0.1:5020"\nunit = 7\npoll_s = 0.1\n'
        "keys = {satisfied = 1, basic = 2, dissatisfied = 3}\nreason_keys = {}\nstaff_key = 4\n"
    )
    config = load(path)
    assert config.modbus.unit == 7 and config.resolve(config.modbus.state) == tmp_path / "panel-state.db"
    with pytest.raises(ConfigError, match="button 1"):
        ModbusSettings(keys={"satisfied": 1, "basic": 2, "dissatisfied": 3}, reason_keys={"cold": 1})
    path.write_text(path.read_text().replace("unit = 7", "unit = 300"))
    with pytest.raises(ConfigError, match="unit"):
        load(path)


def test_counter_going_back_without_reboot_is_no_flood_of_presses(rig: tuple[ModbusPanelSim, Terminal]) -> None:
    sim, terminal = rig
    panel: ModbusPanel = terminal.panel  # type: ignore[assignment]
    for _ in range(3):
        sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 3)
    with sim.panel()._lock:  # a firmware fault: the counter restarts, the boot counter does not
        sim.panel().counters[1] = 0
    reads = sim.panel().reads
    wait_until(lambda: sim.panel().reads >= reads + 5)
    sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 4)
    polls = panel.counts["polls"]
    wait_until(lambda: panel.counts["polls"] >= polls + 5)
    assert terminal.journal.last_seq == 4


@pytest.mark.parametrize("kind", ["modbus", "serial", "gpio"])
def test_panel_table_round_trips(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "terminal.toml"
    data = {"device": "T01", "hall": "H1", "window": "W01", "key": "ab" * 32, "kind": kind, kind: panel_table(kind)}
    path.write_text(tomli_w.dumps(data))
    config = load(path)
    assert getattr(config, kind) == getattr(TerminalConfig(device="T01", hall="H1", window="W01", key="ab" * 32), kind)
