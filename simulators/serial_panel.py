"""A serial evaluator panel that behaves like the hardware, reachable at ``socket://127.0.0.1:PORT``.

It speaks the line protocol of docs/panels.md as the firmware does: every press is queued in
"FRAM" with its boot number and press id and repeated every ``repeat_s`` until acknowledged, in
order, one at a time; a heartbeat goes out every ``heartbeat_s``; an IDENT at power-up and on
request. The terminal's LIGHTS frames set lights and sound the buzzer. ``unplug`` cuts the line
(the terminal's connection is dropped, a new one gets silence) while presses keep queueing;
``reboot`` power-cycles (queue kept, lights lost, ids restart under a new boot number); ``wipe``
loses the memory; ``inject_noise`` and ``corrupt_next`` damage the line. Given a
:class:`PanelMemory`, the FRAM (serial number, boot number, queue) is a file that outlives the
simulator: a new simulator on it is the same panel powered up again.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from terminal.errors import PanelError
from terminal.panel import Key
from terminal.panels.lineproto import Frame, FrameParser, Msg, encode
from terminal.panels.modbusmap import VENDOR, Beep

from .panel_memory import PanelMemory

_LOG = logging.getLogger(__name__)
LightsHook = Callable[[dict[str, bool]], None]


class SerialPanelSim:
    """A context manager; ``start()`` returns the URL for ``[serial] port``."""

    def __init__(
        self,
        buttons: Mapping[Key, int],
        serial: int = 1,
        model: int = 2,
        firmware: int = 0x0100,
        nbuttons: int = 12,
        heartbeat_s: float = 0.5,
        repeat_s: float = 0.1,
        memory: PanelMemory | None = None,
    ) -> None:
        """``serial`` is the serial number of a new panel; one that ``memory`` remembers keeps its own."""
        self.buttons = dict(buttons)
        self.heartbeat_s, self.repeat_s = heartbeat_s, repeat_s
        self.url = ""
        self._cond = threading.Condition()
        self.memory = memory
        self.serial = serial
        self.boot = 1
        self._next_id = 1
        self.queue: collections.deque[tuple[int, int, int]] = collections.deque()  # (boot, id, button)
        self.presses = 0  #: presses ever made (across restarts, with memory)
        if memory is not None:
            self._power_up(memory)
        self.ident = (VENDOR, model, firmware, self.serial, nbuttons)
        self._lights = {"ready": False, "reason": False, "thanks": False}
        self._beep_seq = 0
        self.beeps: list[Beep] = []
        self.acked = 0  #: presses the terminal acknowledged
        self.plugged = True
        self.parser = FrameParser()  #: what the panel received, with its error counts
        self.on_lights: LightsHook | None = None
        self._corrupt = 0
        self._drop_acks = 0
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._due_ident = True
        self._last_sent: tuple[int, int, int] | None = None
        if max(self.buttons.values(), default=1) > nbuttons:
            raise PanelError(f"a panel of {nbuttons} buttons cannot carry buttons {sorted(self.buttons.values())}")

    # -- API for tests, the demo and the CLI --------------------------------------------------
    def press(self, key: Key) -> None:
        self.press_button(self.buttons[key])

    def press_button(self, button: int) -> None:
        with self._cond:
            self.queue.append((self.boot, self._next_id, button))
            self._next_id = self._next_id % 0xFFFF + 1
            self.presses += 1
            self._save()
            self._cond.notify_all()

    def reboot(self) -> None:
        with self._cond:
            self.boot = (self.boot + 1) % 0x10000
            self._forget()

    def wipe(self, boot: int | None = None) -> None:
        """Lose the memory (a firmware fault), or stand for a replaced unit with the same serial
        number: the queue is gone, ids restart at 1, lights off; the boot number stays as it is,
        or becomes ``boot``."""
        with self._cond:
            self.queue.clear()
            if boot is not None:
                self.boot = boot % 0x10000
            self._forget()

    def _forget(self) -> None:
        """Ids from 1, lights and buzzer off, IDENT due (caller holds ``_cond``)."""
        self._next_id = 1
        self._lights = dict.fromkeys(self._lights, False)
        self._beep_seq = 0
        self._due_ident = True
        self._save()
        self._cond.notify_all()

    def _power_up(self, memory: PanelMemory) -> None:
        """Continue the panel ``memory`` remembers, as at power-up; a new panel if there is none."""
        saved = memory.state
        try:
            serial, boot, presses = int(saved["serial"]) & 0xFFFFFFFF, int(saved["boot"]), int(saved["presses"])
            queue = [(int(b), int(i), int(n)) for b, i, n in saved["queue"]]
        except KeyError:
            pass  # a new panel
        except (TypeError, ValueError) as exc:
            _LOG.warning("simulated panel memory %s is not usable (%s): a new panel", memory.path, exc)
        else:
            self.serial, self.presses, self.queue = serial, presses, collections.deque(queue)
            self.boot = (boot + 1) % 0x10000
        self._save()

    def _save(self) -> None:
        """Write the FRAM to the memory file, if any (caller holds ``_cond``, or is __init__)."""
        if self.memory is not None:
            self.memory.save(serial=self.serial, boot=self.boot, queue=list(self.queue), presses=self.presses)

    def unplug(self) -> None:
        """Cut the line: drop the terminal's connection; later ones hear nothing until replug."""
        with self._cond:
            self.plugged = False
            self._drop()

    def replug(self) -> None:
        with self._cond:
            self.plugged = True
            self._due_ident = True
            self._cond.notify_all()

    def inject_noise(self, nbytes: int) -> None:
        """Send ``nbytes`` random bytes on the line now, between frames."""
        self._send(os.urandom(nbytes))

    def corrupt_next(self, frames: int) -> None:
        """Flip a bit in the body of each of the next ``frames`` frames (bad checksum)."""
        with self._cond:
            self._corrupt += frames

    def drop_acks(self, count: int) -> None:
        """Lose the next ``count`` acks (0: none): the panel repeats presses already journaled."""
        with self._cond:
            self._drop_acks = max(0, count)

    @property
    def lights(self) -> dict[str, bool]:
        with self._cond:
            return dict(self._lights)

    # -- line -----------------------------------------------------------------------------
    def start(self) -> str:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        for target, name in ((self._accept, "accept"), (self._talk, "talk")):
            thread = threading.Thread(target=target, name=f"serial panel sim {name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        _LOG.info("simulated serial panel at %s", self.url)
        return self.url

    def _accept(self) -> None:
        assert self._listener is not None
        self._listener.settimeout(0.1)  # so that stop() is noticed: close() does not wake accept()
        while not self._stopping:
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                self._drop()
                self._conn = conn
                self._due_ident = True
                self._cond.notify_all()
            threading.Thread(target=self._receive, args=(conn,), name="serial panel sim rx", daemon=True).start()

    def _receive(self, conn: socket.socket) -> None:
        while not self._stopping:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            if not self.plugged:
                continue  # the cable is out: nothing arrives
            for frame in self.parser.feed(data):
                self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        if frame.msg is Msg.ACK:
            with self._cond:
                if self._drop_acks:
                    self._drop_acks -= 1
                elif self.queue and self.queue[0][:2] == frame.args:
                    self.queue.popleft()
                    self.acked += 1
                    self._save()
                    self._cond.notify_all()
        elif frame.msg is Msg.LIGHTS:
            self._lights_frame(*frame.args)
        elif frame.msg is Msg.QUERY:
            with self._cond:
                self._due_ident = True
                self._cond.notify_all()

    def _lights_frame(self, ready: int, reason: int, thanks: int, seq: int, pattern: int) -> None:
        with self._cond:
            old = dict(self._lights)
            self._lights = {"ready": bool(ready), "reason": bool(reason), "thanks": bool(thanks)}
            if seq != self._beep_seq and pattern:
                self.beeps.append(Beep(pattern))
            self._beep_seq = seq
            lights, changed = dict(self._lights), old != self._lights
        hook = self.on_lights
        if hook is not None and changed:
            hook(lights)

    def _talk(self) -> None:
        """The firmware's main loop: IDENT when due, the oldest press, heartbeats."""
        next_press = next_beat = 0.0
        while not self._stopping:
            with self._cond:
                live = self._conn is not None and self.plugged
                ident, self._due_ident = self._due_ident and live, self._due_ident and not live
                head = self.queue[0] if self.queue and live else None
                boot, queued = self.boot, len(self.queue)
            now = time.monotonic()
            if ident:
                self._send(encode(Msg.IDENT, *self.ident))
            if head is not None and (now >= next_press or head != self._last_sent):
                self._last_sent = head
                self._send(encode(Msg.PRESS, *head))
                next_press = now + self.repeat_s
            if live and now >= next_beat:
                self._send(encode(Msg.HEARTBEAT, boot, queued))
                next_beat = now + self.heartbeat_s
            with self._cond:
                self._cond.wait(min(self.repeat_s, max(0.001, next_beat - time.monotonic())))

    def _send(self, frame: bytes) -> None:
        with self._cond:
            conn = self._conn if self.plugged else None
            if self._corrupt and frame.startswith(b"$"):
                self._corrupt -= 1
                frame = frame[:2] + bytes([frame[2] ^ 0x01]) + frame[3:]
        if conn is None:
            return
        try:
            with self._send_lock:
                conn.sendall(frame)
        except OSError:
            with self._cond:
                if self._conn is conn:
                    self._drop()

    def _drop(self) -> None:
        """Close the terminal's connection (caller holds ``_cond``)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        with self._cond:
            self._drop()
            self._cond.notify_all()
        if self._listener is not None:
            self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    close = stop

    def __enter__(self) -> SerialPanelSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
