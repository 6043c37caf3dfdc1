"""The console pages' figures on a small hall with exact numbers (tests/console_hall.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub.config import HubConfig
from hub.pages.drill import Period, staff_table, trend, windows_table
from hub.pages.terminals import terminals
from hub.pages.today import today
from hub.pages.upstream import reconcile, unpark, upstream
from hub.store import Store, now_ms
from hub.upstream import outbox
from tests.console_hall import PAST, TZ, build

NOW = now_ms()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return build(tmp_path / "hub.db", NOW)


def config() -> HubConfig:
    return HubConfig(hall="H1")


def test_today_counts_levels_rates_and_waiting_bad_reviews(store: Store) -> None:
    t = today(store, config(), NOW)
    assert t.day == dt.datetime.fromtimestamp(NOW / 1000, TZ).date()
    total = t.total
    assert (total["cases"], total["evaluations"], total["rated"]) == (3, 7, 3)
    assert total["levels"] == {"very_satisfied": 1, "satisfied": 3, "basic": 1, "dissatisfied": 1,
                               "very_dissatisfied": 1}  # fmt: skip
    assert total["evaluation_rate"] == 1.0
    assert total["mean_score"] == pytest.approx(23 / 7)
    assert total["satisfaction_rate"] == pytest.approx(5 / 7)
    # every bad review opened a ticket: 4 past 不满意, today's 不满意 and 非常不满意
    assert (t.tickets_open, t.tickets_overdue) == (6, 4)  # the past ones are beyond 15 working days
    cards = {c.window: c for c in t.windows}
    assert [c.name for c in t.windows] == ["一号窗", "二号窗", "三号窗"]
    w1, w2, w3 = cards["W01"].figures, cards["W02"].figures, cards["W03"].figures
    assert (w1["evaluations"], w1["mean_score"], w1["bad_rate"]) == (3, pytest.approx(11 / 3), pytest.approx(1 / 3))
    assert (w2["evaluations"], w2["cases"], w2["evaluation_rate"], w2["mean_score"]) == (4, 0, None, 3.0)
    assert (w3["evaluations"], w3["mean_score"], w3["levels"]["basic"]) == (0, None, 0)
    assert (t.terminals_total, t.terminals_online, t.terminals_silent) == (3, 1, 2)


def test_terminal_status_from_states_frames_and_ack_points(store: Store) -> None:
    by_id = {t.device: t for t in terminals(store, NOW)}
    t1, t2, t3 = by_id["T01"], by_id["T02"], by_id["T03"]
    assert (t1.online, t1.silent, t1.backlog, t1.missing, t1.clock, t1.firmware) == (
        True,
        False,
        2,
        2,
        "synced",
        "1.4.0",
    )
    assert (t1.panel_ok, t1.panel_detail, t1.kind, t1.last_seen_ms, t1.last_press_ms) == (
        True,
        "RTU 9600",
        "modbus",
        NOW,
        NOW,
    )
    assert (t2.online, t2.silent, t2.last_press_ms, t2.panel_ok) == (False, True, NOW, None)
    assert t2.last_seen_ms == NOW  # its events arrived after its last will
    assert (t3.online, t3.silent, t3.last_seen_ms, t3.last_press_ms) == (None, True, None, None)
    # a live terminal not heard from for longer than the silence limit stands out too
    assert terminals(store, NOW + 6 * 60_000)[0].silent


def test_trends_by_day_week_and_month_for_a_window_and_a_staff_member(store: Store) -> None:
    period = Period.parse("2026-10-20", "2026-11-10", "week", PAST[0])
    weeks = trend(store, period, "basic", window="W01")
    assert [p.label for p in weeks] == ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]
    assert [p.figures["evaluations"] for p in weeks] == [3, 0, 6, 3]
    assert weeks[0].start == dt.date(2026, 10, 20) and weeks[-1].end == dt.date(2026, 11, 10)  # clipped
    assert weeks[2].figures["mean_score"] == pytest.approx(4.0) and weeks[1].figures["mean_score"] is None
    days = trend(store, Period.parse("2026-11-01", "2026-11-03", "day", PAST[0]), "basic", staff="S1")
    assert [(p.label, p.figures["evaluations"]) for p in days] == [
        ("2026-11-01", 0),
        ("2026-11-02", 3),
        ("2026-11-03", 3),
    ]
    months = trend(store, Period.parse("2026-10-15", "2026-11-30", "month", PAST[0]), "basic")
    assert [(p.label, p.figures["evaluations"], p.figures["bad_rate"]) for p in months] == [
        ("2026-10", 3, pytest.approx(1 / 3)), ("2026-11", 9, pytest.approx(1 / 3))]  # fmt: skip
    assert trend(store, Period.parse("2026-11-04", "2026-11-05", "day", PAST[0]), "basic", window="W02")[0].figures[
        "evaluations"] == 0  # fmt: skip


def test_period_limits_and_errors_speak_chinese() -> None:
    with pytest.raises(ValueError, match="最长 92 天"):
        Period.parse("2026-01-01", "2026-12-31", "day", PAST[0])
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        Period.parse("2026-13-01", None, None, PAST[0])
    assert Period.parse("2025-01-01", "2026-12-31", "month", PAST[0]).grain == "month"
    default = Period.parse(None, None, None, PAST[0])
    assert (default.start, default.end, default.grain) == (dt.date(2026, 10, 4), PAST[0], "day")


def test_window_and_staff_tables_over_a_period(store: Store) -> None:
    period = Period.parse("2026-11-01", "2026-11-30", "day", PAST[0])
    rows, total = windows_table(store, period, "basic")
    assert [(r["window"], r["name"], r["evaluations"]) for r in rows] == [
        ("W01", "一号窗", 9), ("W02", "二号窗", 0), ("W03", "三号窗", 0)]  # fmt: skip
    assert rows[0]["dept"] == "民政" and total["evaluations"] == 9
    day = dt.datetime.fromtimestamp(NOW / 1000, TZ).date().isoformat()
    staff = staff_table(store, Period.parse(day, day, None, PAST[0]), "basic")
    assert [(r["staff"], r["evaluations"]) for r in staff] == [("S1", 2), ("S2", 1)]
    assert staff_table(store, period, "basic", window="W02") == []


def test_reconciliation_counts_acknowledged_parked_and_waiting_by_day(store: Store) -> None:
    day = dt.datetime.fromtimestamp(NOW / 1000, TZ).date()
    ids = {d: [i for (i,) in store.conn.execute(
        "SELECT o.id FROM outbox o JOIN events e ON e.id = o.event_id WHERE o.kind = 'evaluation' AND e.day = ? "
        "ORDER BY o.id", (d,))] for d in (day.isoformat(), PAST[0].isoformat())}  # fmt: skip
    with store.transaction() as conn:
        outbox.mark_sent(conn, ids[day.isoformat()][:5])
        outbox.mark_sent(conn, ids[day.isoformat()][:5])  # a second mark counts nothing
        outbox.park(conn, ids[day.isoformat()][5], "HTTP 400: bad taskCode")
        outbox.mark_sent(conn, ids[PAST[0].isoformat()])
    checks = {c.day: c for c in reconcile(store, PAST[-1], day)}
    now = checks[day.isoformat()]
    assert (now.hall, now.acked, now.parked, now.waiting, now.status) == (7, 5, 1, 1, "parked")
    past = checks[PAST[0].isoformat()]
    assert (past.hall, past.acked, past.waiting, past.status) == (3, 3, 0, "ok")
    assert checks[PAST[1].isoformat()].status == "waiting"
    up = upstream(store, "http://regional.example", day, days=60)
    # pending: today's 7 − 5 acked − 1 parked, the past days' 12 − 3 acked, and the tickets' records
    assert (up.pending, up.held, up.parked, up.sent) == (1 + 9 + _other(store), 0, 1, 8)
    assert up.parked_rows[0]["reason"] == "HTTP 400: bad taskCode"
    assert unpark(store, "张主管", None) == 1
    audit = store.conn.execute("SELECT actor, action FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    assert audit == ("张主管", "upstream.unpark")


def _other(store: Store) -> int:
    """Pending rows that are not rating records (tickets)."""
    sql = "SELECT count(*) FROM outbox WHERE status = 'pending' AND kind != 'evaluation'"
    return int(store.conn.execute(sql).fetchone()[0])


def test_reconciliation_matches_what_a_flaky_regional_system_took(tmp_path: Path) -> None:
    """A real sender against a regional simulator that fails requests (so records are posted again)
    and refuses one record: the day's acknowledged count equals the distinct records it holds."""
    from hub.upstream.sender import Sender
    from simulators.hall import wait_for
    from simulators.regional import RegionalSim
    from tests.upstream_helpers import EPOCH, T0, make_home, rating
    from tests.upstream_helpers import ingest as ingest_events

    with RegionalSim(fail_rate=0.4, seed=7) as sim:
        config, store = make_home(tmp_path, url=sim.url, batch_size=7)
        sim.state.control["reject_ids"] = [f"H1-T01-{EPOCH}-5"]
        ingest_events(store, [rating(s, "satisfied") for s in range(1, 41)])
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 30, "the outbox to drain")
        day = dt.datetime.fromtimestamp(T0 / 1000, TZ).date()
        (check,) = reconcile(store, day, day)
        summary = sim.state.summary()
        assert summary["records"] == 39 and summary["failed"] > 0  # requests failed and were posted again
        assert (check.hall, check.acked, check.parked, check.waiting, check.status) == (40, 39, 1, 0, "parked")


def test_the_migration_counts_the_records_already_sent(store: Store) -> None:
    from hub.store.schema_upstream import migrate_upstream_days

    with store.transaction() as conn:
        outbox.mark_sent(conn, [1, 2, 3, 4])  # the first past day's three and one of the next
        conn.execute("DROP TABLE upstream_days")  # as before the migration that adds it
        migrate_upstream_days(store.db)
    acked = dict(store.conn.execute("SELECT day, acked FROM upstream_days"))
    assert acked == {PAST[0].isoformat(): 3, PAST[1].isoformat(): 1}
