"""Updates of the CPython terminal to a signed release (SPEC section 13, :mod:`protocol.updates`).

An ``update`` command names a release, its manifest's exact text, an ed25519 signature over that
text and the folder its files are fetched from. The updater, on a thread of its own:

1. checks the signature with the hall's public release key (``release.pub`` beside
   terminal.toml), that the manifest is for this release and for CPython terminals;
2. downloads every file (https with the hall CA when the hub serves HTTPS) and checks its size and
   SHA-256, then installs the wheel into the other slot (:mod:`terminal.slots`) with pip from the
   hub alone: the downloaded wheel and the hub's ``/fleet/`` wheelhouse;
3. waits until no invitation and no reason wait is live, stops taking keys, points ``current`` at
   the new slot on trial and ends the process (exit 75): systemd starts the launcher again;
4. the new program runs a self-test (journal opens, broker reached over TLS, panel link up) and
   confirms; a failed self-test, or none within :data:`SELF_TEST_S`, switches back and ends the
   process again. A trial boot that ends some other way is reverted by the launcher.

Every step is reported in the retained state's ``update`` field. Anything wrong before the switch
ends in ``failed`` with nothing changed. The journal (the state folder) is never touched.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from protocol import commands
from protocol.errors import ProtocolError
from protocol.terminal_config import TerminalConfig
from protocol.updates import FINAL_PHASES, Manifest, ReleaseKind, UpdatePhase, UpdateState

from . import __version__, ed25519
from .errors import TerminalError
from .slots import Slots, slots_of_running_program

_LOG = logging.getLogger(__name__)
#: The hall's public release key, beside terminal.toml (written by `device add`).
RELEASE_PUB = "release.pub"
#: How long a new release has to pass its self-test before it is rolled back.
SELF_TEST_S = 60.0
#: The exit code that asks systemd (``Restart=always``) for a restart through the launcher.
RESTART_EXIT = 75
PIP_TIMEOUT_S = 900
_WHEEL_RE = re.compile(r"haocha-([0-9A-Za-z.+_]+?)-py3-none-any\.whl")

Checks = Callable[[], list[str]]
#: Installs a downloaded wheel into a slot's folder, given the url of the release (pip by default).
Installer = Callable[[Path, Path, str], None]


class UpdateRefused(TerminalError, ValueError):
    """A release that is not installed: the reason, in one line (the hub shows it)."""


class Updater:
    """Thread-aware: :meth:`handle` runs on paho's thread and starts a worker; ``state`` is read
    by the uplink's thread."""

    def __init__(
        self,
        config: TerminalConfig,
        pause_if_idle: Callable[[], bool],
        self_test: Checks,
        on_change: Callable[[], None],
        restart: Callable[[], None],
        slots: Slots | None = None,
        installer: Installer | None = None,
        resume: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.pause_if_idle = pause_if_idle
        self.resume = resume  #: keys again after a pause whose switch failed
        self.self_test = self_test
        self.on_change = on_change
        self.restart = restart
        self.slots = slots
        self.install = installer or self._pip_install
        self._state: UpdateState | None = self._last_outcome()
        self._busy = threading.Lock()
        self._queued: commands.Update | None = None  #: the newest update announced while one ran
        self._switched = False  #: this process switched slots and is ending
        self._stop = threading.Event()

    @property
    def state(self) -> UpdateState | None:
        return self._state

    def _report(self, release: str, phase: UpdatePhase, detail: str = "") -> None:
        self._state = UpdateState(release, phase, detail[:200])
        log = _LOG.warning if phase in (UpdatePhase.FAILED, UpdatePhase.ROLLED_BACK) else _LOG.info
        log("update to %s: %s%s", release, phase.value, f" ({detail})" if detail else "")
        self.on_change()

    def _last_outcome(self) -> UpdateState | None:
        last = self.slots.boot().get("last") if self.slots is not None else None
        try:
            return UpdateState.parse(last) if isinstance(last, dict) else None
        except (KeyError, ValueError):
            return None

    # -- the trial of a new release ---------------------------------------------------------
    def start(self) -> None:
        """At start: a release on trial runs its self-test (its own thread); an update that a
        restart cut short (kill -9 mid-download) starts again."""
        if self.slots is None:
            return
        trial = self.slots.trial()
        if trial is not None and trial.get("release") == __version__:
            self._report(__version__, UpdatePhase.SWITCHED)
            threading.Thread(target=self._trial, name="self-test", daemon=True).start()
        elif trial is None:
            self._resume_pending()

    def _resume_pending(self) -> None:
        assert self.slots is not None
        pending = self.slots.pending()
        if pending is None:
            return
        try:
            update = commands.parse(pending)
        except ProtocolError:
            update = None
        if not isinstance(update, commands.Update):
            self.slots.keep_pending(None)  # unreadable (written by another release): forgotten
            return
        _LOG.info("update to %s: starting again after a restart", update.release)
        self.handle(update)

    def _trial(self) -> None:
        assert self.slots is not None
        deadline = time.monotonic() + SELF_TEST_S
        problems = self._problems()
        while problems and time.monotonic() < deadline and not self._stop.wait(0.2):
            problems = self._problems()
        if self._stop.is_set():
            return  # stopped during the trial: the launcher reverts at the next start
        if not problems:
            self.slots.confirm()
            self._report(__version__, UpdatePhase.CONFIRMED)
            self._resume_pending()  # a newer release announced during the switch
            return
        detail = f"self-test failed: {'; '.join(problems)}"
        self.slots.revert(detail)
        self._report(__version__, UpdatePhase.ROLLED_BACK, detail)
        self._restart_when_idle()

    def _restart_when_idle(self) -> None:
        """Stop taking keys once no invitation and no reason wait is live, then restart."""
        while not self.pause_if_idle():
            if self._stop.wait(0.2):
                return
        self.restart()

    def _problems(self) -> list[str]:
        try:
            return self.self_test()
        except Exception as exc:  # a self-test that raises has failed, it does not end the trial
            return [f"{type(exc).__name__}: {exc}"]

    # -- an update command ------------------------------------------------------------------
    def handle(self, update: commands.Update) -> None:
        """paho network thread (the router parsed the command): start the worker; never raises."""
        if self.slots is not None:
            self.slots.keep_pending(commands.payload(update))  # the newest wins, also across a restart
            if self._switched or self.slots.trial() is not None:
                _LOG.info("update to %s waits: the release on trial keeps the other slot", update.release)
                return  # its slot is the way back: taken up once the trial is confirmed or undone
        if not self._busy.acquire(blocking=False):
            _LOG.info("update to %s waits: another update is under way", update.release)
            self._queued = update
            return
        threading.Thread(target=self._run, args=(update,), name="updater", daemon=True).start()

    def _run(self, update: commands.Update) -> None:
        try:
            self._apply(update)
        except Exception as exc:  # the worker's boundary: report, never kill the terminal
            _LOG.exception("update to %s failed", update.release)
            self._fail(update.release, f"{type(exc).__name__}: {exc}")
        finally:
            queued, self._queued = self._queued, None
            if self.slots is not None and queued is None and not self._stop.is_set():
                self.slots.keep_pending(None)  # done with: switched, refused, or nothing to do
            self._busy.release()
            if queued is not None and not self._stop.is_set() and not self._switched:
                self.handle(queued)  # after a switch, boot.json keeps it for the new release

    def _apply(self, update: commands.Update) -> None:
        release = update.release
        if self._already_done(release):
            return
        self._report(release, UpdatePhase.DOWNLOADING)
        try:
            manifest = self._verified(update)
            slots = self._slots()
            incoming = slots.folder / ".incoming"
            shutil.rmtree(incoming, ignore_errors=True)
            wheel = self._download(update, manifest, incoming)
            target = slots.other()
            self.install(slots.path(target), wheel, update.url)
        except UpdateRefused as exc:
            self._fail(release, str(exc))
            return
        finally:
            if self.slots is not None:
                shutil.rmtree(self.slots.folder / ".incoming", ignore_errors=True)
        self._report(release, UpdatePhase.VERIFIED)
        while not self.pause_if_idle():  # an invitation or a reason wait is live: never in the middle of a rating
            if self._stop.wait(0.2):
                return
        try:
            slots.switch(target, release, __version__)
        except BaseException:  # boot.json or the link not written (a full disk): this release runs on
            self.resume()  # a paused terminal that never restarts would count nothing
            raise
        self._switched = True
        _LOG.warning("update to %s: switched to slot %s; restarting into it", release, target)
        self.restart()

    def _already_done(self, release: str) -> bool:
        if release == __version__ and (self.slots is None or self.slots.trial() is None):
            self._report(release, UpdatePhase.CONFIRMED)
            return True
        last = self._state
        if last is not None and last.release == release and last.phase is UpdatePhase.ROLLED_BACK:
            _LOG.warning("update to %s refused: it rolled back here before", release)
            return True
        return last is not None and last.release == release and last.phase not in FINAL_PHASES

    def _fail(self, release: str, detail: str) -> None:
        if self.slots is not None:
            self.slots.record(release, UpdatePhase.FAILED.value, detail)
        self._report(release, UpdatePhase.FAILED, detail)

    def _slots(self) -> Slots:
        if self.slots is None:
            raise UpdateRefused("this terminal is not installed in two slots (rerun install-terminal.sh)")
        return self.slots

    def _verified(self, update: commands.Update) -> Manifest:
        """The manifest, if the hall's release key signed it and it is this terminal's release."""
        pub_path = self.config.base / RELEASE_PUB
        try:
            public_key = bytes.fromhex(pub_path.read_text().strip())
        except (OSError, ValueError):
            raise UpdateRefused(f"no hall release key in {pub_path} (`haocha release key` on the hub)") from None
        if update.manifest is None:  # a board's command (by reference, HMAC): never a CPython terminal's
            raise UpdateRefused("the update carries no manifest: it is a board's, not a CPython terminal's")
        text = update.manifest.encode()
        if len(update.sig) != 128 or not ed25519.verify(public_key, text, bytes.fromhex(update.sig)):
            raise UpdateRefused("bad signature: the manifest is not signed with the hall's release key")
        manifest = Manifest.decode(text)
        if manifest.release != update.release:
            raise UpdateRefused(f"the manifest is for release {manifest.release}, not {update.release}")
        if manifest.kind is not ReleaseKind.TERMINAL:
            raise UpdateRefused(f"the release is for {manifest.kind.value} terminals, not CPython ones")
        wheels = [f for f in manifest.files if _wheel_version(f.name) == manifest.release]
        if len(wheels) != 1:
            raise UpdateRefused(f"the manifest lists no haocha-{manifest.release} wheel")
        return manifest

    def _download(self, update: commands.Update, manifest: Manifest, folder: Path) -> Path:
        """Every file of ``manifest`` into ``folder``, each checked; returns the haocha wheel."""
        folder.mkdir(parents=True)
        context = self._tls(update.url)
        for entry in manifest.files:
            url = update.url.rstrip("/") + "/" + entry.name
            try:
                with urllib.request.urlopen(url, timeout=60, context=context) as response:
                    data = response.read(entry.size + 1)
            except (OSError, ValueError) as exc:
                raise UpdateRefused(f"cannot download {entry.name}: {exc}") from None
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise UpdateRefused(f"{entry.name} does not match the manifest (size or SHA-256)")
            (folder / entry.name).write_bytes(data)
        return next(folder / f.name for f in manifest.files if _wheel_version(f.name) == manifest.release)

    def _tls(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("https://"):
            return None
        ca = self.config.broker_file("ca")
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)

    def _pip_install(self, target: Path, wheel: Path, url: str) -> None:
        """A fresh virtual environment in ``target`` with the wheel and its dependencies, from the
        hub alone: the downloaded wheel and the ``/fleet/`` wheelhouse (pip --no-index)."""
        shutil.rmtree(target, ignore_errors=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        self._run_step([base_python, "-m", "venv", str(target)], "making the slot's venv")
        fleet = url.split("/fleet/", 1)[0] + "/fleet/"
        ca = self.config.broker_file("ca") if url.startswith("https://") else None
        self._run_step(
            [
                str(target / "bin" / "python"),
                *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir", "--no-index"),
                *("--find-links", str(wheel.parent), "--find-links", fleet),
                *(("--cert", str(ca)) if ca is not None else ()),
                f"haocha[pi] @ {wheel.as_uri()}",
            ],
            "pip install",
        )

    @staticmethod
    def _run_step(command: list[str], what: str) -> None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UpdateRefused(f"{what} failed: {exc}") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no output"]
            raise UpdateRefused(f"{what} failed: {lines[-1].strip()[:150]}")

    def close(self) -> None:
        self._stop.set()


def _wheel_version(name: str) -> str | None:
    match = _WHEEL_RE.fullmatch(name)
    return match.group(1) if match else None


def running_slots() -> Slots | None:
    return slots_of_running_program()
