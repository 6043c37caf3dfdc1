"""Evaluator panels on an RS-485 bus speaking Modbus RTU, through pymodbus' serial RTU client.

Panels count presses per button (16-bit counters that only grow), so a slow or missed poll never
loses a press: the driver delivers the difference between the panel's counter and the last value
it journaled (kept by :class:`~terminal.panels.ledger.PressLedger`), one press at a time, and
advances its mark only after ``on_key`` returned. A boot counter tells a panel reboot (counters
back at 0) from presses; the panel keeps the final counters of its previous boot, so presses
made just before a reboot are delivered too. A panel that counts from 0 again without a reboot
(wiped memory, a replaced unit with the same serial number: a counter or the boot counter gone
back) gets a new baseline at once. Register map: ``modbusmap`` and docs/panels.md.

One :class:`ModbusBus` (one client, one lock, one poll thread) serves every panel on a bus; each
:class:`ModbusPanel` is one window's panel at its unit id. The common case, one panel per
terminal, makes its own bus. The poll thread is the only one that talks on the wire: ``show``
records the wanted lights and wakes it, so a panel that stopped answering never blocks the
evaluator.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from ..config import ModbusSettings, TerminalConfig
from ..errors import PanelError
from ..panel import Key, KeyHandler, KeyKind, PanelSignal, StatusHandler
from . import modbusmap as m
from .buttons import button_map, delivery_order
from .ledger import Mark, NotAccepted, PressLedger
from .lights import PanelLights
from .link import LinkState

_LOG = logging.getLogger(__name__)
# pymodbus logs every failed poll of a silent unit at ERROR with a hex dump, every reconnect_s;
# LinkState reports the link going down and up once each instead. Left alone if configured.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _behind(count: int, mark: int) -> bool:
    """16-bit counters wrap: a value below ``mark`` by up to half the range went back (no panel
    counts 32,768 presses between two polls)."""
    return (count - mark) % m.WRAP >= m.WRAP // 2


def _counts_again(boot: int, counters: list[int], marks: dict[int, Mark | None]) -> bool:
    """Whether the panel no longer continues the marks: another boot, or a counter gone back."""
    return any(mk is not None and (mk.boot != boot or _behind(counters[b - 1], mk.count)) for b, mk in marks.items())


@dataclass(frozen=True, slots=True)
class Identity:
    vendor: int
    model: int
    firmware: int
    serial: int
    buttons: int

    def __str__(self) -> str:
        fw = f"{self.firmware >> 8}.{self.firmware & 0xFF}"
        return f"model {self.model} firmware {fw} serial {self.serial} ({self.buttons} buttons)"


class RtuClient(ModbusSerialClient):
    """pymodbus' serial RTU client, reading promptly from ``socket://`` ports too.

    The stock ``recv`` sizes its reads by ``in_waiting`` and sleeps between checks; a pyserial
    ``socket://`` port reports only 0 or 1 bytes waiting, so an answer of 31 bytes took ~30 reads
    and sleeps (30 ms and more per poll). For ``socket://`` this waits for the first byte (up to
    the timeout) and takes what has arrived; the client's framer asks again until the frame is
    whole. Real ttys keep pymodbus' own path.
    """

    def recv(self, size: int | None) -> bytes:
        if size is not None or not self.comm_params.host.startswith("socket://"):
            return bytes(super().recv(size))
        if not self.socket:
            raise ConnectionException(str(self))
        try:
            data = bytes(self.socket.read(1))
            while data and self.socket.in_waiting:
                data += self.socket.read(1)
            return data
        except OSError:
            self.close()
            raise ConnectionException(str(self)) from None


class ModbusBus:
    """One RTU client on one port, one lock, one poll thread, for the panels attached to it.

    A context manager; ``close()`` is idempotent. Port, timing and retries come from the
    ``[modbus]`` table of the first window's config.
    """

    def __init__(self, settings: ModbusSettings) -> None:
        self.settings = settings
        self.client = RtuClient(
            settings.port,
            framer=FramerType.RTU,
            baudrate=settings.baudrate,
            parity=settings.parity,
            stopbits=settings.stopbits,
            timeout=settings.timeout_s,
            retries=settings.retries,
        )
        self.lock = threading.RLock()
        self._panels: list[ModbusPanel] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, panel: ModbusPanel) -> None:
        with self.lock:
            if any(p.unit == panel.unit for p in self._panels):
                raise PanelError(f"unit {panel.unit} is already served on {self.settings.port}")
            self._panels.append(panel)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"modbus {self.settings.port}", daemon=True)
                self._thread.start()
        self.wake()

    def detach(self, panel: ModbusPanel) -> None:
        with self.lock:
            if panel in self._panels:
                self._panels.remove(panel)

    def wake(self) -> None:
        """Poll now (a light changed)."""
        self._wake.set()

    def _run(self) -> None:
        """The poll thread: the only one that talks on the wire."""
        while not self._stop.is_set():
            self._wake.clear()
            with self.lock:
                for panel in list(self._panels):
                    if self._stop.is_set():
                        break
                    panel.service(self.client)
            self._wake.wait(self.settings.poll_s)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self.lock:
            self.client.close()
            self._panels = []

    def __enter__(self) -> ModbusBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ModbusPanel:
    """One window's panel at ``[modbus] unit``; pass ``bus=`` to share a bus with other windows."""

    def __init__(self, config: TerminalConfig, bus: ModbusBus | None = None) -> None:
        self.settings = config.modbus
        self.unit = config.modbus.unit
        self.buttons = button_map(config.modbus, config.reasons)
        self.levels = frozenset(k.value for k in self.buttons if k.kind is KeyKind.LEVEL)
        self.reasons = frozenset(k.value for k in self.buttons if k.kind is KeyKind.REASON)
        self._order = delivery_order(self.buttons)
        self._own_bus = bus is None
        self.bus = bus if bus is not None else ModbusBus(config.modbus)
        self.ledger = PressLedger(config.resolve(config.modbus.state), config.journal_path)
        self._on_key: KeyHandler | None = None
        self._link = LinkState()
        self._identity: Identity | None = None
        self._next_try = 0.0
        self.lights = PanelLights(config.modbus.refresh_s)
        self._beep_seq = 0
        self._closed = False
        #: Link figures: polls that got answers, failed requests, presses delivered, refused by
        #: on_key, reboots, and resets (counting from 0 again without a reboot: wiped, replaced).
        self.counts = {"polls": 0, "failures": 0, "presses": 0, "not_accepted": 0, "reboots": 0, "resets": 0}

    # -- Panel protocol -------------------------------------------------------------------
    def start(self, on_key: KeyHandler, on_status: StatusHandler) -> None:
        self._on_key, self._link.handler = on_key, on_status
        self.bus.attach(self)

    @property
    def online(self) -> bool | None:
        """Whether the panel answers; None before the first attempt."""
        return self._link.online

    def show(self, signal: PanelSignal) -> None:
        """Record the wanted lights and wake the poll thread, which writes them (never blocks)."""
        self.lights.show(signal)
        self.bus.wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.bus.detach(self)
        if self._own_bus:
            self.bus.close()
        with self.bus.lock:
            self.ledger.close()

    def __enter__(self) -> ModbusPanel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the poll thread ------------------------------------------------------------------
    def service(self, client: ModbusSerialClient) -> None:
        """One poll of this panel (poll thread, bus lock held). Never raises."""
        if time.monotonic() < self._next_try:
            return  # not answering, or the journal refused a press: wait reconnect_s
        try:
            if self._identity is None:
                self._identify(client)
            self._poll(client)
            self._flush_lights(client)
            self._up()
        except NotAccepted as exc:
            self.counts["not_accepted"] += 1
            self._next_try = time.monotonic() + self.settings.reconnect_s
            _LOG.error(
                "unit %d: %s; the press stays on the panel and is offered again", self.unit, exc, exc_info=exc.__cause__
            )
        except (ModbusException, PanelError, OSError) as exc:
            self._down(str(exc))
        except Exception:
            _LOG.exception("unit %d: unexpected failure while polling", self.unit)
            self._down("driver failure (see log)")

    def _identify(self, client: ModbusSerialClient) -> None:
        regs = self._read(client, m.IR_VENDOR, m.IDENT_COUNT)
        ident = Identity(
            regs[m.IR_VENDOR],
            regs[m.IR_MODEL],
            regs[m.IR_FIRMWARE],
            regs[m.IR_SERIAL_HI] << 16 | regs[m.IR_SERIAL_LO],
            regs[m.IR_BUTTONS],
        )
        if ident.vendor != m.VENDOR or regs[m.IR_MAP_VERSION] != m.MAP_VERSION:
            raise PanelError(
                f"unit {self.unit} is not a haocha map-{m.MAP_VERSION} panel "
                f"(vendor {ident.vendor:#06x}, map {regs[m.IR_MAP_VERSION]})"
            )
        highest = max(self.buttons.values())
        if highest > ident.buttons:
            raise PanelError(f"unit {self.unit} has {ident.buttons} buttons; terminal.toml uses button {highest}")
        self._beep_seq = self._read(client, m.HR_BEEP_SEQ, 1, holding=True)[0]
        self._identity = ident
        self.lights.forget()  # the panel may have rebooted meanwhile
        _LOG.info("unit %d on %s: %s", self.unit, self.settings.port, ident)

    def _poll(self, client: ModbusSerialClient) -> None:
        assert self._identity is not None
        buttons = self._identity.buttons
        regs = self._read(client, m.IR_BOOT, 1 + buttons)
        self.counts["polls"] += 1
        boot, counters = regs[0], regs[1:]
        marks = {b: self.ledger.get(self._source(b)) for _, b in self._order}
        if _counts_again(boot, counters, marks):
            # A second look in one request, which is also the atomic snapshot of the previous
            # boot's final counters: one odd answer is not taken for a panel counting again.
            snap = self._read(client, m.IR_BOOT, m.SNAPSHOT_COUNT)
            boot, counters = snap[0], snap[1 : 1 + buttons]
            if _counts_again(boot, counters, marks):
                prev = snap[m.IR_PREV_BOOT - m.IR_BOOT :]
                self._new_baseline(client, boot, counters, prev[0], prev[1:], marks)
                marks = {b: self.ledger.get(self._source(b)) for _, b in self._order}
        for key, button in self._order:
            mark, now = marks[button], Mark(boot, counters[button - 1])
            if mark is None:
                self.ledger.set(self._source(button), now)  # first contact: presses from here on
                _LOG.info("unit %d button %d: counting from %d (boot %d)", self.unit, button, now.count, boot)
            else:
                self._deliver_upto(client, key, button, mark, now)

    def _new_baseline(
        self,
        client: ModbusSerialClient,
        boot: int,
        counters: list[int],
        prev_boot: int,
        prev: list[int],
        marks: dict[int, Mark | None],
    ) -> None:
        """The panel counts from 0 again: rebooted, or wiped or replaced (same serial number).

        After a reboot, first deliver what the previous boot counted past the marks (its final
        counters are in FRAM). Then every mark of the panel moves to (boot, 0) in one
        transaction, and the caller delivers the presses counted since: presses made after the
        panel came back are never taken for old ones, and a crash meanwhile finds marks that all
        belong to the new count.
        """
        known = {b: mk for b, mk in marks.items() if mk is not None}
        wiped = [b for b, mk in known.items() if mk.boot == boot and _behind(counters[b - 1], mk.count)]
        assert self._identity is not None
        panel = f"unit {self.unit} (serial {self._identity.serial})"
        if wiped:
            b = wiped[0]
            self.counts["resets"] += 1
            _LOG.warning(
                "%s: press counter of button %d went back from %d to %d without a reboot (boot %d): "
                "a wiped or replaced panel; counting its presses from 0",
                panel, b, known[b].count, counters[b - 1], boot,
            )  # fmt: skip
        else:
            old = next(mk.boot for mk in known.values() if mk.boot != boot)
            if _behind(boot, old):
                self.counts["resets"] += 1
                _LOG.warning(
                    "%s: boot counter went back from %d to %d: a replaced or wiped panel; counting its presses from 0",
                    panel, old, boot,
                )  # fmt: skip
            else:
                self._finish_previous_boot(client, panel, boot, prev_boot, prev, known)
        self.ledger.rebase({self._source(b): Mark(boot, 0) for b, mk in known.items() if wiped or mk.boot != boot})
        self.lights.forget()

    def _finish_previous_boot(
        self, client: ModbusSerialClient, panel: str, boot: int, prev_boot: int, prev: list[int], known: dict[int, Mark]
    ) -> None:
        """A reboot: deliver the presses of boot ``prev_boot`` made after the last poll."""
        self.counts["reboots"] += 1
        _LOG.warning("%s rebooted (boot %d, previous %d)", panel, boot, prev_boot)
        gone = sorted({mk.boot for mk in known.values() if mk.boot not in (boot, prev_boot)})
        if gone:
            _LOG.error(
                "%s: presses of boots %d..%d are gone (the panel rebooted more than once between polls)",
                panel, gone[0], (boot - 1) % m.WRAP,
            )  # fmt: skip
        odd = []
        for key, button in self._order:
            mark = known.get(button)
            if mark is None or mark.boot != prev_boot:
                continue
            final = Mark(prev_boot, prev[button - 1])
            if _behind(final.count, mark.count):
                odd.append(button)  # FRAM does not continue the mark: nothing of it is delivered
            else:
                self._deliver_upto(client, key, button, mark, final)
        if odd:
            _LOG.error("%s: the final counters of boot %d are below the marks of buttons %s", panel, prev_boot, odd)

    def _deliver_upto(self, client: ModbusSerialClient, key: Key, button: int, mark: Mark, now: Mark) -> None:
        """Deliver the presses between ``mark`` and ``now`` (same boot, ``now`` not behind), one at a time."""
        for i in range(1, (now.count - mark.count) % m.WRAP + 1):
            self.ledger.deliver(self._source(button), Mark(now.boot, (mark.count + i) % m.WRAP), key, self._on_key)
            self.counts["presses"] += 1
            self._flush_lights(client)

    def _flush_lights(self, client: ModbusSerialClient) -> None:
        due = self.lights.due()
        if due is None:
            return
        version, want, beep = due
        try:
            self._check(client.write_coils(m.COIL_READY, list(want), device_id=self.unit))
            if beep is not m.Beep.NONE:
                seq = (self._beep_seq + 1) % m.WRAP
                self._check(client.write_registers(m.HR_BEEP_PATTERN, [int(beep), seq], device_id=self.unit))
                self._beep_seq = seq
        except BaseException:
            self.lights.failed(beep)
            raise
        self.lights.written(version)

    # -- helpers --------------------------------------------------------------------------
    def _source(self, button: int) -> str:
        assert self._identity is not None
        return f"modbus:{self.unit}:{self._identity.serial}:{button}"

    def _read(self, client: ModbusSerialClient, address: int, count: int, holding: bool = False) -> list[int]:
        read = client.read_holding_registers if holding else client.read_input_registers
        rr = self._check(read(address, count=count, device_id=self.unit))
        regs = list(rr.registers)
        if len(regs) < count:
            raise PanelError(f"unit {self.unit} answered {len(regs)} registers, asked {count}")
        return regs

    def _check(self, response: Any) -> Any:
        if response is None or response.isError():
            raise PanelError(f"unit {self.unit} refused the request: {response}")
        return response

    def _up(self) -> None:
        if not self._link.online:
            self._link.up(f"modbus unit {self.unit} on {self.settings.port}: {self._identity}")

    def _down(self, reason: str) -> None:
        self.counts["failures"] += 1
        self._next_try = time.monotonic() + self.settings.reconnect_s
        self._identity = None
        self._link.down(f"modbus unit {self.unit} on {self.settings.port} not answering: {reason}")
