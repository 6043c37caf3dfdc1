"""``kill -9`` of the terminal process (``haocha terminal run``) at random moments while a person
keeps pressing the simulated panel: every press ends up in the journal exactly once.

Level keys only, free mode without lockout: each press is one journal row (a rating), so the
journal's ``last_seq`` must equal the presses made, and the rows per level the presses per key.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulators.modbus_panel import ModbusPanelSim, SimPanel
from simulators.serial_panel import SerialPanelSim
from terminal.config import load
from terminal.journal import Journal, read_summary
from terminal.panel import Key, KeyKind
from terminal.panels.buttons import button_map
from tests.helpers_panels import wait_until, write_config

ROOT = Path(__file__).resolve().parent.parent
KEYS = [Key(KeyKind.LEVEL, "satisfied"), Key(KeyKind.LEVEL, "basic")]


def start_terminal(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "haocha", "terminal", "run", "--config", str(config)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Presser:
    """Presses the two level keys in turn, about every 10 ms, on its own thread."""

    def __init__(self, press: Callable[[Key], None]) -> None:
        self.press = press
        self.made: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.01):
            key = KEYS[i % 2]
            self.press(key)
            self.made[key.value] += 1
            i += 1

    def __enter__(self) -> Presser:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(params=["modbus", "serial"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim(kind: str, tmp_path: Path) -> Iterator[ModbusPanelSim | SerialPanelSim]:
    config = load(write_config(tmp_path, kind, "socket://127.0.0.1:1"))
    buttons = button_map(getattr(config, kind), config.reasons)
    panel: ModbusPanelSim | SerialPanelSim = (
        ModbusPanelSim([SimPanel(1, buttons)]) if kind == "modbus" else SerialPanelSim(buttons, repeat_s=0.05)
    )
    panel.start()
    try:
        yield panel
    finally:
        panel.stop()


@pytest.mark.slow
def test_kill_9_loses_and_duplicates_no_press(kind: str, sim: ModbusPanelSim | SerialPanelSim, tmp_path: Path) -> None:
    config = write_config(tmp_path, kind, sim.url)
    journal = tmp_path / "journal.db"
    Journal(journal, "T01").close()  # so that its summary can be read from the first moment
    rng = random.Random(7)
    proc = start_terminal(config)
    try:
        if isinstance(sim, ModbusPanelSim):
            wait_until(lambda: sim.panel().polled.is_set(), 30, "the first poll")
        with Presser(sim.press) as presser:
            wait_until(lambda: read_summary(journal)["last_seq"] >= 3, 30, "the first commits")
            for _ in range(6):
                target = read_summary(journal)["last_seq"] + rng.randint(1, 15)
                wait_until(lambda: read_summary(journal)["last_seq"] >= target, 30, "commits")  # noqa: B023
                proc.kill()
                proc.wait()
                proc = start_terminal(config)
        made = sum(presser.made.values())
        wait_until(lambda: read_summary(journal)["last_seq"] == made, 60, f"{made} rows")
        if isinstance(sim, ModbusPanelSim):
            reads = sim.panel().reads
            wait_until(lambda: sim.panel().reads >= reads + 20, 30, "more polls")
        else:
            wait_until(lambda: sim.acked == made and not sim.queue, 30, "every press acked")
        assert read_summary(journal)["last_seq"] == made
        with Journal(journal, "T01") as j:
            levels = collections.Counter(str(r.body["level"]) for r in j.rows_after(0, 100_000))
        assert levels == presser.made
    finally:
        proc.kill()
        proc.wait()
