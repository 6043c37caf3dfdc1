"""The rating state machine: keys in, committed journal rows and feedback out.

Rules (SPEC section 1): in ``free`` mode an accepted press starts a lockout; in ``invited`` and
``staff`` modes only the first press during a live invitation is a rating, and every other rating
press is journaled as ``ignored`` (staff pressing the keys themselves is the fraud the national
rules forbid). After a bad rating the terminal waits for a reason key. An invitation for a case
rated here already opens nothing: commands arrive at QoS 1, so a copy may come again after the
rating (a hub restarted between publishing and recording it, a reconnect).

Feedback is shown only after the journal commit returns: a citizen never sees "thank you" for a
press that a power cut could still lose, nor for a row the journal refused because it breaks a rule
of :mod:`protocol.rules` (that press gets the refused feedback and an ERROR line, and changes
nothing else).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.frames import Kind, Trigger
from protocol.levels import Level

from .clock import Clock
from .config import TerminalConfig
from .errors import InvalidRow
from .journal import Journal
from .panel import Feedback, Key, KeyKind, Panel

_LOG = logging.getLogger(__name__)
#: Cases rated lately that a copy of their invitation must not reopen (the firmware keeps as many).
RATED_CASES_KEPT = 8


@dataclass(frozen=True, slots=True)
class Invitation:
    """A case waiting for its rating; ``expires_mono_ms`` on this terminal's monotonic clock."""

    case: str
    item: str | None
    staff: str | None
    expires_mono_ms: int
    trigger: str = Trigger.INVITE.value


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
    ) -> None:
        self.config = config
        self.journal = journal
        self.panel = panel
        self.clock = clock
        self.on_commit = on_commit
        self._lock = threading.RLock()
        self._invitation: Invitation | None = None
        self._rated_cases: deque[str] = deque(maxlen=RATED_CASES_KEPT)
        self._lockout_until_ms = 0
        self._awaiting_reason: tuple[int, int] | None = None  # (rating seq, deadline mono ms)
        self._feedback_until_ms = 0
        #: The staff member signed in at the window (config, or a ``staff`` command from the hub).
        self.staff = config.staff
        self.counts = {"ratings": 0, "ignored": 0, "reasons": 0, "staff": 0, "invalid": 0}

    # -- inputs -----------------------------------------------------------------------------
    def press(self, key: Key) -> int | None:
        """Handle one key; return the committed seq, or None if nothing was journaled.
        Runs on the panel's thread; raises JournalError if the commit failed (nothing accepted).
        A row that breaks a rule is not journaled: the press is consumed with the refused feedback."""
        try:
            seq, feedback = self._handle(key)
        except InvalidRow as exc:
            _LOG.error("press of %s %r not journaled: %s", key.kind.value, key.value, exc)
            seq, feedback = None, Feedback.REFUSED
        if feedback is not None:
            self.panel.show(feedback)
        if seq is not None:
            self.on_commit(seq)
        return seq

    def _handle(self, key: Key) -> tuple[int | None, Feedback | None]:
        with self._lock:
            now = self.clock.mono_ms()
            self._expire(now)
            try:
                if key.kind is KeyKind.REASON:
                    return self._reason(key.value, now)
                if key.kind is KeyKind.STAFF:
                    return self._staff_key(now)
                return self._rating(Level.parse(key.value), now)
            except InvalidRow:
                self.counts["invalid"] += 1
                raise

    def invite(self, case: str, item: str | None, staff: str | None, expires_mono_ms: int | None = None) -> bool:
        """Open an invitation (from the hub's ``cmd``); False if it has already expired, or if its
        case was rated here (a copy of the invitation: see :meth:`has_rated`)."""
        now = self.clock.mono_ms()
        deadline = expires_mono_ms if expires_mono_ms is not None else now + int(self.config.timing.invite_s * 1000)
        if deadline <= now:
            return False
        with self._lock:
            if case in self._rated_cases:
                return False
            self._invitation = Invitation(case, item, staff, deadline)
        self.panel.show(Feedback.READY)
        return True

    def sign_in(self, staff: str | None) -> None:
        """Staff sign-in (None: signed out); later events carry this staff id."""
        with self._lock:
            self.staff = staff

    def cancel(self, case: str | None = None) -> None:
        with self._lock:
            if self._invitation is not None and case in (None, self._invitation.case):
                self._invitation = None
            feedback = self._resting_feedback()
        self.panel.show(feedback)

    def show_resting(self) -> None:
        """Light the panel for the current state (at start: free mode shows its keys ready)."""
        with self._lock:
            self._expire(self.clock.mono_ms())
            feedback = self._resting_feedback()
        self.panel.show(feedback)

    def tick(self) -> None:
        """Expire invitations and reason waits, restore the resting lights (main loop)."""
        with self._lock:
            now = self.clock.mono_ms()
            changed = self._expire(now)
            if self._feedback_until_ms and now >= self._feedback_until_ms:
                self._feedback_until_ms = 0
                changed = True
            feedback = self._resting_feedback() if changed else None
        if feedback is not None:
            self.panel.show(feedback)

    def has_rated(self, case: str) -> bool:
        """Was ``case`` rated here lately (among the last :data:`RATED_CASES_KEPT` rated)?"""
        with self._lock:
            return case in self._rated_cases

    @property
    def invitation(self) -> Invitation | None:
        """The live invitation, if any."""
        with self._lock:
            self._expire(self.clock.mono_ms())
            return self._invitation

    @property
    def ready(self) -> bool:
        """Would a rating key press be accepted now?"""
        with self._lock:
            now = self.clock.mono_ms()
            self._expire(now)
            return self._can_rate(now) is not None

    # -- rules ------------------------------------------------------------------------------
    def _expire(self, now: int) -> bool:
        changed = False
        if self._invitation is not None and now >= self._invitation.expires_mono_ms:
            self._invitation, changed = None, True
        if self._awaiting_reason is not None and now >= self._awaiting_reason[1]:
            self._awaiting_reason, changed = None, True  # the hub counts it as 'unspecified'
        return changed

    def _can_rate(self, now: int) -> str | None:
        """The trigger a rating press would get now, or None if it would be ignored."""
        if self._awaiting_reason is not None:
            return None
        if self.config.mode == "free":
            return Trigger.FREE.value if now >= self._lockout_until_ms else None
        return self._invitation.trigger if self._invitation is not None else None

    def _rating(self, level: Level, now: int) -> tuple[int | None, Feedback | None]:
        if level.value not in self._layout_levels():
            _LOG.warning("key for level %s is not in this terminal's layout", level.value)
            return None, None
        trigger = self._can_rate(now)
        if trigger is None:
            seq = self._commit(Kind.IGNORED, level=level.value, staff=self.staff)  # who was at the window
            self.counts["ignored"] += 1
            return seq, Feedback.REFUSED
        inv = self._invitation if trigger != Trigger.FREE.value else None
        seq = self._commit(
            Kind.RATING,
            level=level.value,
            trigger=trigger,
            case=inv.case if inv else None,
            item=inv.item if inv else self.config.item,
            staff=inv.staff if inv else self.staff,
        )
        self.counts["ratings"] += 1
        if inv is not None:
            self._rated_cases.append(inv.case)
        self._invitation = None
        self._lockout_until_ms = now + int(self.config.timing.lockout_s * 1000)
        if level.is_bad and self._has_reason_keys():
            self._awaiting_reason = (seq, now + int(self.config.timing.reason_s * 1000))
            return seq, Feedback.ASK_REASON
        self._feedback_until_ms = now + int(self.config.timing.thanks_s * 1000)
        return seq, Feedback.THANKS

    def _reason(self, reason: str, now: int) -> tuple[int | None, Feedback | None]:
        if self._awaiting_reason is None or reason not in self.config.reasons:
            return None, None  # a reason key outside a reason wait changes nothing
        rating_seq, _deadline = self._awaiting_reason
        seq = self._commit(Kind.REASON, reasons=[reason], ref=rating_seq)
        self.counts["reasons"] += 1
        self._awaiting_reason = None
        self._feedback_until_ms = now + int(self.config.timing.thanks_s * 1000)
        return seq, Feedback.THANKS

    def _staff_key(self, now: int) -> tuple[int | None, Feedback | None]:
        if self.config.mode != "staff":
            return None, None
        seq = self._commit(
            Kind.STAFF, trigger=Trigger.STAFF.value, item=self.config.item, staff=self.staff, case_from_seq=True
        )
        self.counts["staff"] += 1
        deadline = now + int(self.config.timing.invite_s * 1000)
        self._invitation = Invitation(
            self.journal.local_case(seq), self.config.item, self.staff, deadline, Trigger.STAFF.value
        )
        return seq, Feedback.READY

    def _commit(self, kind: Kind, case_from_seq: bool = False, **fields: Any) -> int:
        """Journal one row (InvalidRow if it breaks a rule: then nothing changes)."""
        wall_ms = self.clock.wall_ms()
        body = {
            "kind": kind.value,
            "window": self.config.window,
            "boot": self.clock.boot_id,
            "mono_ms": self.clock.mono_ms(),
            "wall_ms": wall_ms,
            "synced": self.clock.synced(wall_ms),
        }
        body.update({k: v for k, v in fields.items() if v is not None})
        return self.journal.append(body, case_from_seq=case_from_seq)

    # -- helpers ----------------------------------------------------------------------------
    def _layout_levels(self) -> frozenset[str]:
        return self.panel.levels

    def _has_reason_keys(self) -> bool:
        return bool(self.panel.reasons & set(self.config.reasons))

    def _resting_feedback(self) -> Feedback:
        if self._awaiting_reason is not None:
            return Feedback.ASK_REASON
        if self.config.mode == "free" or self._invitation is not None:
            return Feedback.READY
        return Feedback.IDLE
