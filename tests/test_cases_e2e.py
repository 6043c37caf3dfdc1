"""One rating per service (一次一评) end to end: the business system opens cases through the hub's
HTTP API, invitations reach the terminals over MQTT, citizens (and misbehaving staff) press."""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cases import CaseRequest, open_case
from hub.store import now_ms
from simulators.hall import Hall, wait_for

from .invariant import assert_invariant
from .rig import HubApi, TerminalRig


@pytest.fixture
def invited_hall(tmp_path: Path) -> Iterator[Hall]:
    with Hall(tmp_path / "hall", invite_s=6.0) as hall:  # the broker keeps it 4 s: room for a slow reconnect
        for n in range(1, 6):
            hall.add_device(f"T0{n}", f"W0{n}", mode="invited")
        hall.start_broker()
        hall.start_hub()
        yield hall


def test_invitation_survives_a_short_disconnect_but_never_shows_after_expiry(invited_hall: Hall) -> None:
    api = HubApi(invited_hall)
    rig = TerminalRig(invited_hall, "T01")
    rig.close()  # the terminal goes away for a moment
    api.open_case("C-A", "W01", item="X1")
    rig = TerminalRig(invited_hall, "T01")  # back within the expiry
    rig.wait_invited("C-A")
    rig.press("satisfied")
    rig.wait_acked()
    rig.close()
    expiry = api.open_case("C-B", "W01")["expires_ms"]
    wait_for(lambda: now_ms() > expiry + 500, 10, "case C-B's invitation to expire")
    with invited_hall.store() as store:  # a case with a long invitation, opened after C-B
        open_case(store, CaseRequest("C-C", "W01"), 60, invited_hall.config.tz, source="cli")
    rig = TerminalRig(invited_hall, "T01")
    rig.wait_invited("C-C")  # messages on one topic keep their order: C-B would have come first
    assert rig.term.commands.counts["invite"] == 1
    rig.close()
    api.close()
    with invited_hall.store() as store:
        status = dict(store.conn.execute("SELECT case_no, status FROM cases").fetchall())
    assert status == {"C-A": "rated", "C-B": "open", "C-C": "open"}


def test_two_hundred_cases_on_five_windows(invited_hall: Hall) -> None:
    """Some cases rated, some rated twice, some left unrated, some cancelled and pressed late,
    and staff pressing with no case open: the stats show exactly what happened."""
    api = HubApi(invited_hall)
    rigs = {f"W0{n}": TerminalRig(invited_hall, f"T0{n}") for n in range(1, 6)}
    rng = random.Random(11)
    expected: dict[str, Counter[str]] = {w: Counter() for w in rigs}
    try:
        for i in range(200):
            window = f"W0{i % 5 + 1}"
            plan = rng.choice("rrrrrdsl")
            _serve(api, rigs[window], f"2026-{i:04d}", window, plan, expected[window])
            if plan != "s" and rng.random() < 0.1:  # after "s" the invitation is still open
                rigs[window].press("very_satisfied")  # staff, with no case open
                expected[window]["ignored"] += 1
        for rig in rigs.values():
            rig.wait_acked()
    finally:
        for rig in rigs.values():
            rig.close()
    rows = {r["window"]: r for r in api.stats("window")["rows"]}
    api.close()
    for window, want in expected.items():
        row = rows[window]
        assert (row["cases"], row["evaluations"], row["ignored"], row["flagged"]) == (
            40,
            want["rated"],
            want["ignored"],
            0,
        ), window
        assert row["evaluation_rate"] == pytest.approx(want["rated"] / 40)
    assert_invariant(invited_hall, [f"T0{n}" for n in range(1, 6)])


def _serve(api: HubApi, rig: TerminalRig, case: str, window: str, plan: str, want: Counter[str]) -> None:
    """r: rated; d: pressed twice (the second is ignored); s: skipped; l: cancelled, then pressed late."""
    api.open_case(case, window, item="11010000-XK-001")
    rig.wait_invited(case)
    if plan in "rd":
        rig.press("satisfied")
        want["rated"] += 1
    if plan == "d":
        rig.press("dissatisfied")
        want["ignored"] += 1
    if plan == "l":
        api.cancel(case)
        wait_for(lambda: rig.term.evaluator.invitation is None, 10, "the cancel to reach the terminal")
        rig.press("basic")
        want["ignored"] += 1


def test_bursts_faster_than_a_person_can_be_served_are_flagged() -> None:
    home = Path(tempfile.mkdtemp()) / "hall"
    with Hall(home, misuse={"burst_gap_s": 1.0}) as hall:
        hall.add_device("T01", "W01")
        hall.start_broker()
        hall.start_hub()
        hall.sim_terminal("T01", 20, 50)  # the lockout is off: 20 ratings in well under a second each
        assert hall.procs["sim-T01"].wait(timeout=60) == 0
        total = hall.stats(("window",))["total"]
        assert (total["evaluations"], total["flagged"]) == (20, 19)
        assert sum(total["levels"].values()) == 20
        with hall.store() as store:
            reasons = store.conn.execute("SELECT status_reason, count(*) FROM events GROUP BY 1").fetchall()
        assert dict(reasons) == {None: 1, "burst": 19}


def test_staff_sign_in_reaches_the_terminal_and_its_events(running_hall: Hall) -> None:
    from hub.cases import sign_in_staff

    running_hall.add_device("T01", "W01")
    rig = TerminalRig(running_hall, "T01")
    try:
        with running_hall.store() as store:
            sign_in_staff(store, "W01", "S-07")
        wait_for(lambda: rig.term.evaluator.staff == "S-07", 20, "the sign-in to reach the terminal")
        rig.press("very_satisfied")
        rig.press("satisfied")  # inside the free-mode lockout: ignored, and on the staff member's record
        rig.wait_acked()
    finally:
        rig.close()
    rows = {r["staff"]: r for r in running_hall.stats(("staff",))["rows"]}
    assert (rows["S-07"]["evaluations"], rows["S-07"]["ignored"]) == (1, 1)
