"""The firmware (kind ``micro``) under ``haocha sim terminal`` against the real hub, broker ACL
and CLI of the hall (``simulators.hall``): exactly once, kill -9 of the board and of the hub,
invitations from cases opened at the hub. Skipped where the hub is not available."""

from __future__ import annotations

import signal

import pytest

try:
    from hub.cases import CaseRequest, open_case
    from simulators.hall import Hall, json_line, wait_for

    from .invariant import assert_invariant
except ImportError as exc:  # this branch alone: the hub lives on main
    pytest.skip(f"the real hub is not available: {exc}", allow_module_level=True)


def finish(hall: Hall, device: str, timeout: float = 120) -> dict[str, object]:
    proc = hall.procs[f"sim-{device}"]
    assert proc.wait(timeout=timeout) == 0, hall.log(f"sim-{device}")
    result: dict[str, object] = json_line(hall.log(f"sim-{device}"))
    return result


def test_micro_presses_arrive_exactly_once_at_the_real_hub(running_hall: Hall) -> None:
    running_hall.add_device("M01", "W01", kind="micro")
    running_hall.sim_terminal("M01", 60, 100, 3)
    summary = finish(running_hall, "M01")
    assert summary["pending"] == 0 and int(str(summary["last_seq"])) >= 60
    assert_invariant(running_hall, ["M01"])
    rows = {r["device"]: r for r in running_hall.stats(("device",))["rows"]}
    assert rows["M01"]["evaluations"] == 60


def test_micro_kill_9_of_board_and_hub_keeps_the_invariant(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("M02", "W01", kind="micro")
    meta = hall.terminal_config("M02").parent / "journal" / "meta.json"
    for round_ in range(2):
        hall.sim_terminal("M02", 300, 200, round_)
        floor = 100 * (round_ + 1)
        wait_for(lambda floor=floor: meta.exists() and hall.journal("M02")["last_seq"] > floor, 60, "presses mid-burst")
        hall.kill("sim-M02", signal.SIGKILL)
        hall.kill("hub", signal.SIGKILL)
        hall.start_hub()
    hall.sim_terminal("M02", 0, 100, 9)  # only drains the journal
    finish(hall, "M02")
    assert_invariant(hall, ["M02"])


def test_micro_invited_mode_rates_cases_opened_at_the_hub(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("M03", "W03", kind="micro", mode="invited")
    hall.sim_terminal("M03", 3, 100, 1)
    proc = hall.procs["sim-M03"]
    opened = 0
    while proc.poll() is None and opened < 60:  # the business system opens cases until 3 are rated
        opened += 1
        case = f"C-{opened}"
        with hall.store() as store:
            open_case(store, CaseRequest(case, "W03"), 60, hall.config.tz, source="cli")

        def settled(case: str = case) -> bool:
            with hall.store() as store:
                row = store.conn.execute("SELECT status FROM cases WHERE case_no = ?", (case,)).fetchone()
            return proc.poll() is not None or row[0] != "open"

        try:  # an invitation sent before the board first subscribed is never seen: open another
            wait_for(settled, 3, f"case {case} rated")
        except TimeoutError:
            continue
    finish(hall, "M03")
    assert_invariant(hall, ["M03"])
    with hall.store() as store:
        rated = store.conn.execute("SELECT count(*) FROM cases WHERE status = 'rated'").fetchone()[0]
    assert rated == 3
