"""The drivers on a real tty: socat joins a pty to the simulator's TCP port, so pymodbus and
pyserial take their tty code paths (``in_waiting`` counts bytes, termios settings apply)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.modbus_panel import ModbusPanelSim, SimPanel
from simulators.serial_panel import SerialPanelSim
from terminal.panel import Key, KeyKind
from terminal.panels.buttons import button_map
from terminal.runner import Terminal
from tests.helpers_panels import terminal_config, wait_until

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
KEYS = [Key(KeyKind.LEVEL, "satisfied"), Key(KeyKind.LEVEL, "basic"), Key(KeyKind.LEVEL, "very_satisfied")]
TABLES: dict[str, dict[str, Any]] = {
    "modbus": {"poll_s": 0.02, "timeout_s": 0.5, "retries": 1, "baudrate": 115200, "parity": "N"},
    "serial": {"read_s": 0.01, "baudrate": 115200},
}


@pytest.fixture
def tty_to(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def bridge(url: str) -> str:
        link = tmp_path / f"tty{len(procs)}"
        host_port = url.removeprefix("socket://")
        cmd = ["socat", f"PTY,link={link},raw,echo=0", f"TCP:{host_port}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(link.exists, 10, "socat's pty")
        return str(link)

    yield bridge
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("kind", ["modbus", "serial"])
def test_presses_through_a_pty(kind: str, tmp_path: Path, tty_to: Any) -> None:
    config = terminal_config(tmp_path, kind, **TABLES[kind])
    buttons = button_map(getattr(config, kind), config.reasons)
    sim: ModbusPanelSim | SerialPanelSim = (
        ModbusPanelSim([SimPanel(1, buttons)]) if kind == "modbus" else SerialPanelSim(buttons)
    )
    with sim:
        settings = dataclasses.replace(getattr(config, kind), port=tty_to(sim.url))
        with Terminal(dataclasses.replace(config, **{kind: settings})) as terminal:
            terminal.start()
            wait_until(lambda: terminal.panel.online, what="panel online")  # type: ignore[attr-defined]
            if isinstance(sim, SerialPanelSim):
                sim.inject_noise(100)
            for key in KEYS * 3:
                sim.press(key)
            wait_until(lambda: terminal.journal.last_seq == 9, what="9 commits")
            wait_until(lambda: sim.lights["thanks"], what="thank-you light")
            levels = sorted(str(r.body["level"]) for r in terminal.journal.rows_after(0, 100))
            assert levels == sorted(k.value for k in KEYS * 3)
