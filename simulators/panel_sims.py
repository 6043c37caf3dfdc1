"""A simulated panel for a terminal's config, whatever its kind: what ``haocha sim terminal`` and
``haocha demo`` press.

:func:`simulated_panel` starts the simulator that ``config.kind`` needs and returns it with the
config rewritten to reach it (the ``socket://`` URL of a free loopback port) and the extra
options ``Terminal(config, **panel_options)`` needs.

The panel is the device's own, as hardware is: its FRAM (serial number, boot counter, counters or
queue) lives in ``sim-panel.json`` beside ``terminal.toml``, so a ``sim terminal`` run after
another (after a ``kill -9`` too) meets the same panel, powered up again with the next boot
number. A lock keeps two runs from simulating the same device's panel at once; ports are free
loopback ports, never shared.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Protocol

from terminal.config import TerminalConfig
from terminal.errors import PanelError
from terminal.panel import Key
from terminal.panels.buttons import button_map

from .modbus_panel import ModbusPanelSim, SimPanel
from .panel_memory import PanelMemory
from .serial_panel import SerialPanelSim

#: How long ``press`` waits for a terminal's first poll of a simulated Modbus panel.
FIRST_POLL_S = 30.0
#: The simulated panel's FRAM, beside ``terminal.toml`` (relative paths resolve against its folder).
MEMORY_FILE = "sim-panel.json"


def panel_memory(config: TerminalConfig) -> PanelMemory:
    """The FRAM of ``config``'s simulated panel; PanelError if another run holds it."""
    return PanelMemory(config.resolve(Path(MEMORY_FILE)), config.kind)


def new_serial_number() -> int:
    """A serial number for a panel met for the first time (a factory would print one on it)."""
    return random.randrange(1, 1 << 32)


class SimulatedPanel(Protocol):
    config: TerminalConfig  #: config rewritten to reach the simulated panel
    panel_options: dict[str, Any]  #: extra keyword arguments for ``Terminal(config, **panel_options)``

    def press(self, key: Key) -> None: ...

    def close(self) -> None: ...


class SimulatedModbusPanel:
    """One panel at the config's unit id on its own simulated bus.

    A terminal meeting a panel for the first time counts from the counters it first reads, so
    ``press`` waits (up to FIRST_POLL_S) until the terminal has polled the panel once.
    """

    def __init__(self, config: TerminalConfig) -> None:
        settings = config.modbus
        self.memory = panel_memory(config)
        try:
            panel = SimPanel(
                settings.unit, button_map(settings, config.reasons), serial=new_serial_number(), memory=self.memory
            )
            self.sim = ModbusPanelSim([panel])
            url = self.sim.start()
        except BaseException:
            self.memory.close()
            raise
        # Over socket:// pymodbus reads answers byte by byte: allow it the time of a long answer.
        settings = dataclasses.replace(settings, port=url, timeout_s=max(settings.timeout_s, 0.5))
        self.config = dataclasses.replace(config, modbus=settings)
        self.panel_options: dict[str, Any] = {}

    def press(self, key: Key) -> None:
        panel = self.sim.panel()
        if not panel.polled.wait(FIRST_POLL_S):
            raise PanelError(f"no terminal polled the simulated panel at {self.sim.url} within {FIRST_POLL_S:g} s")
        panel.press(key)

    def close(self) -> None:
        self.sim.stop()
        self.memory.close()


class SimulatedSerialPanel:
    def __init__(self, config: TerminalConfig) -> None:
        self.memory = panel_memory(config)
        try:
            buttons = button_map(config.serial, config.reasons)
            self.sim = SerialPanelSim(buttons, serial=new_serial_number(), memory=self.memory)
            url = self.sim.start()
        except BaseException:
            self.memory.close()
            raise
        self.config = dataclasses.replace(config, serial=dataclasses.replace(config.serial, port=url))
        self.panel_options: dict[str, Any] = {}

    def press(self, key: Key) -> None:
        self.sim.press(key)

    def close(self) -> None:
        self.sim.stop()
        self.memory.close()


def simulated_panel(config: TerminalConfig) -> SimulatedPanel:
    """Start the simulated panel for ``config.kind`` ("modbus" or "serial")."""
    if config.kind == "modbus":
        return SimulatedModbusPanel(config)
    if config.kind == "serial":
        return SimulatedSerialPanel(config)
    raise PanelError(f"no simulated panel for kind {config.kind!r} (modbus and serial have one)")
