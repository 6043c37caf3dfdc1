"""The rating rules of :mod:`terminal.core` with this terminal's keys, journal and lights.

The rules (SPEC section 1: lockout, invitations, ignored presses, the reason wait, a copy of an
invitation never reopening a case rated here) live in :class:`terminal.core.Rules`, the very file
the MicroPython firmware runs. This wrapper adds what CPython needs around them: a lock (keys
arrive on panel threads, invitations on the MQTT thread, ticks on the main loop), the SQLite
journal, the panel, log lines and counters.

PanelSignal is shown only after the journal commit returns: a citizen never sees "thank you" for a
press that a power cut could still lose, nor for a row the journal refused because it breaks a rule
of :mod:`protocol.rules` (that press gets the refusal beep and an ERROR line, and changes
nothing else).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.levels import Level

from . import conf
from .clock import Clock
from .config import TerminalConfig
from .core import Rules
from .errors import InvalidRow
from .journal import Journal
from .panel import Key, KeyKind, Panel, PanelSignal

_LOG = logging.getLogger(__name__)
#: The counter of each row kind.
_COUNTED = {"rating": "ratings", "ignored": "ignored", "reason": "reasons", "staff": "staff"}


@dataclass(frozen=True, slots=True)
class Invitation:
    """A case waiting for its rating; ``expires_mono_ms`` on this terminal's monotonic clock."""

    case: str
    item: str | None
    staff: str | None
    expires_mono_ms: int
    trigger: str


class Evaluator:
    """Thread-safe: keys arrive on panel threads, invitations on the MQTT thread, ticks on the
    main loop. ``on_commit`` is called (outside the lock) after each committed row."""

    def __init__(
        self,
        config: TerminalConfig,
        journal: Journal,
        panel: Panel,
        clock: Clock,
        on_commit: Callable[[int], None] = lambda seq: None,
        on_config: Callable[[int, dict[str, Any]], None] = lambda version, settings: None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.panel = panel
        self.clock = clock
        self.on_commit = on_commit
        self._lock = threading.RLock()
        timing = config.timing
        self.rules = Rules(
            config.mode,
            config.item,
            config.staff,
            _ms(timing.lockout_s),
            _ms(timing.invite_s),
            _ms(timing.reason_s),
            _ms(timing.thanks_s),
        )
        self.counts = {"ratings": 0, "ignored": 0, "reasons": 0, "staff": 0, "invalid": 0}
        #: The hub's configuration, taken up once no rating is under way (SPEC section 13).
        self.on_config = on_config
        self._timing = {"lockout_s": timing.lockout_s, "invite_s": timing.invite_s, "reason_s": timing.reason_s}
        #: Set when an update switches to a new release: keys are no longer taken.
        self._paused = False

    def restore(self, version: int, settings: dict[str, Any]) -> None:
        """At start: put the hub's configuration kept on disk in force (terminal.toml under it)."""
        if version > 0:
            with self._lock:
                self.rules.pending = (version, settings)
                conf.update(self.rules, self._timing)

    @property
    def staff(self) -> str | None:
        """The staff member signed in at the window (config, or a ``staff`` command from the hub)."""
        return self.rules.staff

    # -- inputs -----------------------------------------------------------------------------
    def press(self, key: Key) -> int | None:
        """Handle one key; return the committed seq, or None if nothing was journaled.
        Runs on the panel's thread; raises JournalError if the commit failed (nothing accepted).
        A row that breaks a rule is not journaled: the press is consumed with the refusal beep."""
        try:
            seq, signal = self._handle(key)
        except InvalidRow as exc:
            _LOG.error("press of %s %r not journaled: %s", key.kind.value, key.value, exc)
            seq, signal = None, PanelSignal.REFUSED
        if signal is not None:
            self.panel.show(signal)
        if seq is not None:
            self.on_commit(seq)
        return seq

    def _handle(self, key: Key) -> tuple[int | None, PanelSignal | None]:
        value = Level.parse(key.value).value if key.kind is KeyKind.LEVEL else key.value
        with self._lock:
            if self._paused:
                return None, None
            rules, now = self._keys(), self.clock.mono_ms()
            row = rules.press(key.kind.value, value, now)
            if row is None:
                if key.kind is KeyKind.LEVEL and value not in rules.levels:
                    _LOG.warning("key for level %s is not in this terminal's layout", value)
                return None, None
            kind, fields = row
            try:
                seq = self._commit(kind, fields, now)
            except InvalidRow:
                self.counts["invalid"] += 1
                raise
            self.counts[_COUNTED[kind]] += 1
            case = self.journal.local_case(seq) if kind == "staff" else ""
            return seq, PanelSignal(rules.committed(kind, fields, seq, now, case))

    def _keys(self) -> Rules:
        """The rules, told which keys the panel has now."""
        rules = self.rules
        conf.keys(rules, self.panel.levels, self.panel.reasons, self.config.reasons)
        return rules

    def command(self, cmd: object, valid: Callable[[str, object], bool]) -> tuple[str | None, str | None]:
        """Apply a ``cmd`` from the hub (:meth:`terminal.core.Rules.handle`, a configuration
        :func:`terminal.conf.handle`) and light the panel for it; the rules' answer."""
        clock = self.clock
        with self._lock:
            wall_ms = clock.wall_ms() if clock.synced() else None
            if isinstance(cmd, dict) and cmd.get("cmd") == "config":
                problem, done = conf.handle(self.rules, cmd)
            else:
                problem, done = self.rules.handle(cmd, valid, clock.mono_ms(), wall_ms)
            signal = self._resting_signal() if done == "cancel" else None
            settled = self._settle() if done == "config" else None
        if done == "invite":
            self.panel.show(PanelSignal.READY)
        elif signal is not None:
            self.panel.show(signal)
        if settled is not None:
            self.on_config(*settled)
        return problem, done

    def _settle(self) -> tuple[int, dict[str, Any]] | None:
        """Under the lock: the pending configuration in force now unless a rating is under way."""
        version = conf.update(self.rules, self._timing)
        if not version:
            return None
        _LOG.info("configuration %d from the hub in force: %s", version, self.rules.conf[1])
        return version, self.rules.conf[1]

    @property
    def config_pending(self) -> int:
        """The version of a configuration waiting for the rating under way to end (0: none)."""
        with self._lock:
            pending = self.rules.pending
        return 0 if pending is None else pending[0]

    def sign_in(self, staff: str | None) -> None:
        """Staff sign-in (None: signed out); later events carry this staff id."""
        with self._lock:
            self.rules.staff = staff

    def show_resting(self) -> None:
        """Light the panel for the current state (at start: free mode shows its keys ready)."""
        with self._lock:
            self.rules.expire(self.clock.mono_ms())
            signal = self._resting_signal()
        self.panel.show(signal)

    def tick(self) -> None:
        """Expire invitations and reason waits, restore the resting lights (main loop)."""
        with self._lock:
            changed = self.rules.tick(self.clock.mono_ms())
            signal = self._resting_signal() if changed else None
            settled = self._settle() if self.rules.pending is not None else None
        if signal is not None:
            self.panel.show(signal)
        if settled is not None:
            self.on_config(*settled)

    def has_rated(self, case: str) -> bool:
        """Was ``case`` rated here lately (among the last :data:`terminal.core.RATED_KEPT` rated)?"""
        with self._lock:
            return case in self.rules.rated

    @property
    def invitation(self) -> Invitation | None:
        """The live invitation, if any."""
        with self._lock:
            self.rules.expire(self.clock.mono_ms())
            inv = self.rules.invitation
        return Invitation(*inv) if inv is not None else None

    def pause_if_idle(self) -> bool:
        """Stop taking keys if no invitation and no reason wait is live; True if it stopped
        (an update then switches releases: never in the middle of a rating). The keys go dark,
        so no one presses a key that is not taken."""
        with self._lock:
            self.rules.expire(self.clock.mono_ms())
            if self.rules.invitation is not None or self.rules.awaiting_reason is not None:
                return False
            self._paused = True
        self.panel.show(PanelSignal.IDLE)
        return True

    def resume(self) -> None:
        """Take keys again: the switch a pause was for did not happen (this release runs on)."""
        with self._lock:
            self._paused = False
        self.show_resting()

    @property
    def ready(self) -> bool:
        """Would a rating key press be accepted now?"""
        with self._lock:
            now = self.clock.mono_ms()
            self.rules.expire(now)
            return self.rules.trigger(now) is not None

    # -- helpers ----------------------------------------------------------------------------
    def _commit(self, kind: str, fields: dict[str, Any], now: int) -> int:
        """Journal one row (InvalidRow if it breaks a rule: then nothing changes)."""
        wall_ms = self.clock.wall_ms()
        body = {
            "kind": kind,
            "window": self.config.window,
            "boot": self.clock.boot_id,
            "mono_ms": now,
            "wall_ms": wall_ms,
            "synced": self.clock.synced(wall_ms),
            **fields,
        }
        return self.journal.append(body, case_from_seq=kind == "staff")

    def _resting_signal(self) -> PanelSignal:
        return PanelSignal.IDLE if self._paused else PanelSignal(self.rules.resting())


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
