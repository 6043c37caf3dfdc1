"""One hub per home: ``hub run`` holds an exclusive lock on ``D/hub.lock`` for its whole life.

A second hub on the same home would log in to the broker with the same user and push the first
one off, store through a second writer and start a second upstream sender. The lock is an
``flock`` on an open file: the kernel drops it when the holding process dies, even by ``kill -9``,
so a stale lock file never blocks a restart. Its descriptor is not inheritable (PEP 446) and
children are started with ``close_fds``, so the writer process never holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import HubError

LOCK_NAME = "hub.lock"


class HubRunning(HubError, RuntimeError):
    """Another ``hub run`` holds this home."""


class HomeLock:
    """``with HomeLock(home):`` — HubRunning at once if another process holds it."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HubRunning(f"another hub is running on {self.path.parent} (pid {holder}); not starting") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Idempotent. The file stays: removing it would let a third hub lock a new file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
