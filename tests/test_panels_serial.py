"""The serial panel driver through pyserial (``socket://``) against the simulated serial panel,
with a real Terminal: journal, evaluator, uplink. Golden bytes of the line protocol."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.panel_sims import simulated_panel
from simulators.serial_panel import SerialPanelSim
from terminal.clock import Clock
from terminal.config import TerminalConfig
from terminal.errors import JournalError, PanelError
from terminal.evaluator import Evaluator
from terminal.journal import Journal, read_summary
from terminal.panel import Key, KeyKind
from terminal.panels.buttons import button_map
from terminal.panels.lineproto import Frame, FrameParser, Msg, encode, frames_of
from terminal.panels.serialline import SerialPanel, is_newer
from terminal.runner import Terminal
from tests.helpers_panels import terminal_config, wait_until

SATISFIED = Key(KeyKind.LEVEL, "satisfied")
BASIC = Key(KeyKind.LEVEL, "basic")
BAD = Key(KeyKind.LEVEL, "dissatisfied")
COLD = Key(KeyKind.REASON, "cold")
FAST: dict[str, Any] = {"read_s": 0.01, "link_timeout_s": 1.0, "reconnect_s": 0.1, "refresh_s": 0.5}


def bodies(terminal: Terminal) -> list[dict[str, object]]:
    return [r.body for r in terminal.journal.rows_after(0, 10_000)]


def make_sim(config: TerminalConfig) -> SerialPanelSim:
    return SerialPanelSim(button_map(config.serial, config.reasons), heartbeat_s=0.2, repeat_s=0.05)


def with_port(config: TerminalConfig, url: str) -> TerminalConfig:
    return dataclasses.replace(config, serial=dataclasses.replace(config.serial, port=url))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[SerialPanelSim, Terminal]]:
    config = terminal_config(tmp_path, "serial", **FAST)
    sim = make_sim(config)
    terminal = Terminal(with_port(config, sim.start()))
    terminal.start()
    try:
        yield sim, terminal
    finally:
        terminal.close()
        sim.stop()


def test_golden_frames() -> None:
    assert encode(Msg.PRESS, 3, 17, 2) == b"$P,3,17,2*EBC6\r\n"
    assert encode(Msg.ACK, 3, 17) == b"$A,3,17*96BD\r\n"
    assert encode(Msg.LIGHTS, 1, 0, 0, 4, 1) == b"$L,1,0,0,4,1*A7F6\r\n"
    assert frames_of(b"$P,3,17,2*EBC6\r\n") == [Frame(Msg.PRESS, (3, 17, 2))]
    assert is_newer(1, 0xFFFF) and not is_newer(5, 5) and not is_newer(4, 5)


def test_parser_counts_and_skips_garbage() -> None:
    good = encode(Msg.HEARTBEAT, 1, 0)
    parser = FrameParser()
    frames = parser.feed(b"\x00\xffnoise" + good[:6])  # a frame cut short by noise...
    frames += parser.feed(b"$$$" + good + b"$P,1,2*0000\r\n" + b"$X,1*" + b"0000\r\n" + b"$" + b"9" * 100)
    frames += parser.feed(good.replace(b"H,1,0", b"H,1,1")[:-7] + good[-7:])  # bad checksum
    frames += parser.feed(b"$Q," + b"*" + b"\r\n" + good)
    assert frames == [Frame(Msg.HEARTBEAT, (1, 0))] * 2
    assert parser.counts == {"frames": 2, "garbage_bytes": 7 + 100, "framing": 6, "bad_checksum": 3, "malformed": 0}


def test_presses_become_journal_rows_with_reason(rig: tuple[SerialPanelSim, Terminal]) -> None:
    sim, terminal = rig
    sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 1)
    sim.press(BAD)
    wait_until(lambda: sim.lights["reason"], what="reason keys lit")
    sim.press(COLD)
    wait_until(lambda: terminal.journal.last_seq == 3)
    kinds = [(b["kind"], b.get("level"), b.get("reasons")) for b in bodies(terminal)]
    assert kinds == [("rating", "satisfied", None), ("rating", "dissatisfied", None), ("reason", None, ["cold"])]


def test_presses_while_unplugged_are_counted_once(rig: tuple[SerialPanelSim, Terminal]) -> None:
    sim, terminal = rig
    panel: SerialPanel = terminal.panel  # type: ignore[assignment]
    sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 1)
    sim.unplug()
    wait_until(lambda: panel.online is False, what="link down")
    assert terminal.uplink._panel["ok"] is False
    for _ in range(3):
        sim.press(BASIC)
    opens = panel.counts["opens"]
    wait_until(lambda: panel.counts["opens"] > opens, what="the driver reopening the port")
    assert panel.online is False  # the new connection hears nothing: link timeout keeps it down
    sim.replug()
    wait_until(lambda: terminal.journal.last_seq == 4 and sim.acked == 4, what="the 3 presses made meanwhile")
    assert panel.online and terminal.uplink._panel["ok"] is True
    frames = panel.parser.counts["frames"]
    wait_until(lambda: panel.parser.counts["frames"] >= frames + 5, what="more heartbeats")
    assert terminal.journal.last_seq == 4


def test_noise_and_bad_checksums_are_counted_and_skipped(rig: tuple[SerialPanelSim, Terminal]) -> None:
    sim, terminal = rig
    panel: SerialPanel = terminal.panel  # type: ignore[assignment]
    wait_until(lambda: panel.online)
    sim.inject_noise(500)
    sim.corrupt_next(3)
    sim.press(SATISFIED)
    sim.inject_noise(64)
    sim.press(BASIC)
    wait_until(lambda: terminal.journal.last_seq == 2 and sim.acked == 2)
    counts = panel.line_counts
    assert counts["bad_checksum"] + counts["framing"] + counts["malformed"] >= 3
    assert counts["garbage_bytes"] > 0
    assert sorted(str(b["level"]) for b in bodies(terminal)) == ["basic", "satisfied"]


def test_lost_acks_repeat_but_do_not_duplicate(rig: tuple[SerialPanelSim, Terminal]) -> None:
    sim, terminal = rig
    panel: SerialPanel = terminal.panel  # type: ignore[assignment]
    sim.drop_acks(3)
    sim.press(SATISFIED)
    wait_until(lambda: sim.acked == 1)
    assert terminal.journal.last_seq == 1
    assert panel.counts["duplicates"] == 3


def test_reboot_neither_creates_nor_loses_presses(rig: tuple[SerialPanelSim, Terminal]) -> None:
    sim, terminal = rig
    panel: SerialPanel = terminal.panel  # type: ignore[assignment]
    sim.press(SATISFIED)
    wait_until(lambda: terminal.journal.last_seq == 1)
    sim.unplug()
    sim.press(BASIC)
    sim.press(BASIC)
    sim.reboot()  # queued presses keep their old boot and ids; new ones restart at id 1
    sim.press(SATISFIED)
    sim.replug()
    wait_until(lambda: sim.acked == 4)
    assert [b["level"] for b in bodies(terminal)] == ["satisfied", "basic", "basic", "satisfied"]
    sim.reboot()
    frames = panel.parser.counts["frames"]
    wait_until(lambda: panel.parser.counts["frames"] >= frames + 5)
    assert terminal.journal.last_seq == 4


def test_lights_change_only_after_the_commit(rig: tuple[SerialPanelSim, Terminal]) -> None:
    sim, terminal = rig
    seen: list[int] = []
    journal = terminal.config.journal_path
    sim.on_lights = lambda lights: seen.append(read_summary(journal)["last_seq"]) if lights["thanks"] else None
    sim.press(SATISFIED)
    wait_until(lambda: seen, what="thank-you light")
    assert seen[0] >= 1
    wait_until(lambda: sim.beeps)


def test_refused_press_is_not_acked_and_comes_again(tmp_path: Path) -> None:
    config = terminal_config(tmp_path, "serial", **FAST)
    with make_sim(config) as sim:
        config = with_port(config, sim.url)
        journal = Journal(config.journal_path, config.device)
        panel = SerialPanel(config)
        evaluator = Evaluator(config, journal, panel, Clock("unsynced"))
        failures = [2]

        def on_key(key: Key) -> None:
            if failures[0]:
                failures[0] -= 1
                raise JournalError("disk full")
            evaluator.press(key)

        with panel:
            panel.start(on_key, lambda ok, detail: None)
            sim.press(SATISFIED)
            wait_until(lambda: sim.acked == 1)
            assert journal.last_seq == 1 and panel.counts["not_accepted"] == 2
        journal.close()


def test_terminal_restart_does_not_redeliver(tmp_path: Path) -> None:
    """The ack of a journaled press is lost and the terminal restarts: the repeat is a duplicate."""
    config = terminal_config(tmp_path, "serial", **FAST)
    with make_sim(config) as sim:
        config = with_port(config, sim.url)
        sim.drop_acks(1000)
        with Terminal(config) as terminal:
            terminal.start()
            sim.press(SATISFIED)
            wait_until(lambda: terminal.journal.last_seq == 1)
        sim.drop_acks(0)
        sim.press(BASIC)
        with Terminal(config) as terminal:
            terminal.start()
            wait_until(lambda: sim.acked == 2)
            assert [b["level"] for b in bodies(terminal)] == ["satisfied", "basic"]


@pytest.mark.parametrize("kind", ["modbus", "serial"])
def test_simulated_panel_for_sim_terminal(kind: str, tmp_path: Path) -> None:
    """What `haocha sim terminal` does: press, wait for the commit, press again."""
    sim = simulated_panel(terminal_config(tmp_path, kind))
    try:
        with Terminal(sim.config, **sim.panel_options) as terminal:
            terminal.start()
            for n, key in enumerate((SATISFIED, BAD, COLD), start=1):
                sim.press(key)
                wait_until(lambda: terminal.journal.last_seq == n, what=f"commit {n}")  # noqa: B023
    finally:
        sim.close()


def test_simulated_panel_refuses_other_kinds(tmp_path: Path) -> None:
    with pytest.raises(PanelError, match="gpio"):
        simulated_panel(terminal_config(tmp_path, "gpio"))
