"""Two slots for the CPython terminal's program, and the launcher that picks one (SPEC section 13).

Layout (made by systemd/install-terminal.sh)::

    /opt/haocha/launcher.py     this file, copied at install: the unit runs it, it never changes
    /opt/haocha/current         -> slots/current (fixed)
    /opt/haocha/slots/a, b      virtual environments, each with one release of haocha[pi]
    /opt/haocha/slots/current   -> a or b: the slot that runs (switched by the updater)
    /opt/haocha/slots/boot.json the running release, a trial under way, the last update's outcome

Only ``slots/`` is writable by the terminal (the unit's ReadWritePaths): the launcher and the
fixed link stay as root installed them. An update installs into the other slot, then
:meth:`Slots.switch` points ``current`` at it *on trial* and the process exits; systemd starts
the launcher again, which starts the new slot (one trial boot). The new program runs its
self-test and :meth:`Slots.confirm` s, or :meth:`Slots.revert` s when it fails. A trial boot that
ends without either (a crash, a hang the watchdog kills, kill -9, a power cut) is reverted by the
launcher before the next start: ESP-IDF's app rollback, Mender's commit. The journal lives in the
state folder, which nothing here touches.

This module uses the standard library only: it is the launcher, run by the system's python3
outside any slot.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

SLOT_NAMES = ("a", "b")
BOOT_FILE = "boot.json"
POINTER = "current"
DEFAULT_ROOT = Path("/opt/haocha")


class Slots:
    """The slots below ``root``; every change of ``boot.json`` and the link is atomic (rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "slots"
        self._lock = threading.RLock()  # the updater's and the self-test's threads both write

    # -- reading ----------------------------------------------------------------------------
    def current(self) -> str:
        return os.readlink(self.folder / POINTER)

    def other(self) -> str:
        return SLOT_NAMES[1] if self.current() == SLOT_NAMES[0] else SLOT_NAMES[0]

    def path(self, slot: str) -> Path:
        return self.folder / slot

    def boot(self) -> dict[str, Any]:
        """``{"release", "trial": {slot, release, from, from_release, boots} | None, "last": {...}}``"""
        try:
            data = json.loads((self.folder / BOOT_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def pending(self) -> dict[str, Any] | None:
        """The update command under way before the switch (started again after a restart)."""
        pending = self.boot().get("pending")
        return pending if isinstance(pending, dict) else None

    def keep_pending(self, command: dict[str, Any] | None) -> None:
        with self._lock:
            self._write({**self.boot(), "pending": command})

    def trial(self) -> dict[str, Any] | None:
        trial = self.boot().get("trial")
        return trial if isinstance(trial, dict) else None

    # -- changes ----------------------------------------------------------------------------
    def switch(self, slot: str, release: str, from_release: str) -> None:
        """Run ``slot`` (holding ``release``) on trial from the next start on."""
        trial = {"slot": slot, "release": release, "from": self.current(), "from_release": from_release, "boots": 0}
        last = {"release": release, "phase": "switched", "detail": ""}
        with self._lock:
            boot = self.boot()
            pending = boot.get("pending")  # a newer release announced meanwhile stays for the new program
            if not isinstance(pending, dict) or pending.get("release") == release:
                pending = None
            self._write({**boot, "trial": trial, "last": last, "pending": pending})
            self._point(slot)

    def confirm(self) -> None:
        """The trial passed its self-test: its slot stays."""
        with self._lock:
            trial = self.trial()
            if trial is None:
                return
            last = {"release": trial["release"], "phase": "confirmed", "detail": ""}
            self._write({**self.boot(), "release": trial["release"], "trial": None, "last": last})

    def revert(self, detail: str) -> None:
        """Back to the slot the trial came from; ``detail`` says why (the hub shows it)."""
        with self._lock:
            trial = self.trial()
            if trial is None:
                return
            self._point(trial["from"])
            last = {"release": trial["release"], "phase": "rolled_back", "detail": detail[:200]}
            self._write({**self.boot(), "release": trial["from_release"], "trial": None, "last": last})

    def record(self, release: str, phase: str, detail: str = "") -> None:
        """An update's outcome that changed no slot (``failed``), kept across restarts."""
        with self._lock:
            self._write({**self.boot(), "last": {"release": release, "phase": phase, "detail": detail[:200]}})

    def start(self) -> str:
        """The launcher's decision before each start: the slot to run. A trial that already had
        its boot and did not confirm is reverted; otherwise the trial's boot is counted."""
        trial = self.trial()
        if trial is not None:
            if int(trial.get("boots", 0)) >= 1:
                self.revert("the new release stopped before its self-test confirmed it")
            else:
                self._write({**self.boot(), "trial": {**trial, "boots": 1}})
        return self.current()

    def _point(self, slot: str) -> None:
        if slot not in SLOT_NAMES:
            raise ValueError(f"no slot {slot!r}")
        tmp = self.folder / f".{POINTER}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(slot, tmp)
        os.replace(tmp, self.folder / POINTER)
        _sync(self.folder)

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=BOOT_FILE + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.folder / BOOT_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _sync(self.folder)


def _sync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def slots_of_running_program() -> Slots | None:
    """The slots this program runs from (``sys.prefix`` is ``ROOT/slots/a`` or ``…/b``), or None
    when it is not installed in two slots (a development checkout, an older install)."""
    prefix = Path(sys.prefix).resolve()
    if prefix.parent.name != "slots" or prefix.name not in SLOT_NAMES:
        return None
    return Slots(prefix.parent.parent)


def main(argv: list[str]) -> None:
    """``python3 launcher.py [--root DIR] -- ARGS…``: runs ``DIR/slots/<slot>/bin/haocha ARGS…``
    in this process (systemd's notify socket and watchdog stay with it)."""
    root = DEFAULT_ROOT
    if argv[:1] == ["--root"]:
        root, argv = Path(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    slots = Slots(root)
    try:
        slot = slots.start()
    except OSError as exc:
        sys.exit(f"haocha launcher: {root}/slots is not a two-slot install ({exc}); rerun install-terminal.sh")
    program = slots.path(slot) / "bin" / "haocha"
    os.execv(program, [str(program), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
