"""The rating state machine, the same rules as ``terminal/evaluator.py`` (SPEC section 1).

In ``free`` mode an accepted press starts a lockout; in ``invited`` and ``staff`` modes only the
first press during a live invitation is a rating. Every other rating press is journaled as
``ignored``. After a bad rating the terminal waits for a reason key (when the board has reason
keys). An invitation for one of the last RATED_KEPT cases rated here opens nothing (a QoS 1
copy of it arriving after the rating). Feedback is shown only after the journal append returned: never a "thank you" for a press
a power cut could still lose.

Every row is checked against the rules of ``protocol/rules.py`` (``wire.row_problem``) before it is
journaled, and every command before it changes anything: a row the hub could only store as invalid
is never journaled and never lights "thank you" (the press gets the refused beep and a log line).

Keys are tuples: ``("level", id)``, ``("reason", id)``, ``("staff", "")``. Single-threaded: the
main loop calls everything.
"""

from wire import row_problem, valid

IDLE = "idle"
READY = "ready"
ASK_REASON = "ask_reason"
THANKS = "thanks"
REFUSED = "refused"

BAD_LEVELS = ("dissatisfied", "very_dissatisfied")
RATED_KEPT = 8  # as RATED_CASES_KEPT of terminal/evaluator.py


class InvalidRow(ValueError):
    """A row that breaks a rule: not journaled."""


class Evaluator:
    def __init__(self, cfg, journal, board, clock):
        self.cfg = cfg
        self.journal = journal
        self.board = board
        self.clock = clock
        timing = cfg.get("timing", {})
        self.lockout_ms = int(timing.get("lockout_s", 10.0) * 1000)
        self.invite_ms = int(timing.get("invite_s", 60.0) * 1000)
        self.reason_ms = int(timing.get("reason_s", 20.0) * 1000)
        self.thanks_ms = int(timing.get("thanks_s", 2.0) * 1000)
        self.mode = cfg.get("mode", "free")
        self.staff = cfg.get("staff")  # signed-in staff: config, or a ``staff`` command from the hub
        self.reasons = tuple(cfg.get("reasons", ()))
        self.invitation = None  # (case, item, staff, expires mono ms, trigger)
        self.rated = []  # the last RATED_KEPT cases rated here, oldest first
        self.lockout_until = 0
        self.awaiting_reason = None  # (rating seq, deadline mono ms)
        self.feedback_until = 0

    # -- inputs -----------------------------------------------------------------------------
    def press(self, key):
        """Handle one key; return (seq or None, kind or None). Raises JournalError when the
        commit failed (nothing accepted, no feedback). A row that breaks a rule is not journaled:
        the press is consumed with the refused feedback."""
        now = self.clock.mono_ms()
        self._expire(now)
        kind, value = key
        try:
            if kind == "reason":
                seq, row_kind, feedback = self._reason(value, now)
            elif kind == "staff":
                seq, row_kind, feedback = self._staff_key(now)
            else:
                seq, row_kind, feedback = self._rating(value, now)
        except InvalidRow as exc:
            self.board.log("press of %s %s not journaled: its row breaks the rule of field %s" % (kind, value, exc))
            seq, row_kind, feedback = None, None, REFUSED
        if feedback is not None:
            self.board.show(feedback)
        return seq, row_kind

    def invite(self, case, item, staff, expires_mono_ms=None):
        now = self.clock.mono_ms()
        deadline = expires_mono_ms if expires_mono_ms is not None else now + self.invite_ms
        if deadline <= now or case in self.rated:
            return False
        self.invitation = (case, item, staff, deadline, "invite")
        self.board.show(READY)
        return True

    def cancel(self, case=None):
        if self.invitation is not None and case in (None, self.invitation[0]):
            self.invitation = None
        self.board.show(self.resting())

    def tick(self):
        now = self.clock.mono_ms()
        changed = self._expire(now)
        if self.feedback_until and now >= self.feedback_until:
            self.feedback_until = 0
            changed = True
        if changed:
            self.board.show(self.resting())

    def ready(self):
        now = self.clock.mono_ms()
        self._expire(now)
        return self._can_rate(now) is not None

    # -- rules ------------------------------------------------------------------------------
    def _expire(self, now):
        changed = False
        if self.invitation is not None and now >= self.invitation[3]:
            self.invitation, changed = None, True
        if self.awaiting_reason is not None and now >= self.awaiting_reason[1]:
            self.awaiting_reason, changed = None, True  # the hub counts it as 'unspecified'
        return changed

    def _can_rate(self, now):
        if self.awaiting_reason is not None:
            return None
        if self.mode == "free":
            return "free" if now >= self.lockout_until else None
        return self.invitation[4] if self.invitation is not None else None

    def _rating(self, level, now):
        if level not in self.board.levels:
            return None, None, None
        trigger = self._can_rate(now)
        if trigger is None:
            seq = self._commit("ignored", level=level, staff=self.staff)
            return seq, "ignored", REFUSED
        inv = self.invitation if trigger != "free" else None
        seq = self._commit("rating", level=level, trigger=trigger, case=inv[0] if inv else None,
                           item=inv[1] if inv else self.cfg.get("item"),
                           staff=inv[2] if inv else self.staff)
        if inv:
            self.rated.append(inv[0])
            if len(self.rated) > RATED_KEPT:
                self.rated.pop(0)
        self.invitation = None
        self.lockout_until = now + self.lockout_ms
        if level in BAD_LEVELS and self._has_reason_keys():
            self.awaiting_reason = (seq, now + self.reason_ms)
            return seq, "rating", ASK_REASON
        self.feedback_until = now + self.thanks_ms
        return seq, "rating", THANKS

    def _reason(self, reason, now):
        if self.awaiting_reason is None or reason not in self.reasons:
            return None, None, None
        seq = self._commit("reason", reasons=[reason], ref=self.awaiting_reason[0])
        self.awaiting_reason = None
        self.feedback_until = now + self.thanks_ms
        return seq, "reason", THANKS

    def _staff_key(self, now):
        if self.mode != "staff":
            return None, None, None
        item, staff = self.cfg.get("item"), self.staff
        seq = self._commit("staff", case_from_seq=True, trigger="staff", item=item, staff=staff)
        self.invitation = (self.journal.local_case(seq), item, staff, now + self.invite_ms, "staff")
        return seq, "staff", READY

    def _commit(self, kind, case_from_seq=False, **fields):
        """Journal one row; InvalidRow (nothing written, nothing changed) if it breaks a rule."""
        clock, seq = self.clock, self.journal.last_seq + 1  # the seq the append gives it
        wall = clock.wall_ms()
        body = {"kind": kind, "window": self.cfg["window"], "boot": clock.boot_id,
                "mono_ms": clock.mono_ms(), "wall_ms": wall, "synced": clock.synced(wall)}
        for name in fields:
            if fields[name] is not None:
                body[name] = fields[name]
        if case_from_seq:
            body["case"] = self.journal.local_case(seq)
        problem = row_problem(body, seq)
        if problem:
            raise InvalidRow(problem)
        return self.journal.append(body)

    # -- helpers ----------------------------------------------------------------------------
    def _has_reason_keys(self):
        for r in self.board.reasons:
            if r in self.reasons:
                return True
        return False

    def resting(self):
        if self.awaiting_reason is not None:
            return ASK_REASON
        if self.mode == "free" or self.invitation is not None:
            return READY
        return IDLE


def handle_command(evaluator, clock, cmd):
    """A ``cmd`` message from the hub (invite, cancel, staff), as ``terminal/commands.py``: None
    once applied, else the field that made it refused (then nothing changed)."""
    if not isinstance(cmd, dict) or not isinstance(cmd.get("cmd"), str):
        return "cmd"
    g = cmd.get
    name, case, ttl_ms, sent_ms = g("cmd"), g("case"), g("ttl_ms"), g("sent_ms")
    fields = {"invite": ("case", "item", "staff"), "cancel": ("case",), "staff": ("staff",)}.get(name)
    if fields is None:
        return "cmd"
    for field in fields:
        if g(field) is not None and not valid(g(field)):
            return field
    if name == "cancel":
        evaluator.cancel(case)
    elif name == "staff":
        evaluator.staff = g("staff")  # staff sign-in: later events carry this id
    elif case is None:
        return "case"
    elif not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or not 0 <= ttl_ms <= 604800000:
        return "ttl_ms"  # a week at most, as TTL_MAX_MS of terminal/commands.py
    else:
        if clock.synced() and isinstance(sent_ms, int):
            ttl_ms -= max(0, clock.wall_ms() - sent_ms)
        evaluator.invite(case, g("item"), g("staff"), clock.mono_ms() + ttl_ms)
    return None
