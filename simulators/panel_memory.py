"""What a simulated panel keeps in its FRAM across restarts of its simulator, as hardware does.

A real panel keeps its serial number, its boot counter and (Modbus) its last counters or
(serial) its queue of unacknowledged presses through a power cut. ``haocha sim terminal`` starts
a new simulator each run; without this file a restart (after ``kill -9`` too) would be a new
panel with the same serial number counting from zero, which is not what hardware does.

The file is JSON in the device's folder (beside ``terminal.toml``), replaced atomically on every
change, so a ``kill -9`` leaves the previous or the new state, never half of one. A lock file
beside it (``flock``, released by the kernel when the process dies) keeps two simulators from
being the same panel at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from terminal.errors import PanelError

_LOG = logging.getLogger(__name__)


class PanelMemory:
    """A context manager; ``close()`` releases the lock. Not thread-safe: callers hold their lock."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._lock: IO[bytes] | None = _lock(path.with_suffix(".lock"))
        self.state = self._load()

    def _load(self) -> dict[str, Any]:
        """The state saved by the previous run of this panel, or {} for a new panel."""
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            _LOG.warning("cannot read %s (%s): the simulated panel starts as a new unit", self.path, exc)
            return {}
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            return {}  # another kind of panel was simulated here before: this one is new
        return state

    def save(self, **state: Any) -> None:
        self.state = {**self.state, **state, "kind": self.kind}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)

    def close(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # releases the flock

    def __enter__(self) -> PanelMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PanelError(f"the simulated panel of {path.parent} is in use by another run (lock {path})") from None
    return handle
