"""The rules of SPEC sections 1 and 3 as :mod:`terminal.core` holds them, one case per function.

Written in the subset MicroPython runs: ``tests/test_core_rules.py`` runs every case under CPython
(pytest) and, unchanged, under the ``micropython`` binary against the very ``core.py`` a board
gets. Each case takes the core module and fails with a plain ``assert``.
"""

# The minutes of a test, in ms of the terminal's monotonic clock.
S = 1000
LEVELS = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")


def rules(core, mode="free", reasons=("cold", "lazy"), staff="S0", item="ITEM-1"):
    """Rules as a terminal with five rating keys and reason keys makes them (lockout 10 s, invite
    60 s, reason 20 s, thanks 2 s)."""
    r = core.Rules(mode, item, staff, 10 * S, 60 * S, 20 * S, 2 * S)
    r.levels = LEVELS
    r.reasons = reasons
    return r


class Journal:
    """Seqs as a journal gives them: the caller commits every row it is told to."""

    def __init__(self):
        self.rows = []

    def press(self, r, kind, value, now, case=""):
        """Press a key; commit its row, if any: (row kind or None, feedback or None, row fields)."""
        row = r.press(kind, value, now)
        if row is None:
            return None, None, None
        self.rows.append(row)
        seq = len(self.rows)
        if row[0] == "staff":
            case = "M01-e-" + str(seq)  # the local case the journal makes from the seq
        return row[0], r.committed(row[0], row[1], seq, now, case), row[1]


def valid(field, value):
    """protocol.rules for texts, enough for these cases: 1-64 characters without control ones."""
    return isinstance(value, str) and 0 < len(value) <= 64 and "\n" not in value


# -- SPEC section 1: free mode -----------------------------------------------------------------
def free_mode_rates_then_locks_out(core):
    r, j = rules(core), Journal()
    assert r.resting() == core.READY
    kind, shown, fields = j.press(r, "level", "satisfied", 0)
    assert (kind, shown) == ("rating", core.THANKS)
    assert fields == {"level": "satisfied", "trigger": "free", "item": "ITEM-1", "staff": "S0"}
    kind, shown, fields = j.press(r, "level", "basic", 9 * S)  # inside the 10 s lockout
    assert (kind, shown, fields) == ("ignored", core.REFUSED, {"level": "basic", "staff": "S0"})
    assert j.press(r, "level", "basic", 10 * S)[0] == "rating"  # the lockout runs from the accepted press


def thanks_ends_after_its_time(core):
    r, j = rules(core), Journal()
    j.press(r, "level", "satisfied", 0)
    assert not r.tick(1 * S)
    assert r.tick(2 * S) and r.resting() == core.READY
    assert not r.tick(3 * S)


def a_key_outside_the_layout_changes_nothing(core):
    r = rules(core)
    r.levels = ("satisfied", "basic", "dissatisfied")  # three keys
    assert r.press("level", "very_satisfied", 0) is None
    assert r.trigger(0) == "free"


def nothing_changes_until_the_journal_took_the_row(core):
    r = rules(core, mode="invited")
    r.invite("C-1", "I", None, 60 * S, 0)
    first = r.press("level", "satisfied", 1 * S)
    assert first == r.press("level", "satisfied", 1 * S)  # the journal refused it: ask again
    assert r.invitation[0] == "C-1" and r.trigger(1 * S) == "invite"


# -- SPEC section 1: invitations ---------------------------------------------------------------
def invited_mode_ignores_a_press_without_an_invitation(core):
    r, j = rules(core, mode="invited"), Journal()
    assert r.resting() == core.IDLE
    assert j.press(r, "level", "satisfied", 0)[:2] == ("ignored", core.REFUSED)


def the_first_press_of_an_invitation_binds_to_its_case(core):
    r, j = rules(core, mode="invited"), Journal()
    assert r.invite("C-1", "ITEM-9", "S7", 60 * S, 0)
    assert r.resting() == core.READY
    kind, shown, fields = j.press(r, "level", "very_satisfied", 5 * S)
    assert (kind, shown) == ("rating", core.THANKS)
    assert fields == {"level": "very_satisfied", "trigger": "invite", "case": "C-1", "item": "ITEM-9", "staff": "S7"}
    assert r.invitation is None
    assert j.press(r, "level", "satisfied", 6 * S)[0] == "ignored"  # further presses are ignored


def an_invitation_expires(core):
    r, j = rules(core, mode="invited"), Journal()
    assert not r.invite("C-0", None, None, 0, 0)  # arrived after it expired
    r.invite("C-1", None, None, 60 * S, 0)
    assert not r.tick(59 * S)
    assert r.tick(60 * S) and r.invitation is None and r.resting() == core.IDLE
    assert j.press(r, "level", "satisfied", 61 * S)[0] == "ignored"


def a_copy_of_an_invitation_never_reopens_a_case_rated_here(core):
    r, j = rules(core, mode="invited"), Journal()
    for i in range(core.RATED_KEPT + 1):
        assert r.invite("C-" + str(i), None, None, 60 * S, i * S)
        assert j.press(r, "level", "satisfied", i * S)[0] == "rating"
    for i in range(1, core.RATED_KEPT + 1):
        assert not r.invite("C-" + str(i), None, None, 60 * S, 20 * S), i  # a QoS 1 copy
        assert r.invitation is None
    assert r.invite("C-0", None, None, 60 * S, 20 * S)  # forgotten: only the last RATED_KEPT are kept


def cancel_ends_only_its_own_invitation(core):
    r = rules(core, mode="invited")
    r.invite("C-1", None, None, 60 * S, 0)
    r.cancel("C-2")
    assert r.invitation[0] == "C-1"
    r.cancel("C-1")
    assert r.invitation is None
    r.invite("C-3", None, None, 60 * S, 0)
    r.cancel()
    assert r.invitation is None


# -- SPEC section 1: the staff key -------------------------------------------------------------
def the_staff_key_opens_a_local_case(core):
    r, j = rules(core, mode="staff"), Journal()
    kind, shown, fields = j.press(r, "staff", "", 0)
    assert (kind, shown, fields) == ("staff", core.READY, {"trigger": "staff", "item": "ITEM-1", "staff": "S0"})
    kind, shown, fields = j.press(r, "level", "basic", 1 * S)
    assert kind == "rating" and (fields["trigger"], fields["case"]) == ("staff", "M01-e-1")
    assert not r.invite("M01-e-1", None, None, 60 * S, 2 * S)  # rated here


def the_staff_key_does_nothing_outside_staff_mode(core):
    for mode in ("free", "invited"):
        assert rules(core, mode=mode).press("staff", "", 0) is None


# -- SPEC section 1: bad-review reasons --------------------------------------------------------
def a_bad_rating_waits_for_its_reason(core):
    r, j = rules(core), Journal()
    assert j.press(r, "reason", "cold", 0) == (None, None, None)  # no wait: nothing
    kind, shown, _ = j.press(r, "level", "dissatisfied", 0)
    assert (kind, shown, r.resting()) == ("rating", core.ASK_REASON, core.ASK_REASON)
    assert j.press(r, "level", "satisfied", 11 * S)[0] == "ignored"  # a rating key during the wait
    assert j.press(r, "reason", "greedy", 12 * S) == (None, None, None)  # not a reason of this terminal
    kind, shown, fields = j.press(r, "reason", "lazy", 12 * S)
    assert (kind, shown, fields) == ("reason", core.THANKS, {"reasons": ["lazy"], "ref": 1})
    assert j.press(r, "level", "satisfied", 13 * S)[0] == "rating"


def an_unanswered_reason_wait_ends(core):
    r, j = rules(core), Journal()
    j.press(r, "level", "very_dissatisfied", 0)
    assert r.tick(20 * S) and r.resting() == core.READY  # the hub counts it as 'unspecified'
    assert j.press(r, "reason", "cold", 21 * S) == (None, None, None)


def no_reason_keys_no_reason_wait(core):
    r, j = rules(core, reasons=()), Journal()
    assert j.press(r, "level", "dissatisfied", 0)[1] == core.THANKS


# -- SPEC section 3: commands from the hub -----------------------------------------------------
def an_invitation_command_opens_an_invitation(core):
    r = rules(core, mode="invited")
    cmd = {"cmd": "invite", "case": "C-1", "item": "I", "staff": "S1", "ttl_ms": 30000}
    assert r.handle(cmd, valid, 1000) == (None, "invite")
    assert r.invitation == ("C-1", "I", "S1", 31000, "invite")
    assert r.handle(cmd, valid, 2000) == (None, "invite")  # a copy before the rating: still open


def a_synchronised_clock_takes_off_the_time_at_the_broker(core):
    r = rules(core, mode="invited")
    cmd = {"cmd": "invite", "case": "C-1", "ttl_ms": 30000, "sent_ms": 1000000}
    r.handle(cmd, valid, 0, 1004000)
    assert r.invitation[3] == 26000
    r.handle(cmd, valid, 0, 990000)  # the hub's clock ahead of ours: never more than ttl_ms
    assert r.invitation[3] == 30000
    r.handle(cmd, valid, 0)  # not synchronised: ttl_ms as it arrives
    assert r.invitation[3] == 30000
    late = {"cmd": "invite", "case": "C-2", "ttl_ms": 3000, "sent_ms": 1000000}
    assert r.handle(late, valid, 0, 1004000) == (None, None)  # expired at the broker


def staff_sign_in_and_out(core):
    r, j = rules(core), Journal()
    assert r.handle({"cmd": "staff", "staff": "S-07"}, valid, 0) == (None, "staff")
    assert j.press(r, "level", "satisfied", 0)[2]["staff"] == "S-07"
    r.handle({"cmd": "staff", "staff": None}, valid, 0)
    assert "staff" not in j.press(r, "level", "satisfied", 10 * S)[2]


BAD_COMMANDS = [
    ({"cmd": "invite", "case": "C-1", "item": "x" * 65, "ttl_ms": 60000}, "item"),
    ({"cmd": "invite", "case": "", "ttl_ms": 60000}, "case"),
    ({"cmd": "invite", "item": "I", "ttl_ms": 60000}, "case"),
    ({"cmd": "invite", "case": "C-1", "staff": "S\n", "ttl_ms": 60000}, "staff"),
    ({"cmd": "invite", "case": "C-1", "ttl_ms": True}, "ttl_ms"),
    ({"cmd": "invite", "case": "C-1", "ttl_ms": 1.5}, "ttl_ms"),
    ({"cmd": "invite", "case": "C-1", "ttl_ms": -1}, "ttl_ms"),
    ({"cmd": "invite", "case": "C-1", "ttl_ms": 7 * 86400000 + 1}, "ttl_ms"),
    ({"cmd": "invite", "case": "C-1", "ttl_ms": 2**70}, "ttl_ms"),
    ({"cmd": "staff", "staff": ""}, "staff"),
    ({"cmd": "cancel", "case": ["C-0"]}, "case"),
    ({"cmd": "reboot"}, "cmd"),
    ({"cmd": ["invite"]}, "cmd"),
    (["invite"], "cmd"),
    (None, "cmd"),
]


def a_bad_command_is_refused_and_changes_nothing(core):
    r = rules(core, mode="invited")
    r.handle({"cmd": "invite", "case": "C-0", "item": "I", "ttl_ms": 60000}, valid, 0)
    for cmd, field in BAD_COMMANDS:
        assert r.handle(cmd, valid, 0) == (field, None), (cmd, field)
    assert (r.invitation[0], r.invitation[1], r.staff) == ("C-0", "I", "S0")


# -- SPEC section 3: the uplink's window and the hub's acks ------------------------------------
def window(core, acked=0):
    return core.Window(10, 5 * S, "E1", acked, 0)


def the_client_gets_a_bounded_window(core):
    w = window(core)
    assert w.pending(0, 0) == (0, 0)
    assert w.pending(0, 25) == (0, 10)  # never the whole backlog
    w.sent_upto = 10
    assert w.pending(0, 25) == (10, 0)  # full until the hub acks
    assert not w.heard(4, "E1", 0, 25)
    w.ack(4, 1 * S)
    assert w.pending(4, 25) == (10, 4)
    w.sent_upto = 14
    assert w.pending(4, 14) == (14, 0)


def only_a_newer_ack_of_this_epoch_counts(core):
    w = window(core)
    w.heard(5, "E0", 0, 9)  # a wiped journal's epoch
    w.heard("5", "E1", 0, 9)
    w.heard(0, "E1", 0, 9)
    assert w.upto == 0
    w.heard(5, "E1", 0, 9)
    w.heard(3, "E1", 0, 9)  # an older ack arriving late
    assert w.upto == 5
    w.heard(7, "E1", 8, 9)  # already behind the journal's acked pointer
    assert w.upto == 5


def an_ack_beyond_the_journal_is_refused_and_forgotten(core):
    """A hub bug or a wrong epoch: taking it would drop rows the hub never had (SPEC section 9)."""
    w = window(core)
    assert w.heard(50, "E1", 0, 20)  # refused: the caller logs it
    assert w.upto == 0
    assert not w.heard(20, "E1", 0, 20)  # the good ack that follows still counts
    assert w.upto == 20
    assert w.heard(50, "E1", 20, 20) and w.upto == 20
    assert not w.heard(50, "E1", 20, 50) and w.upto == 50  # once the rows exist, the hub may have them


def the_window_is_sent_again_when_due(core):
    w = window(core)
    assert w.rewind(0, 0)  # after connecting
    assert not w.rewind(0, 1 * S)
    w.sent_upto = 10
    assert not w.rewind(0, 4999)
    assert w.rewind(0, 5 * S) and w.sent_upto == 0  # the ack stalled with rows pending
    w.sent_upto = 10
    w.heard(6, "E1", 0, 10)
    w.ack(6, 6 * S)  # the ack moved: the stall timer starts again
    assert not w.rewind(6, 10 * S)
    assert w.rewind(6, 11 * S) and w.sent_upto == 6


def a_hub_offline_stops_the_stall_resends_and_its_return_resends(core):
    w = window(core)
    w.rewind(0, 0)
    w.online(False)
    w.sent_upto = 10
    assert not w.rewind(0, 60 * S)  # nobody to ack: no point
    w.online(True)
    assert w.rewind(0, 61 * S) and w.sent_upto == 0  # back: what the broker held may be gone
    w.online(True)
    w.sent_upto = 10
    assert not w.rewind(0, 62 * S)


#: Every case, in file order (a MicroPython module's globals have no order).
CASES = [
    "free_mode_rates_then_locks_out",
    "thanks_ends_after_its_time",
    "a_key_outside_the_layout_changes_nothing",
    "nothing_changes_until_the_journal_took_the_row",
    "invited_mode_ignores_a_press_without_an_invitation",
    "the_first_press_of_an_invitation_binds_to_its_case",
    "an_invitation_expires",
    "a_copy_of_an_invitation_never_reopens_a_case_rated_here",
    "cancel_ends_only_its_own_invitation",
    "the_staff_key_opens_a_local_case",
    "the_staff_key_does_nothing_outside_staff_mode",
    "a_bad_rating_waits_for_its_reason",
    "an_unanswered_reason_wait_ends",
    "no_reason_keys_no_reason_wait",
    "an_invitation_command_opens_an_invitation",
    "a_synchronised_clock_takes_off_the_time_at_the_broker",
    "staff_sign_in_and_out",
    "a_bad_command_is_refused_and_changes_nothing",
    "the_client_gets_a_bounded_window",
    "only_a_newer_ack_of_this_epoch_counts",
    "an_ack_beyond_the_journal_is_refused_and_forgotten",
    "the_window_is_sent_again_when_due",
    "a_hub_offline_stops_the_stall_resends_and_its_return_resends",
]


def run(core, name):
    """Run case ``name``: None if it passed, else what failed."""
    try:
        globals()[name](core)
    except AssertionError as exc:
        return "assertion failed: " + repr(exc.args)
    except Exception as exc:
        return type(exc).__name__ + ": " + repr(exc)
    return None
