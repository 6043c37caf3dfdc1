"""One terminal of the chaos hall: the real terminal program of its kind with its simulated panel,
pressed by simulated citizens until it is stopped.

    python -m simulators.chaos.terminal --config DIR/terminal.toml --rate R --seed S

It differs from ``haocha sim terminal`` in what a long fault run needs: it presses until SIGTERM
(in invited mode whenever an invitation lights the keys, however long that takes), and it takes
orders from a *control file* beside ``terminal.toml`` (:class:`Control`, re-read when it changes:
stop pressing, shift the wall clock as a jumping RTC or a bad NTP answer would). Every key press
is written to a *ledger* beside it (:class:`Ledger`) before and after it is pressed, so the bench
can tell a press the terminal confirmed from one cut short by ``kill -9``.

gpio, modbus and serial terminals run here in CPython; a micro terminal runs its firmware in
``micropython`` (a child in this process group, so a ``kill -9`` of the group is a power cut).
The firmware's clock cannot be shifted from outside: the control file's clock offset applies to
CPython terminals only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from protocol.levels import Level
from terminal.config import TerminalConfig, load
from terminal.panel import Key, KeyKind

_LOG = logging.getLogger(__name__)
CONTROL_NAME = "chaos-control.json"
LEDGER_NAME = "chaos-ledger"
#: Longest wait for a key press to be committed before it counts as unconfirmed.
COMMIT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Orders:
    press: bool = True
    wall_offset_s: float = 0.0


class Control:
    """The orders in ``chaos-control.json``: written by the bench (atomically), read here."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CONTROL_NAME
        self._seen: float | None = None
        self.orders = Orders()

    def write(self, orders: Orders) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(orders)))
        os.replace(tmp, self.path)

    def read(self) -> Orders:
        """The current orders (the file is parsed again only when it changed)."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return self.orders
        if mtime != self._seen:
            self._seen = mtime
            try:
                self.orders = Orders(**json.loads(self.path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                _LOG.warning("ignored a bad control file %s: %s", self.path, exc)
        return self.orders


@dataclasses.dataclass(frozen=True)
class Tally:
    """What a terminal's ledger says: key presses made, confirmed committed, confirmed not."""

    pressed: int
    committed: int
    refused: int


class Ledger:
    """One byte per step, appended unbuffered (a ``kill -9`` loses nothing written): ``p`` before
    a key is pressed, then ``c`` once its journal row is committed or ``n`` when the terminal
    said the press changed nothing."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LEDGER_NAME

    def note(self, step: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, step)
        finally:
            os.close(fd)

    def tally(self) -> Tally:
        data = self.path.read_bytes() if self.path.exists() else b""
        return Tally(data.count(b"p"), data.count(b"c"), data.count(b"n"))


class Citizens:
    """Seeded levels and reasons at a steady pace; a ledger entry around every key press."""

    def __init__(self, config: TerminalConfig, rate: float, seed: int, ledger: Ledger, stop: threading.Event) -> None:
        from simulators.terminal_sim import PressPlan

        self.config, self.ledger, self.stop = config, ledger, stop
        # A restarted terminal goes on with other draws than the run before it.
        self.plan = PressPlan(seed * 1_000_003 + ledger.tally().pressed, [], [])
        self.interval = 1.0 / rate
        self.next_at = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now < self.next_at:
            return False
        self.next_at = max(self.next_at, now) + self.interval  # no burst after waiting for an invitation
        return True

    def level(self, levels: list[str]) -> str:
        self.plan.levels = levels
        return self.plan.level()

    def reason(self, reasons: list[str]) -> str | None:
        self.plan.reasons = reasons
        return self.plan.reason()

    def pause(self, seconds: float = 0.05) -> None:
        self.stop.wait(seconds)


def run_cpython(config: TerminalConfig, control: Control, citizens: Citizens) -> None:
    """gpio, modbus or serial: the terminal in this process, keys pressed on its simulated panel."""
    from simulators.terminal_sim import simulated_panel, without_lockout
    from terminal.runner import Terminal

    sim = simulated_panel(without_lockout(config))
    try:
        with Terminal(sim.config, **sim.panel_options) as term:
            threading.Thread(target=term.run, args=(citizens.stop,), name="terminal", daemon=True).start()
            if not term.started.wait(60):
                raise RuntimeError("the terminal did not start within 60 s")
            levels = sorted(term.panel.levels, key=lambda lv: -Level(lv).score)
            reasons = sorted(term.panel.reasons & set(term.config.reasons))
            while not citizens.stop.is_set():
                orders = control.read()
                term.clock.wall_offset_s = orders.wall_offset_s
                if not (orders.press and term.evaluator.ready and citizens.due()):
                    citizens.pause()
                    continue
                level = citizens.level(levels)
                if _press(term, sim, Key(KeyKind.LEVEL, level), citizens) and Level(level).is_bad:
                    reason = citizens.reason(reasons)
                    if reason is not None:
                        _press(term, sim, Key(KeyKind.REASON, reason), citizens)
    finally:
        sim.close()


def _press(term: Any, sim: Any, key: Key, citizens: Citizens) -> bool:
    """Press ``key``; True once its row is committed (the ledger says which)."""
    before = term.journal.last_seq
    citizens.ledger.note(b"p")
    try:
        sim.press(key)
    except Exception as exc:  # a panel that is not polled yet, a simulator going down
        _LOG.warning("press of %s %s failed: %s", key.kind.value, key.value, exc)
        return False
    deadline = time.monotonic() + COMMIT_S
    while term.journal.last_seq <= before:
        if time.monotonic() > deadline or citizens.stop.is_set():
            return False
        time.sleep(0.005)
    citizens.ledger.note(b"c")
    return True


def run_micro(config: TerminalConfig, folder: Path, control: Control, citizens: Citizens) -> None:
    """micro: the firmware in ``micropython -X heapsize=64k`` with its simulated board."""
    from terminal.micro_host import MicroSimError, SimBoardProcess, write_sim_config

    levels = sorted(config.gpio.keys, key=lambda lv: -Level(lv).score)
    board_config = write_sim_config(config, folder, keep_lockout=False)
    board_config.chmod(0o600)  # secrets inside, as in terminal.toml
    with SimBoardProcess(board_config) as board:
        board.start(timeout_s=60)
        while not citizens.stop.is_set():
            ready = config.mode == "free" or board.lights == "ready"
            if not (control.read().press and ready and citizens.due()):
                citizens.pause()
                continue
            level = citizens.level(levels)
            try:
                kind = _press_board(board, f"press {level}", citizens.ledger)
                reason = citizens.reason(sorted(config.reasons)) if Level(level).is_bad else None
                if kind == "rating" and reason is not None and board.lights == "ask_reason":
                    _press_board(board, f"reason {reason}", citizens.ledger)
            except MicroSimError as exc:
                if board.proc is not None and board.proc.poll() is not None:
                    raise
                _LOG.warning("press on the simulated board failed: %s", exc)


def _press_board(board: Any, line: str, ledger: Ledger) -> str | None:
    ledger.note(b"p")
    _seq, kind = board.press(line, COMMIT_S)
    ledger.note(b"n" if kind is None else b"c")
    return str(kind) if kind is not None else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the terminal.toml installed on this terminal")
    parser.add_argument("--rate", type=float, default=1.0, help="presses a second (at most)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    config, folder = load(args.config), args.config.resolve().parent
    control, citizens = Control(folder), Citizens(config, args.rate, args.seed, Ledger(folder), stop)
    if config.kind == "micro":
        run_micro(config, folder, control, citizens)
    else:
        run_cpython(config, control, citizens)


if __name__ == "__main__":
    main()
