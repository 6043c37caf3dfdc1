"""Evaluator panels on a serial or USB line, through pyserial (``serial_for_url``: a tty or
``socket://``), speaking the framed protocol of :mod:`~terminal.panels.lineproto`.

The panel keeps each press (boot, press id, button) until the terminal acknowledges it and
repeats it meanwhile, so nothing made while the line was down is lost. The terminal sends the
ack only after ``on_key`` returned, that is after the journal commit; the press id already
journaled is kept by :class:`~terminal.panels.ledger.PressLedger`, so a repeat of it (the ack was
lost, or the terminal restarted) is acknowledged again but never delivered twice. A press id
below the mark cannot be a repeat (the panel sends in order): the panel restarted its ids
(wiped, or replaced with the same serial number), and the press is delivered.

One thread per panel reads the port, handles frames and is the only writer: ``show`` records the
wanted lights, which go out within ``read_s``. Noise, framing errors and bad checksums are
counted by the parser and skipped; silence for ``link_timeout_s`` reports the link down.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import serial

from ..config import SerialSettings, TerminalConfig
from ..errors import PanelError
from ..panel import KeyHandler, KeyKind, PanelSignal, StatusHandler
from .buttons import button_map
from .ledger import Mark, NotAccepted, PressLedger
from .lights import PanelLights
from .lineproto import Frame, FrameParser, Msg, encode
from .link import LinkState
from .modbusmap import Beep

_LOG = logging.getLogger(__name__)
_HALF = 0x8000


def is_newer(press_id: int, last: int) -> bool:
    """Press ids are 16-bit and wrap: ``press_id`` follows ``last`` within half the range."""
    return 0 < (press_id - last) % 0x10000 < _HALF


class SerialPanel:
    """One window's panel on ``[serial] port``. A context manager; ``close()`` is idempotent."""

    def __init__(self, config: TerminalConfig) -> None:
        self.settings: SerialSettings = config.serial
        self.buttons = button_map(config.serial, config.reasons)
        self._by_button = {n: k for k, n in self.buttons.items()}
        self.levels = frozenset(k.value for k in self.buttons if k.kind is KeyKind.LEVEL)
        self.reasons = frozenset(k.value for k in self.buttons if k.kind is KeyKind.REASON)
        self.ledger = PressLedger(config.resolve(config.serial.state), config.journal_path)
        self.parser = FrameParser()
        self._port: Any = None
        self._on_key: KeyHandler | None = None
        self._link = LinkState()
        self._identity: tuple[int, ...] | None = None
        self._panel_boot: int | None = None
        self._last_rx = time.monotonic()
        self.lights = PanelLights(config.serial.refresh_s)
        self._beep_seq = 0
        self._out = bytearray()
        self._refused_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Driver figures beside the parser's: presses delivered, repeats acked again, unmapped
        #: buttons, presses refused by on_key, port (re)opens, panels numbering from the start
        #: again without a reboot (wiped, replaced).
        self.counts = {"presses": 0, "duplicates": 0, "unknown_button": 0, "not_accepted": 0, "opens": 0, "resets": 0}

    # -- Panel protocol -------------------------------------------------------------------
    def start(self, on_key: KeyHandler, on_status: StatusHandler) -> None:
        self._on_key, self._link.handler = on_key, on_status
        self._thread = threading.Thread(target=self._run, name=f"serial {self.settings.port}", daemon=True)
        self._thread.start()

    @property
    def online(self) -> bool | None:
        """Whether the panel answers; None before the first attempt."""
        return self._link.online

    def show(self, signal: PanelSignal) -> None:
        """Record the wanted lights; the port thread sends them within ``read_s``. Never blocks."""
        self.lights.show(signal)

    @property
    def line_counts(self) -> dict[str, int]:
        """Parser and driver counts together (noise, framing, checksums, duplicates...)."""
        return {**self.parser.counts, **self.counts}

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._close_port()
        self.ledger.close()

    def __enter__(self) -> SerialPanel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the port thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except (serial.SerialException, OSError, PanelError) as exc:
                self._close_port()
                self._down(str(exc))
                self._stop.wait(self.settings.reconnect_s)
            except Exception:
                _LOG.exception("serial panel on %s: unexpected failure", self.settings.port)
                self._close_port()
                self._down("driver failure (see log)")
                self._stop.wait(self.settings.reconnect_s)

    def _step(self) -> None:
        if self._port is None:
            self._open()
        data = self._read_available()
        if data:
            for frame in self.parser.feed(data):
                self._last_rx = time.monotonic()
                self._handle(frame)
        if time.monotonic() - self._last_rx > self.settings.link_timeout_s:
            self._down(f"no frame from the panel for {self.settings.link_timeout_s:g} s")
        self._flush_lights()
        self._write_out()

    def _read_available(self) -> bytes:
        """Wait up to ``read_s`` for a byte, then take what has arrived (``socket://`` reports
        only 0 or 1 waiting, a tty the real count)."""
        data = bytes(self._port.read(1))
        while data and len(data) < 4096:
            waiting = self._port.in_waiting
            if not waiting:
                break
            data += self._port.read(waiting)
        return data

    def _open(self) -> None:
        self._port = serial.serial_for_url(
            self.settings.port,
            baudrate=self.settings.baudrate,
            timeout=self.settings.read_s,
            write_timeout=self.settings.link_timeout_s,
        )
        self.counts["opens"] += 1
        self._last_rx = time.monotonic()
        self.lights.forget()
        self._out = bytearray()
        self._send(encode(Msg.QUERY))

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def _handle(self, frame: Frame) -> None:
        if frame.msg is Msg.IDENT:
            self._identity = frame.args
            self._up()
        elif self._identity is None:
            self._send(encode(Msg.QUERY))  # presses wait until we know which panel this is
        elif frame.msg is Msg.HEARTBEAT:
            self._heartbeat(frame.args[0])
        elif frame.msg is Msg.PRESS:
            self._up()
            self._press(*frame.args)
        else:
            _LOG.debug("ignoring %s frame from the panel", frame.msg.name)

    def _heartbeat(self, boot: int) -> None:
        if self._panel_boot is not None and boot != self._panel_boot:
            if is_newer(boot, self._panel_boot):  # a boot number gone back is told by _check_restart
                _LOG.warning("serial panel on %s rebooted (boot %d)", self.settings.port, boot)
            self.lights.forget()
        self._panel_boot = boot
        self._up()

    def _press(self, boot: int, press_id: int, button: int) -> None:
        key = self._by_button.get(button)
        if key is None:
            self.counts["unknown_button"] += 1
            _LOG.warning(
                "serial panel on %s: button %d is not in terminal.toml; acknowledged, not journaled",
                self.settings.port,
                button,
            )
            self._send(encode(Msg.ACK, boot, press_id))
            return
        if time.monotonic() < self._refused_until:
            return  # the journal refused a press moments ago: let the panel repeat it, unacked
        source = self._source()
        mark = self.ledger.get(source)
        if mark == Mark(boot, press_id):
            self.counts["duplicates"] += 1  # the journaled press again: its ack was lost
        else:
            if mark is not None:
                self._check_restart(mark, boot, press_id)
            try:
                self.ledger.deliver(source, Mark(boot, press_id), key, self._on_key)
            except NotAccepted as exc:
                self.counts["not_accepted"] += 1
                self._refused_until = time.monotonic() + self.settings.reconnect_s
                _LOG.error("%s; the panel repeats it", exc, exc_info=exc.__cause__)
                return
            self.counts["presses"] += 1
        self._send(encode(Msg.ACK, boot, press_id))
        self._flush_lights()  # the ack and the thank-you light leave in one write

    def _check_restart(self, mark: Mark, boot: int, press_id: int) -> None:
        """Log a panel that numbers its presses from the start again (it is delivered all the same).

        The panel repeats only its oldest unacknowledged press and sends them in order, so once
        press ``mark`` was journaled, no earlier press of that boot can come again: an older id
        means the panel lost its queue and restarted its ids (wiped, or replaced with the same
        serial number), and a boot number gone back means the same without a reboot.
        """
        if mark.boot == boot and not is_newer(press_id, mark.count):
            what = f"press id went back from {mark.count} to {press_id} without a reboot (boot {boot})"
        elif mark.boot != boot and not is_newer(boot, mark.boot):
            what = f"boot number went back from {mark.boot} to {boot}"
        else:
            return
        self.counts["resets"] += 1
        _LOG.warning(
            "serial panel on %s (serial %d): %s: a wiped or replaced panel; taking its presses from here",
            self.settings.port, self._identity[3] if self._identity else 0, what,
        )  # fmt: skip

    def _flush_lights(self) -> None:
        due = self.lights.due()
        if due is None:
            return
        version, want, beep = due
        seq = (self._beep_seq + 1) % 0x10000 if beep is not Beep.NONE else self._beep_seq
        self._send(encode(Msg.LIGHTS, *want, seq, int(beep)))
        self._beep_seq = seq
        self.lights.written(version)

    # -- helpers --------------------------------------------------------------------------
    def _send(self, frame: bytes) -> None:
        """Queue ``frame`` for the write at the end of this step."""
        self._out += frame

    def _write_out(self) -> None:
        """One write per step: over ``socket://`` separate small writes (an ack, then lights)
        would meet Nagle's algorithm and the peer's delayed ACK, and stall the next ack ~40 ms."""
        out, self._out = bytes(self._out), bytearray()
        if out:
            if self._port is None:
                raise PanelError("port closed")
            self._port.write(out)

    def _source(self) -> str:
        assert self._identity is not None
        return f"serial:{self._identity[3]}"

    def _up(self) -> None:
        if self._link.online:
            return
        ident = self._identity
        detail = f"serial panel on {self.settings.port}"
        if ident is not None:
            detail += f": model {ident[1]} firmware {ident[2] >> 8}.{ident[2] & 0xFF} serial {ident[3]}"
        self._link.up(detail)

    def _down(self, reason: str) -> None:
        if self._link.online is False:
            return
        self._identity = None
        self._link.down(f"serial panel on {self.settings.port} not answering: {reason}")
