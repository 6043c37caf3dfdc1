"""The hub daemon's alert thread: evaluates every rule each ``[alerts] interval_s`` and keeps the
alerts in the store in line (:func:`hub.alerts.lifecycle.sync`), then wakes the notifier.

It reads the store through its own connection (WAL: readers never hold up the writer process)
and writes only when an alert opens, closes or changes. A rule that raises is logged once (and
again only after it has worked in between); its alerts stay as they were, the other rules go on.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from ..config import DB_NAME, HubConfig
from ..store import Store, now_ms
from .lifecycle import Finding, sync
from .rules import Rule, build_rules
from .webhooks import Notifier

_LOG = logging.getLogger(__name__)


class AlertEngine:
    def __init__(self, config: HubConfig, home: Path, health: Callable[[], dict[str, int]]) -> None:
        self.config = config
        self.home = home
        self.rules: list[Rule] = build_rules(config, health)
        self.webhooks = [w.name for w in config.alerts.webhooks]
        self.notifier = Notifier(config, home)
        self._failing: set[str] = set()
        #: (rule, subject) of a live or held alert → when its condition was first found clear.
        self._clear_since: dict[tuple[str, str], int] = {}

    def start(self, start_thread: Callable[[str, Callable[[], None]], None], stopping: threading.Event) -> None:
        """Run the evaluation and the delivery loops on two threads of the caller's making."""
        start_thread("alerts", lambda: self.run(stopping))
        start_thread("alert-webhooks", lambda: self.notifier.run(stopping))
        _LOG.info(
            "alerts: %d rules every %gs, %d webhooks",
            len(self.rules),
            self.config.alerts.interval_s,
            len(self.webhooks),
        )

    def run(self, stopping: threading.Event) -> None:
        """Evaluate until ``stopping``; never ends by an exception."""
        store: Store | None = None
        while True:
            try:
                store = store or Store(self.home / DB_NAME)
                self._worked("store")
                self.tick(store, now_ms())
            except Exception:  # the store cannot be opened: try again at the next tick
                self._failed("store", "the hub database cannot be opened for alerts")
                if store is not None:
                    store.close()
                store = None
            if stopping.wait(self.config.alerts.interval_s):
                break
        self.notifier.wake()  # it sees ``stopping`` at once
        if store is not None:
            store.close()

    def tick(self, store: Store, at_ms: int) -> list[int]:
        """Evaluate every rule once at ``at_ms``; returns the ids of the alerts opened."""
        opened: list[int] = []
        for rule in self.rules:
            findings: list[Finding] = []
            try:
                findings = rule.evaluate(store.conn, at_ms)
                lingering = self._lingering(store, rule.name, {f.subject for f in findings}, at_ms)
                sent = self._sent_unstored(rule.name)
                opened += sync(store, rule.name, findings, self.webhooks, at_ms, sent, lingering)
            except sqlite3.Error:
                self._failed(rule.name, f"alert rule {rule.name}: the hub database cannot be read or written")
                self._send_unstored(store, rule.name, findings, at_ms)
            except Exception:
                self._failed(rule.name, f"alert rule {rule.name} failed; its alerts stay as they are")
            else:
                self._worked(rule.name)
                self.notifier.settle_unstored(rule.name)
        if opened:
            _LOG.info("alerts opened: %s", ", ".join(map(str, opened)))
            self.notifier.wake()
        return opened

    def _lingering(self, store: Store, rule: str, holding: set[str], at_ms: int) -> frozenset[str]:
        """Subjects of ``rule``'s live or held alerts clear for less than ``clear_minutes``."""
        known = _known(store, rule)
        for key in [k for k in self._clear_since if k[0] == rule and (k[1] not in known or k[1] in holding)]:
            del self._clear_since[key]
        clear_ms = self.config.alerts.clear_minutes * 60_000
        since = {s: self._clear_since.setdefault((rule, s), at_ms) for s in known - holding}
        return frozenset(s for s, t in since.items() if at_ms - t < clear_ms)

    def _send_unstored(self, store: Store, rule: str, findings: list[Finding], at_ms: int) -> None:
        """The store cannot take these (disk full): post the new ones at once rather than not at
        all (an alert stored and notified before is not sent again; if even reading fails, all)."""
        try:
            known = _known(store, rule)
        except sqlite3.Error:
            known = set()
        for f in findings:
            if f.subject in known:
                continue
            alert = {"id": None, "rule": f.rule, "subject": f.subject, "summary": f.summary, "detail": f.detail,
                     "opened_ms": at_ms}  # fmt: skip
            self.notifier.send_unstored(alert)

    def _sent_unstored(self, rule: str) -> Callable[[str], set[str]]:
        return lambda subject: self.notifier.unstored_sent_to(rule, subject)

    def _failed(self, what: str, message: str) -> None:
        if what not in self._failing:
            _LOG.exception(message)
            self._failing.add(what)

    def _worked(self, what: str) -> None:
        if what in self._failing:
            _LOG.info("alerts: %s works again", what)
            self._failing.discard(what)


def _known(store: Store, rule: str) -> set[str]:
    """Subjects of ``rule``'s live alerts and of those closed by hand while their condition held."""
    cur = store.conn.execute("SELECT subject FROM alerts WHERE rule = ? AND (state != 'closed' OR held = 1)", (rule,))
    return {s for (s,) in cur}
