"""systemd's notify protocol (sd_notify(3)) in a few lines, shared by the hub and the terminal.

A ``Type=notify`` service tells systemd it is ready (``READY=1``), alive (``WATCHDOG=1``),
stopping (``STOPPING=1``) and what it is doing (``STATUS=…``) in datagrams sent to the
``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` names Linux's abstract
namespace). ``$WATCHDOG_USEC`` is set when the unit has ``WatchdogSec=``: a process silent for
that long is killed and restarted. Outside systemd (no ``$NOTIFY_SOCKET``) every call does
nothing, so the programs need no separate mode for it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping


def _address(value: str) -> str | None:
    """The socket address of ``$NOTIFY_SOCKET``, or None if there is none usable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return value if value.startswith("/") else None


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds systemd waits for a ``WATCHDOG=1`` from this process; None without a watchdog (or when
    ``$WATCHDOG_PID`` names another process: the variables were inherited from a parent)."""
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class Notifier:
    """Sends notifications to systemd, when there is a systemd to hear them. Thread-safe."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = watchdog_interval(env) if self.address else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._last_ping = -float("inf")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False if not under systemd or it failed."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self.address)
            except OSError:
                return False  # systemd gone or restarting: as sd_notify, never fail the caller
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", _status(status))

    def status(self, text: str) -> bool:
        return self.send(_status(text))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", _status(status))

    def watchdog(self, status: Callable[[], str] | None = None) -> bool:
        """Ping the watchdog if half its interval passed since the last ping, with ``status()`` if
        given; cheap enough for a hot loop. Call it only from a place whose running proves the
        process works, never from a timer of its own."""
        if self.watchdog_s is None:
            return False
        now = time.monotonic()
        if now - self._last_ping < self.watchdog_s / 2:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1", *([_status(status())] if status is not None else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line: a newline would start another field
