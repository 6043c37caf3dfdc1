"""Modbus RTU evaluator panels that behave like the hardware, served by a real pymodbus server.

The server speaks RTU framing over a loopback TCP port (``socket://127.0.0.1:PORT``, bound to
port 0), its own asyncio loop on its own thread. Several panels sit on the one simulated bus at
their unit ids. Each :class:`SimPanel` keeps what the firmware of docs/panels.md keeps: press
counters that restart at 0 at power-up, a boot counter and the previous boot's final counters in
"FRAM", lights and buzzer driven by the terminal. Given a :class:`PanelMemory`, the FRAM is a
file that outlives the simulator: a new simulator on it is the same panel powered up again (same
serial number, next boot number, the last counters as the previous boot's). ``unplug`` makes a
panel stop answering (presses still count), ``reboot`` power-cycles it, ``wipe`` loses its
memory, ``corrupt_next``/``inject_noise`` damage answers on the line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from terminal.errors import PanelError
from terminal.panel import Key
from terminal.panels import modbusmap as m

from .panel_memory import PanelMemory

_LOG = logging.getLogger(__name__)
LightsHook = Callable[[dict[str, bool]], None]


class SimPanel:
    """One simulated evaluator panel. Thread-safe: tests press from their thread while the
    server's loop thread reads counters and writes lights."""

    def __init__(
        self,
        unit: int,
        buttons: Mapping[Key, int],
        nbuttons: int = 12,
        serial: int = 1,
        model: int = 1,
        firmware: int = 0x0102,
        memory: PanelMemory | None = None,
    ) -> None:
        """``serial`` is the serial number of a new panel; one that ``memory`` remembers keeps its own."""
        if not 1 <= nbuttons <= m.MAX_BUTTONS or max(buttons.values(), default=1) > nbuttons:
            raise PanelError(f"a panel of {nbuttons} buttons cannot carry buttons {sorted(buttons.values())}")
        self.unit = unit
        self.buttons = dict(buttons)
        self._lock = threading.Lock()
        self.memory = memory
        self.serial = serial
        self.boot = 1
        self.counters = [0] * m.MAX_BUTTONS
        self.prev_boot = 0
        self.prev = [0] * m.MAX_BUTTONS
        self.presses = 0  #: every press ever made on this panel, across reboots (and restarts, with memory)
        if memory is not None:
            self._power_up(memory)
        self.ident = [m.VENDOR, model, firmware, self.serial >> 16, self.serial & 0xFFFF, nbuttons, m.MAP_VERSION]
        self._lights = {"ready": False, "reason": False, "thanks": False}
        self._beep_reg = [0, 0]
        self.beeps: list[m.Beep] = []
        self.plugged = True
        #: Set once a terminal has read the counters: from then on every press is delivered (a
        #: terminal meeting a panel for the first time counts from the counters it first reads).
        self.polled = threading.Event()
        self.reads = 0  #: reads of the counters so far
        #: Called (on the server thread) after the terminal changed a light; tests check ordering.
        self.on_lights: LightsHook | None = None

    # -- what a person does -----------------------------------------------------------------
    def press(self, key: Key) -> None:
        self.press_button(self.buttons[key])

    def press_button(self, button: int) -> None:
        with self._lock:
            self.counters[button - 1] = (self.counters[button - 1] + 1) % m.WRAP
            self.presses += 1
            self._save()

    def reboot(self) -> None:
        """Power-cycle: the final counters go to FRAM, counters, lights and buzzer restart at 0."""
        with self._lock:
            self.prev_boot, self.prev = self.boot, list(self.counters)
            self.boot = (self.boot + 1) % m.WRAP
            self._forget()

    def wipe(self, boot: int | None = None) -> None:
        """Lose the memory (a firmware fault), or stand for a replaced unit with the same serial
        number: counters and the previous boot's registers back to 0, lights off; the boot
        counter stays as it is, or becomes ``boot``."""
        with self._lock:
            self.prev_boot, self.prev = 0, [0] * m.MAX_BUTTONS
            if boot is not None:
                self.boot = boot % m.WRAP
            self._forget()

    def _forget(self) -> None:
        """Counters, lights and buzzer back to 0 (caller holds the lock)."""
        self.counters = [0] * m.MAX_BUTTONS
        self._lights = dict.fromkeys(self._lights, False)
        self._beep_reg = [0, 0]
        self._save()

    def _power_up(self, memory: PanelMemory) -> None:
        """Continue the panel ``memory`` remembers, as at power-up; a new panel if there is none."""
        saved = memory.state
        try:
            serial, boot, counters, presses = saved["serial"], saved["boot"], saved["counters"], saved["presses"]
            prev = [int(c) % m.WRAP for c in counters][: m.MAX_BUTTONS]
            serial, boot, presses = int(serial) & 0xFFFFFFFF, int(boot) % m.WRAP, int(presses)
        except KeyError:
            pass  # a new panel
        except (TypeError, ValueError) as exc:
            _LOG.warning("simulated panel memory %s is not usable (%s): a new panel", memory.path, exc)
        else:
            self.serial, self.presses = serial, presses
            self.prev_boot, self.prev = boot, prev + [0] * (m.MAX_BUTTONS - len(prev))
            self.boot = (boot + 1) % m.WRAP
        self._save()

    def _save(self) -> None:
        """Write the FRAM to the memory file, if any (caller holds the lock, or is __init__)."""
        if self.memory is not None:
            self.memory.save(serial=self.serial, boot=self.boot, counters=self.counters, presses=self.presses)

    def unplug(self) -> None:
        """Stop answering on the bus (presses still count)."""
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    @property
    def lights(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._lights)

    # -- what the bus sees ------------------------------------------------------------------
    def input_registers(self) -> list[int]:
        with self._lock:
            regs = [0] * m.IR_END
            regs[: m.IDENT_COUNT] = self.ident
            regs[m.IR_BOOT] = self.boot
            regs[m.IR_COUNTERS : m.IR_COUNTERS + m.MAX_BUTTONS] = self.counters
            regs[m.IR_PREV_BOOT] = self.prev_boot
            regs[m.IR_PREV_COUNTERS : m.IR_END] = self.prev
            return regs

    def holding_registers(self) -> list[int]:
        with self._lock:
            return list(self._beep_reg)

    def write_coils(self, address: int, values: list[bool]) -> None:
        names = list(self._lights)
        with self._lock:
            for i, value in enumerate(values):
                if 0 <= address + i < len(names):
                    self._lights[names[address + i]] = bool(value)
            lights = dict(self._lights)
        hook = self.on_lights
        if hook is not None:
            hook(lights)

    def write_holding(self, address: int, values: list[int]) -> None:
        with self._lock:
            old_seq = self._beep_reg[m.HR_BEEP_SEQ]
            for i, value in enumerate(values):
                if 0 <= address + i < m.HR_COUNT:
                    self._beep_reg[address + i] = int(value)
            if self._beep_reg[m.HR_BEEP_SEQ] != old_seq and self._beep_reg[m.HR_BEEP_PATTERN]:
                self.beeps.append(m.Beep(self._beep_reg[m.HR_BEEP_PATTERN]))


class ModbusPanelSim:
    """A simulated RS-485 bus of panels behind a pymodbus RTU server. A context manager."""

    def __init__(self, panels: list[SimPanel]) -> None:
        if not panels or len({p.unit for p in panels}) != len(panels):
            raise PanelError("a simulated bus needs panels with distinct unit ids")
        self.panels = {p.unit: p for p in panels}
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None
        self._damage_lock = threading.Lock()
        self._corrupt = 0
        self._noise = 0
        self.damaged = 0  #: answers corrupted or prefixed with noise so far

    # -- API for tests, the demo and the CLI --------------------------------------------------
    def panel(self, unit: int | None = None) -> SimPanel:
        """The panel at ``unit`` (the only one if None)."""
        if unit is None:
            if len(self.panels) != 1:
                raise PanelError("several panels on this bus: name the unit")
            return next(iter(self.panels.values()))
        return self.panels[unit]

    def press(self, key: Key, unit: int | None = None) -> None:
        self.panel(unit).press(key)

    def unplug(self, unit: int | None = None) -> None:
        self.panel(unit).unplug()

    def replug(self, unit: int | None = None) -> None:
        self.panel(unit).replug()

    def reboot(self, unit: int | None = None) -> None:
        self.panel(unit).reboot()

    def wipe(self, boot: int | None = None, unit: int | None = None) -> None:
        self.panel(unit).wipe(boot)

    @property
    def lights(self) -> dict[str, bool]:
        return self.panel().lights

    def corrupt_next(self, frames: int) -> None:
        """Flip one bit in each of the next ``frames`` answers (their CRC no longer matches)."""
        with self._damage_lock:
            self._corrupt += frames

    def inject_noise(self, nbytes: int) -> None:
        """Put ``nbytes`` random bytes on the line before the next answer."""
        with self._damage_lock:
            self._noise += nbytes

    # -- server ---------------------------------------------------------------------------
    def start(self) -> str:
        """Listen on a free loopback port; return the ``socket://`` URL for ``[modbus] port``."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="modbus panel sim", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise PanelError(f"simulated Modbus panel did not start: {failure[:1]}")
        return self.url

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        devices = [self._device(p) for p in self.panels.values()]
        self._server = ModbusSerialServer(
            devices, framer=FramerType.RTU, port="socket://127.0.0.1:0", trace_packet=self._trace
        )
        await self._server.serve_forever(background=True)
        port = self._server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"socket://127.0.0.1:{port}"
        _LOG.info("simulated Modbus panels %s at %s", sorted(self.panels), self.url)

    def _device(self, panel: SimPanel) -> SimDevice:
        blocks = (
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=m.HR_COUNT, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=m.IR_END, values=0, datatype=DataType.REGISTERS)],
        )
        return SimDevice(panel.unit, simdata=blocks, action=functools.partial(_action, panel))

    def _trace(self, sending: bool, packet: bytes) -> bytes:
        """Runs on the server loop for every frame: silence unplugged panels, damage answers."""
        if not sending or not packet:
            return packet
        panel = self.panels.get(packet[0])
        if panel is None or not panel.plugged:
            return b""
        with self._damage_lock:
            corrupt, self._corrupt = self._corrupt > 0, max(0, self._corrupt - 1)
            noise, self._noise = self._noise, 0
        if corrupt:
            packet = packet[:-1] + bytes([packet[-1] ^ 0x01])
        if corrupt or noise:
            self.damaged += 1
        return os.urandom(noise) + packet

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout=5)
        except Exception:
            _LOG.exception("simulated Modbus server did not shut down cleanly")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    close = stop

    def __enter__(self) -> ModbusPanelSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _action(
    panel: SimPanel, function_code: int, start_address: int, address: int, count: int, registers: list[int], values: Any
) -> None:
    """pymodbus' SimDevice hook: serve reads from the panel and apply writes to it."""
    if function_code == 4:
        regs = panel.input_registers()
        for i in range(min(len(registers), len(regs) - start_address)):
            registers[i] = regs[start_address + i]
        if address <= m.IR_BOOT < address + count:
            panel.reads += 1
            panel.polled.set()
    elif function_code == 3:
        regs = panel.holding_registers()
        registers[: len(regs)] = regs
    elif function_code in (5, 15) and values:
        panel.write_coils(address, [bool(v) for v in values])
    elif function_code in (6, 16) and values:
        panel.write_holding(address, [int(v) for v in values])
