"""The terminal's rules without I/O, one file for both terminals (SPEC sections 1 and 3).

The CPython terminal imports it as ``terminal.core`` (and wraps it with locks, SQLite, paho and the
panels); the MicroPython firmware runs this very file as ``core`` (``haocha device add --kind micro``
copies it onto the board). So it is written in the subset MicroPython runs: no imports, no
dataclasses, no f-strings; annotations name builtins only (the port's compiler drops them). It
keeps no clock and logs nothing: times are milliseconds of the terminal's monotonic clock passed
in, and every decision is returned for the caller to journal, show and log.

- :class:`Rules`: a key press → the row it makes (rating, ignored, reason, staff) or nothing; the
  lockout, the invitation, the reason wait, the cases rated here lately.
- :meth:`Rules.handle`: a ``cmd`` from the hub (invite, cancel, staff) applied, or refused. A
  ``config`` is ``conf.py``'s (the firmware loads it only for the moment it needs it).
- :class:`Window`: the uplink's decisions: which rows to hand MQTT, when to send the window again,
  what a hub's ``ack`` means.

Names are few on purpose (and reused across modules): each new one costs the firmware a slot of
MicroPython's string table (docs/micro.md, "Limits and figures"). ``_NAME = const(n)`` costs none.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(n: int) -> int:
        return n


# Panel signals (terminal.panel.PanelSignal values; docs/glossary.md).
IDLE = "idle"
READY = "ready"
ASK_REASON = "ask_reason"
THANKS = "thanks"
REFUSED = "refused"

BAD_LEVELS = ("dissatisfied", "very_dissatisfied")
#: Cases rated lately that a copy of their invitation must not reopen (commands travel at QoS 1).
RATED_KEPT = 8
#: The longest invitation a terminal accepts, a week (protocol.rules.INVITE_TTL_MAX_MS).
_TTL_MAX_MS = const(604800000)


class Rules:
    """The rating state machine (SPEC section 1). In ``free`` mode an accepted press starts a
    lockout; in ``invited`` and ``staff`` modes only the first press during a live invitation is a
    rating, and every other rating press is journaled as ``ignored``. After a bad rating it waits
    for a reason key (when the panel has a key for a configured reason). An invitation for a case
    rated here lately opens nothing.

    A press is two steps, so that nothing changes for a press the journal did not take:
    :meth:`press` says which row it makes, the caller journals it, :meth:`committed` applies it and
    says the panel signal. Single-threaded: the CPython terminal holds a lock around it."""

    def __init__(
        self,
        mode: str,
        item: str | None,
        staff: str | None,
        lockout_ms: int,
        invite_ms: int,
        reason_ms: int,
        thanks_ms: int,
    ) -> None:
        self.mode = mode
        self.item = item
        self.staff = staff  # signed in: from the config, or a ``staff`` command from the hub
        self.lockout_ms = lockout_ms
        self.invite_ms = invite_ms
        self.reason_ms = reason_ms
        self.thanks_ms = thanks_ms
        # The keys, set by the caller: the panel's rating keys, and the configured reasons it has a
        # key for (none: no reason wait after a bad rating).
        self.levels: tuple[str, ...] | frozenset[str] | list[str] = ()
        self.reasons: tuple[str, ...] | frozenset[str] | list[str] = ()
        self.invitation: tuple[str, str | None, str | None, int, str] | None = None  # case, item, staff, until, trigger
        self.rated: list[str] = []  # the last RATED_KEPT cases rated here, oldest first
        self.lockout_until = 0
        self.awaiting_reason: tuple[int, int] | None = None  # (rating seq, until)
        self.feedback_until = 0
        # The hub's configuration (version, settings) in force (0: none, terminal.toml alone) and
        # the one waiting for the rating under way to end (conf.py; the firmware holds the command
        # itself there until its loop checks it).
        self.conf: tuple[int, dict] = (0, {})
        self.pending: tuple[int, dict] | dict | None = None

    # -- a key press ------------------------------------------------------------------------
    def press(self, kind: str, value: str, now: int) -> tuple[str, dict[str, object]] | None:
        """The row a key (``kind`` level, reason or staff) makes now: (row kind, its fields), or
        None when the press changes nothing. Changes nothing itself but expiry."""
        self.expire(now)
        if kind == "reason":
            if self.awaiting_reason is None or value not in self.reasons:
                return None  # a reason key outside a reason wait changes nothing
            return "reason", {"reasons": [value], "ref": self.awaiting_reason[0]}
        if kind == "staff":
            if self.mode != "staff":
                return None
            body = {"trigger": "staff", "item": self.item, "staff": self.staff}
        elif value not in self.levels:
            return None  # not a key of this panel's layout
        else:
            trigger, inv = self.trigger(now), self.invitation
            if trigger is None:
                kind, body = "ignored", {"level": value, "staff": self.staff}  # who was at the window
            elif trigger == "free" or inv is None:
                kind, body = "rating", {"level": value, "trigger": trigger, "item": self.item, "staff": self.staff}
            else:
                kind, body = (
                    "rating",
                    {"level": value, "trigger": trigger, "case": inv[0], "item": inv[1], "staff": inv[2]},
                )
        return kind, {k: v for k, v in body.items() if v is not None}

    def committed(self, kind: str, body: dict[str, object], seq: int, now: int, case: str = "") -> str:
        """Apply the row of :meth:`press` once the journal holds it as ``seq`` (``case``: the local
        case a staff row opened); return the panel signal to show."""
        if kind == "ignored":
            return REFUSED
        if kind == "staff":
            self.invitation = (case, self.item, self.staff, now + self.invite_ms, "staff")
            return READY
        if kind == "rating":
            rated = body.get("case")
            if isinstance(rated, str):
                self.rated.append(rated)
                if len(self.rated) > RATED_KEPT:
                    self.rated.pop(0)
            self.invitation = None
            self.lockout_until = now + self.lockout_ms
            if body["level"] in BAD_LEVELS and self.reasons:
                self.awaiting_reason = (seq, now + self.reason_ms)
                return ASK_REASON
        else:
            self.awaiting_reason = None
        self.feedback_until = now + self.thanks_ms
        return THANKS

    # -- invitations and time ---------------------------------------------------------------
    def invite(self, case: str, item: str | None, staff: str | None, ttl_ms: int, now: int) -> bool:
        """Open an invitation for ``ttl_ms``; False if it has expired, or if its case was rated
        here (a copy of its invitation: ``case in rated``), and then nothing changed."""
        if ttl_ms <= 0 or case in self.rated:
            return False
        self.invitation = (case, item, staff, now + ttl_ms, "invite")
        return True

    def handle(self, cmd: object, valid: object, now: int, wall_ms: int | None = None) -> tuple[str | None, str | None]:
        """Apply a ``cmd`` from the hub (invite, cancel, staff): (None, what it did: its name, or
        None for an invitation that opened nothing), or (field, None): refused for that field
        (``cmd``: no command this terminal knows), and nothing changed. ``valid(field, value)``
        says whether a text later rows would carry keeps the rules of protocol/rules.py.

        An invitation carries its remaining life ``ttl_ms`` as the hub measured it when it sent it
        at its wall time ``sent_ms``: with a synchronised clock (``wall_ms`` given) the time the
        command spent at the broker is taken off."""
        name = cmd.get("cmd") if isinstance(cmd, dict) else None
        texts = {"invite": ("case", "item", "staff"), "cancel": ("case",), "staff": ("staff",)}
        fields = texts.get(name) if isinstance(name, str) else None
        if fields is None or not isinstance(cmd, dict):
            return "cmd", None
        for field in fields:
            if cmd.get(field) is not None and not valid(field, cmd[field]):  # type: ignore[operator]
                return field, None
        if name == "cancel":
            self.cancel(cmd.get("case"))
            return None, name
        if name == "staff":
            self.staff = cmd.get("staff")  # sign-in, or sign-out (None): later rows carry it
            return None, name
        case, ttl_ms, sent_ms = cmd.get("case"), cmd.get("ttl_ms"), cmd.get("sent_ms")
        if case is None:
            return "case", None
        if type(ttl_ms) is not int or not 0 <= ttl_ms <= _TTL_MAX_MS:
            return "ttl_ms", None
        if wall_ms is not None and type(sent_ms) is int:
            ttl_ms -= max(0, wall_ms - sent_ms)
        return None, name if self.invite(case, cmd.get("item"), cmd.get("staff"), ttl_ms, now) else None

    def cancel(self, case: str | None = None) -> None:
        """End the invitation (of ``case``, or whichever)."""
        if self.invitation is not None and case in (None, self.invitation[0]):
            self.invitation = None

    def expire(self, now: int) -> bool:
        """End an invitation or reason wait whose time is up; True if one ended."""
        changed = False
        if self.invitation is not None and now >= self.invitation[3]:
            self.invitation, changed = None, True
        if self.awaiting_reason is not None and now >= self.awaiting_reason[1]:
            self.awaiting_reason, changed = None, True  # the hub counts it as 'unspecified'
        return changed

    def tick(self, now: int) -> bool:
        """Expire, and end a "thank you" whose time is up: True if the resting lights changed."""
        changed = self.expire(now)
        if self.feedback_until and now >= self.feedback_until:
            self.feedback_until, changed = 0, True
        return changed

    def trigger(self, now: int) -> str | None:
        """The trigger a rating press would get now, or None: it would be ignored."""
        if self.awaiting_reason is not None:
            return None
        if self.mode == "free":
            return "free" if now >= self.lockout_until else None
        return self.invitation[4] if self.invitation is not None else None

    def resting(self) -> str:
        """The panel signal for the current state."""
        if self.awaiting_reason is not None:
            return ASK_REASON
        if self.mode == "free" or self.invitation is not None:
            return READY
        return IDLE


class Window:
    """The uplink's decisions (SPEC section 3, delivery rule 2): the rows beyond the acked pointer
    handed to MQTT, at most ``window`` of them; the window sent again on (re)connect, when the hub
    turns online, and when the ack has not moved for ``resend_ms`` while rows are pending. Rows
    leave the journal only when the hub's ack for this epoch covers them, and never beyond the
    journal's last seq: such an ack is a hub bug or a wrong epoch, and taking it would drop rows
    the hub never had."""

    def __init__(self, window: int, resend_ms: int, epoch: str, acked: int, now: int) -> None:
        self.window = window
        self.resend_ms = resend_ms
        self.epoch = epoch  # the journal's
        self.sent_upto = acked  # handed to MQTT up to this seq
        self.upto = 0  # the newest good ack heard: the journal may drop rows up to it
        self.last_progress = now  # when the ack last moved, or the window was last sent again
        self.resend_due = True
        self.hub_online: bool | None = None

    def heard(self, upto: object, epoch: object, acked: int, last_seq: int) -> bool:
        """An ``ack`` arrived (``upto``, ``epoch`` as it says): take it if it is new and of this
        journal's epoch. True if it was refused for going beyond the journal's ``last_seq`` (the
        caller logs it); it is forgotten then, so a good ack that follows still counts."""
        if epoch != self.epoch or type(upto) is not int or upto <= max(self.upto, acked):
            return False
        if upto > last_seq:
            return True
        self.upto = upto
        return False

    def ack(self, upto: int, now: int) -> None:
        """The journal took the ack ``upto``."""
        self.last_progress = now
        if upto > self.sent_upto:
            self.sent_upto = upto

    def online(self, online: bool) -> None:
        """The hub's retained state: back online, it may have lost what the broker held."""
        if online and self.hub_online is not True:
            self.resend_due = True
        self.hub_online = online

    def rewind(self, acked: int, now: int) -> bool:
        """Send the window again from the acked pointer if that is due; True if so."""
        stalled = self.sent_upto > acked and self.hub_online is not False and now - self.last_progress >= self.resend_ms
        if not (self.resend_due or stalled):
            return False
        self.resend_due = False
        self.sent_upto = acked
        self.last_progress = now
        return True

    def pending(self, acked: int, last_seq: int) -> tuple[int, int]:
        """(after, count): hand MQTT the ``count`` rows after seq ``after`` next (0: none)."""
        after = max(self.sent_upto, acked)
        return after, max(0, min(acked + self.window, last_seq) - after)
