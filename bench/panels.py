"""Press-to-commit latency and the highest press rate each bus panel driver sustains without loss.

For the Modbus RTU and the serial driver, against their simulators over loopback ``socket://``,
with a real Terminal (journal with ``synchronous=FULL``, evaluator; no broker):

1. latency: single presses at random phases of the poll, from ``press()`` on the simulated panel
   to the journal commit (the evaluator's ``on_commit``); shortest, median, p99;
2. rate: open-loop presses at a rising rate for a short burst; a step passes when every press is
   committed within the drain time and the p99 latency stays under LATENCY_LIMIT_S (a step that
   fails is "behind": its presses are still on the panel, not lost). Prints figures only.

With ``socat`` installed the same runs go through a pty too (the drivers' tty code paths).
Run: ``python bench/panels.py`` (under 60 s).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.modbus_panel import ModbusPanelSim, SimPanel
from simulators.serial_panel import SerialPanelSim
from terminal.config import BrokerSettings, TerminalConfig, TimingSettings
from terminal.panel import Key, KeyKind
from terminal.panels.buttons import button_map
from terminal.runner import Terminal

KEY = Key(KeyKind.LEVEL, "satisfied")
SETTINGS: dict[str, dict[str, Any]] = {
    "modbus": {"poll_s": 0.01, "timeout_s": 0.5, "retries": 0, "baudrate": 115200, "parity": "N"},
    "serial": {"read_s": 0.01},
}
RATES = (10, 25, 50, 100, 200, 300, 400, 600, 800, 1200, 1600)
LATENCY_LIMIT_S = 0.1  #: p99 press→commit above this counts as "latency explodes" (SPEC: press→hub ack p99)
LATENCY_PRESSES = 100
BURST_S = 1.0
DRAIN_S = 3.0


class Rig:
    """A simulated panel and a Terminal driving it; commit times stamped by ``on_commit``."""

    def __init__(self, kind: str, folder: Path, pty: bool) -> None:
        config = TerminalConfig(
            device="B01", hall="H1", window="W01", key="ab" * 32, kind=kind, clock="unsynced",
            broker=BrokerSettings(port=1), timing=TimingSettings(lockout_s=0.0), base=folder,
        )  # fmt: skip
        settings = dataclasses.replace(getattr(config, kind), **SETTINGS[kind])
        buttons = button_map(settings, config.reasons)
        self.sim: ModbusPanelSim | SerialPanelSim = (
            ModbusPanelSim([SimPanel(1, buttons)]) if kind == "modbus" else SerialPanelSim(buttons)
        )
        url = self.sim.start()
        self.socat: subprocess.Popen[bytes] | None = None
        if pty:  # a real tty between driver and simulator: socat joins a pty to the TCP port
            link = folder / "tty"
            cmd = ["socat", f"PTY,link={link},raw,echo=0", f"TCP:{url.removeprefix('socket://')}"]
            self.socat = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while not link.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            url = str(link)
        settings = dataclasses.replace(settings, port=url)
        self.config = dataclasses.replace(config, **{kind: settings})
        self.terminal = Terminal(self.config)
        self.commits: list[float] = []
        self._cond = threading.Condition()
        self._forward = self.terminal.evaluator.on_commit
        self.terminal.evaluator.on_commit = self._committed
        self.terminal.start()
        if isinstance(self.sim, ModbusPanelSim):
            self.sim.panel().polled.wait(10)

    def _committed(self, seq: int) -> None:
        """The evaluator's commit callback (panel thread): stamp it, then the terminal's own."""
        with self._cond:
            self.commits.append(time.perf_counter())
            self._cond.notify_all()
        self._forward(seq)

    def wait_commits(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.commits) >= count, timeout)

    def close(self) -> None:
        self.terminal.close()
        if self.socat is not None:
            self.socat.terminate()
            self.socat.wait(timeout=10)
        self.sim.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(rig: Rig, rng: random.Random) -> list[float]:
    out = []
    for _ in range(LATENCY_PRESSES):
        time.sleep(rng.uniform(0, 0.02))
        done = len(rig.commits)
        t0 = time.perf_counter()
        rig.sim.press(KEY)
        if not rig.wait_commits(done + 1, 5):
            raise RuntimeError("a press was not committed within 5 s")
        out.append(rig.commits[done] - t0)
    return out


def burst(rig: Rig, rate: int) -> tuple[bool, float, float]:
    """(passed, p99 latency, achieved commits/s) of BURST_S seconds of presses at ``rate``/s."""
    start_count, presses = len(rig.commits), int(rate * BURST_S)
    pressed: list[float] = []
    t0 = time.perf_counter()
    for i in range(presses):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pressed.append(time.perf_counter())
        rig.sim.press(KEY)
    drained = rig.wait_commits(start_count + presses, DRAIN_S)
    commits = rig.commits[start_count : start_count + presses]
    lat = [c - p for p, c in zip(pressed, commits, strict=False)]
    p99 = percentile(lat, 0.99) if lat else float("inf")
    span = (commits[-1] - t0) if commits else 1.0
    return drained and p99 < LATENCY_LIMIT_S, p99, len(commits) / span


def ms(value: float) -> str:
    return f"{value * 1000:7.2f} ms"


def bench(kind: str, pty: bool, report: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        rig = Rig(kind, Path(folder), pty)
        kind = f"{kind}/{'pty' if pty else 'tcp'}"
        try:
            lat = latency(rig, random.Random(1))
            report(f"{kind:10} press→commit over {len(lat)} presses: shortest {ms(min(lat))}, "
                   f"median {ms(statistics.median(lat))}, p99 {ms(percentile(lat, 0.99))}")  # fmt: skip
            best = 0
            for rate in RATES:
                passed, p99, achieved = burst(rig, rate)
                report(f"{kind:10}   {rate:5d} presses/s for {BURST_S:g} s: "
                       f"{'ok    ' if passed else 'behind'} p99 {ms(p99)}, committed {achieved:7.1f}/s")  # fmt: skip
                if not passed:
                    break
                best = rate
            report(f"{kind:10} highest press rate sustained without loss, p99 under {ms(LATENCY_LIMIT_S).strip()}: "
                   f"{best} presses/s")  # fmt: skip
        finally:
            rig.close()


def main() -> None:
    print(f"bus panel drivers against their simulators; tcp: socket://, pty: a socat pty ({SETTINGS})")
    for pty in (False, True) if shutil.which("socat") else (False,):
        for kind in ("modbus", "serial"):
            bench(kind, pty, print)


if __name__ == "__main__":
    main()
