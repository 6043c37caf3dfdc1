"""The terminal program assembled: journal, panel, evaluator and uplink (``haocha terminal run``).

Under systemd (``Type=notify``, :mod:`protocol.sdnotify`) :meth:`Terminal.run` says READY=1 once
the journal is open and the panel started, and its tick loop pings the watchdog: a terminal
whose loop hangs is restarted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from protocol.sdnotify import Notifier

from .clock import Clock
from .commands import CommandRouter
from .config import TerminalConfig
from .errors import JournalError
from .evaluator import Evaluator
from .hubconfig import HubConfigFile
from .journal import Journal
from .panel import Key, Panel
from .panels import open_panel
from .updater import Updater, running_slots
from .uplink import Uplink

_LOG = logging.getLogger(__name__)
TICK_S = 0.1


class Terminal:
    """One window's terminal. A context manager; ``close()`` is idempotent."""

    def __init__(
        self,
        config: TerminalConfig,
        panel: Panel | None = None,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        **panel_options: Any,
    ) -> None:
        """``stop``: an event of the caller's that :meth:`stop` and an update's restart set too."""
        self.config = config
        self.clock = clock or Clock(config.clock)
        self.journal = Journal(config.journal_path, config.device)
        self.panel = panel if panel is not None else open_panel(config, **panel_options)
        self.hub_config = HubConfigFile(config.journal_path.parent)
        self.evaluator = Evaluator(
            config, self.journal, self.panel, self.clock, on_commit=self._committed, on_config=self._configured
        )
        self.evaluator.restore(self.hub_config.version, self.hub_config.settings)
        self.uplink = Uplink(config, self.journal, self.clock, update_state=lambda: self.updater.state)
        self.uplink.config_report = self.hub_config.report
        self.updater = Updater(
            config,
            self.evaluator.pause_if_idle,
            self.self_test,
            self.uplink.state_changed,
            self._restart,
            running_slots(),
            resume=self.evaluator.resume,
        )
        self.commands = CommandRouter(self.evaluator, self.clock, self.hub_config, on_update=self.updater.handle)
        self.commands.on_report = self._report_config
        self.uplink.on_command = self.commands.handle
        self._stop = stop or threading.Event()
        #: Set when an update asks for a restart through the launcher (exit RESTART_EXIT).
        self.restarting = threading.Event()
        self.notify = Notifier()
        #: Set once the panel delivers keys.
        self.started = threading.Event()
        self._closed = False

    def _committed(self, seq: int) -> None:
        self.uplink.wake()

    def _configured(self, version: int, settings: dict[str, Any]) -> None:
        self.commands.applied(version, settings)

    def _report_config(self) -> None:
        self.uplink.report_config(self.hub_config.report)

    def start(self) -> None:
        self.uplink.start()
        self.panel.start(self.press, self.uplink.set_panel_status)
        self.evaluator.show_resting()
        self.updater.start()
        self.started.set()
        _LOG.info(
            "terminal %s at window %s (%s, %s mode), journal epoch %s, last seq %d",
            self.config.device,
            self.config.window,
            self.config.kind,
            self.config.mode,
            self.journal.epoch,
            self.journal.last_seq,
        )

    def press(self, key: Key) -> int | None:
        """Handle a key from the panel (its thread). Returns the committed seq, if any."""
        return self.evaluator.press(key)

    def run(self, stop: threading.Event | None = None) -> None:
        """Start, then tick until ``stop`` (or :meth:`stop`) is set."""
        self.start()
        self.notify.ready(f"terminal {self.config.device} at window {self.config.window}")
        stop = stop or self._stop
        while not stop.wait(TICK_S) and not self._stop.is_set():
            self.evaluator.tick()
            self.notify.watchdog()

    def stop(self) -> None:
        self._stop.set()

    def self_test(self) -> list[str]:
        """What keeps a new release from confirming (SPEC section 13): its journal opens, the
        broker is reached over TLS, the panel link is up. Empty when all hold."""
        problems = []
        try:
            self.journal.summary()
        except (sqlite3.Error, JournalError, OSError) as exc:
            problems.append(f"the journal cannot be read: {exc}")
        if self.config.broker_file("ca") is None:
            problems.append("the broker is not reached over TLS ([broker] ca is unset)")
        elif not self.uplink.connected:
            problems.append("the broker is not reached")
        if not self.uplink.panel_ok:
            problems.append("the panel link is down")
        return problems

    def _restart(self) -> None:
        """An update switched slots: end the loop; the process exits with RESTART_EXIT."""
        self.restarting.set()
        self._stop.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.notify.stopping()
        self._stop.set()
        self.updater.close()
        self.uplink.close()
        self.panel.close()
        self.journal.close()
        self.notify.close()

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
