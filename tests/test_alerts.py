"""Alert rules with their exact thresholds, the alert lifecycle and the CLI, on real SQLite files."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hub.alert_settings import AlertSettings, BacklogRule, BadShareRule, CommitRule, SilentRule
from hub.alerts import lifecycle
from hub.alerts.engine import AlertEngine
from hub.alerts.lifecycle import AlertStateError, BadComment, Finding
from hub.alerts.rules import (
    Backlog,
    BadShare,
    CommitFailures,
    OpeningHours,
    Silent,
    UpstreamParked,
    UpstreamPending,
    first_event_since,
)
from hub.cli import main
from hub.config import HubConfig, load
from hub.errors import NotFound
from hub.store import Store
from hub.store import registry as reg
from hub.tickets import Calendar
from protocol.config import ConfigError, build

TZ = dt.timezone(dt.timedelta(hours=8))
#: Tuesday 2026-12-01, 10:30 in the hall (Asia/Shanghai).
NOW = int(dt.datetime(2026, 12, 1, 10, 30, tzinfo=TZ).timestamp() * 1000)
MIN = 60_000
_seq = itertools.count(1)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "hub.db", create=True) as s:
        for w in ("W01", "W02"):
            reg.add_window(s, w, f"{w} 综合窗", None)
        for d, w in (("T01", "W01"), ("T02", "W02")):
            s.conn.execute(
                "INSERT INTO devices (id, window, kind, mode, mac_key, password_hash, created_ms) "
                "VALUES (?, ?, 'gpio', 'free', 'k', 'h', ?)",
                (d, w, NOW - 600 * MIN),
            )
        yield s


def rate(store: Store, window: str, level: str, t_ms: int, received_ms: int | None = None, status: str = "accepted"):
    device = "T01" if window == "W01" else "T02"
    store.conn.execute(
        "INSERT INTO events (device, epoch, seq, kind, status, level, window, t_ms, day, received_ms) "
        "VALUES (?, 'e', ?, 'rating', ?, ?, ?, ?, '2026-12-01', ?)",
        (device, next(_seq), status, level, window, t_ms, received_ms or t_ms),
    )


def press(store: Store, window: str, *levels: str, at: int = NOW - MIN) -> None:
    for level in levels:
        rate(store, window, level, at)


BAD, GOOD = "dissatisfied", "satisfied"


# -- bad_share ------------------------------------------------------------------------------------
def subjects(findings: list[Finding]) -> set[str]:
    return {f.subject for f in findings}


def test_bad_share_needs_the_minimum_count(store: Store) -> None:
    press(store, "W01", BAD, BAD, BAD)  # 3 of 3 bad, below the minimum of 4
    rule = BadShare(BadShareRule())
    assert rule.evaluate(store.conn, NOW) == []
    press(store, "W01", GOOD)  # 3 of 4 now
    [finding] = rule.evaluate(store.conn, NOW)
    assert (finding.rule, finding.subject) == ("bad_share", "W01")
    assert finding.detail == {"window": "W01", "name": "W01 综合窗", "ratings": 4, "bad": 3, "minutes": 15.0}
    assert "3/4" in finding.summary and "75%" in finding.summary


@pytest.mark.parametrize(
    "levels, fires",
    [
        ((BAD, BAD, GOOD, GOOD), True),  # exactly 50 %
        ((BAD, GOOD, GOOD, GOOD), False),  # 25 %
        ((BAD, BAD, GOOD, GOOD, GOOD), False),  # 40 %
        (("very_dissatisfied", "very_dissatisfied", "basic", "very_satisfied"), True),
        ((BAD, BAD, BAD, BAD), True),
    ],
)
def test_bad_share_threshold_is_at_least_half(store: Store, levels: tuple[str, ...], fires: bool) -> None:
    press(store, "W01", *levels)
    press(store, "W02", GOOD, GOOD, GOOD, GOOD)
    assert subjects(BadShare(BadShareRule()).evaluate(store.conn, NOW)) == ({"W01"} if fires else set())


def test_bad_share_counts_only_the_sliding_period(store: Store) -> None:
    press(store, "W01", BAD, BAD, at=NOW - 16 * MIN)  # outside 15 minutes
    press(store, "W01", BAD, BAD, at=NOW - 14 * MIN)
    rule = BadShare(BadShareRule())
    assert rule.evaluate(store.conn, NOW) == []
    press(store, "W01", BAD, BAD, at=NOW - 1 * MIN)
    assert subjects(rule.evaluate(store.conn, NOW)) == {"W01"}
    assert rule.evaluate(store.conn, NOW + 14 * MIN) == []  # the two at -14 min slid out
    assert subjects(BadShare(BadShareRule(minutes=30)).evaluate(store.conn, NOW)) == {"W01"}


def test_bad_share_leaves_out_refused_flagged_and_invalid(store: Store) -> None:
    press(store, "W01", BAD, BAD, BAD)
    for status in ("refused", "flagged", "invalid"):
        rate(store, "W01", BAD, NOW - MIN, status=status)
    assert BadShare(BadShareRule()).evaluate(store.conn, NOW) == []


def test_bad_share_takes_ratings_received_late_by_their_time(store: Store) -> None:
    """A backlog drained now brings ratings pressed an hour ago: they are not "the last 15 minutes"."""
    for _ in range(4):
        rate(store, "W01", BAD, NOW - 60 * MIN, received_ms=NOW - MIN)
    assert BadShare(BadShareRule()).evaluate(store.conn, NOW) == []


def test_first_event_since_finds_the_boundary_across_gaps(store: Store) -> None:
    assert first_event_since(store.conn, NOW) is None
    for i in range(50):
        rate(store, "W01", GOOD, NOW - (100 - i) * MIN)
    store.conn.execute("DELETE FROM events WHERE id BETWEEN 20 AND 30")
    ids = [
        r[0] for r in store.conn.execute("SELECT id FROM events WHERE received_ms >= ? ORDER BY id", (NOW - 60 * MIN,))
    ]
    assert first_event_since(store.conn, NOW - 60 * MIN) <= ids[0]
    assert store.conn.execute(
        "SELECT count(*) FROM events WHERE id >= ? AND received_ms < ?",
        (first_event_since(store.conn, NOW - 60 * MIN), NOW - 60 * MIN),
    ).fetchone() == (0,)
    assert first_event_since(store.conn, NOW) is None


# -- silent ---------------------------------------------------------------------------------------
def hours(days: str = "workdays", opening: str = "09:00-17:00", holidays: tuple[str, ...] = ()) -> OpeningHours:
    return OpeningHours(
        AlertSettings(opening=opening, days=days), Calendar(frozenset(map(dt.date.fromisoformat, holidays))), TZ
    )  # type: ignore[arg-type]


def heard(store: Store, device: str, at_ms: int) -> None:
    store.conn.execute(
        "INSERT INTO epochs (device, epoch, upto, first_ms, last_ms) VALUES (?, 'e', 1, ?, ?) "
        "ON CONFLICT(device, epoch) DO UPDATE SET last_ms = excluded.last_ms",
        (device, at_ms, at_ms),
    )


def test_silent_counts_opening_hours_only(store: Store) -> None:
    rule = Silent(SilentRule(minutes=60), hours())
    heard(store, "T01", NOW - 59 * MIN)
    heard(store, "T02", NOW - 61 * MIN)
    assert subjects(rule.evaluate(store.conn, NOW)) == {"T02"}
    heard(store, "T02", NOW - 14 * 60 * MIN)  # last heard last night, 20:30
    # 09:59: the hall opened 59 minutes ago, so the night's silence does not count
    assert subjects(rule.evaluate(store.conn, NOW - 31 * MIN)) == set()
    assert subjects(rule.evaluate(store.conn, NOW - 30 * MIN)) == {"T02"}  # 10:00: an hour open
    assert rule.evaluate(store.conn, NOW + 7 * 60 * MIN) == []  # 17:30, closed


def test_silent_says_whether_the_terminal_is_offline(store: Store) -> None:
    reg.set_device_state(store, "T01", {"online": True, "backlog": 0}, NOW)
    reg.set_device_state(store, "T02", {"online": False}, NOW)
    found = {f.subject: f for f in Silent(SilentRule(minutes=60), hours()).evaluate(store.conn, NOW + 60 * MIN)}
    assert found["T01"].detail["online"] is True and "在线" in found["T01"].summary
    assert found["T02"].detail["online"] is False and "离线" in found["T02"].summary


def test_opening_hours_follow_the_calendar() -> None:
    saturday = NOW + 4 * 24 * 60 * MIN
    assert hours().opened_ms(NOW) == NOW - 90 * MIN
    assert hours().opened_ms(saturday) is None
    assert hours(days="every").opened_ms(saturday) == saturday - 90 * MIN
    assert hours(holidays=("2026-12-01",)).opened_ms(NOW) is None
    assert hours(opening="10:31-24:00").opened_ms(NOW) is None
    assert hours(opening="10:30-24:00").opened_ms(NOW) == NOW


# -- backlog, upstream, commit failures ------------------------------------------------------------
def test_backlog_alerts_when_it_does_not_shrink_over_the_period(store: Store) -> None:
    rule = Backlog(BacklogRule(min_backlog=100, minutes=5))

    def at(minute: int, t01: int, t02: int) -> set[str]:
        reg.set_device_state(store, "T01", {"online": True, "backlog": t01}, NOW)
        reg.set_device_state(store, "T02", {"online": True, "backlog": t02}, NOW)
        return subjects(rule.evaluate(store.conn, NOW + minute * MIN))

    assert at(0, 150, 50) == set()
    assert at(3, 200, 90) == set()  # no history of five minutes yet
    assert at(5, 150, 99) == {"T01"}  # T01: not shrunk (150 then, 150 now); T02 below 100
    assert at(8, 300, 120) == {"T01", "T02"}  # T02: 90 → 120
    assert at(10, 149, 130) == {"T02"}  # T01: 150 → 149, draining
    reg.set_device_state(store, "T02", {"online": False}, NOW)
    assert subjects(rule.evaluate(store.conn, NOW + 11 * MIN)) == set()
    assert "T02" not in rule.samples


def queue_record(store: Store, status: str, created_ms: int) -> None:
    store.conn.execute(
        "INSERT INTO outbox (record_id, kind, lane, body, status, created_ms) "
        "VALUES (?, 'evaluation', 'W01', '{}', ?, ?)",
        (f"r{next(_seq)}", status, created_ms),
    )


def test_upstream_parked_and_pending(store: Store) -> None:
    assert UpstreamParked().evaluate(store.conn, NOW) == []
    queue_record(store, "sent", NOW - 600 * MIN)
    queue_record(store, "pending", NOW - 59 * MIN)
    assert UpstreamPending(60).evaluate(store.conn, NOW) == []
    assert subjects(UpstreamPending(60).evaluate(store.conn, NOW + MIN)) == {"outbox"}
    queue_record(store, "parked", NOW)
    [parked] = UpstreamParked().evaluate(store.conn, NOW)
    assert parked.detail == {"parked": 1}


def test_commit_failures_hold_until_quiet() -> None:
    health = {"commit_failures": 0}
    rule = CommitFailures(CommitRule(quiet_minutes=2), lambda: health)
    conn = sqlite3.connect(":memory:")
    assert rule.evaluate(conn, NOW) == []
    health["commit_failures"] = 3
    assert subjects(rule.evaluate(conn, NOW)) == {"writer"}
    assert subjects(rule.evaluate(conn, NOW + 2 * MIN - 1)) == {"writer"}
    assert rule.evaluate(conn, NOW + 2 * MIN) == []


# -- lifecycle -------------------------------------------------------------------------------------
def finding(subject: str = "W01", n: int = 4) -> Finding:
    return Finding("bad_share", subject, f"差评 {n}", {"ratings": n})


def deliveries(store: Store) -> list[tuple[int, str, str]]:
    return list(store.conn.execute("SELECT alert_id, webhook, state FROM alert_deliveries ORDER BY alert_id, webhook"))


def audit(store: Store) -> list[tuple[str, str, str]]:
    return list(store.conn.execute("SELECT actor, action, subject FROM audit ORDER BY id"))


def test_one_live_alert_per_rule_and_subject_and_a_new_one_after_it_clears(store: Store) -> None:
    [first] = lifecycle.sync(store, "bad_share", [finding()], ["a", "b"], NOW)
    assert lifecycle.sync(store, "bad_share", [finding(n=5)], ["a", "b"], NOW + 1) == []
    assert lifecycle.get(store, first)["detail"] == {"ratings": 5}
    assert deliveries(store) == [(first, "a", "pending"), (first, "b", "pending")]
    assert lifecycle.sync(store, "bad_share", [], ["a", "b"], NOW + 2) == []
    closed = lifecycle.get(store, first)
    assert (closed["state"], closed["closed_by"], closed["close_reason"]) == ("closed", "system", "cleared")
    [second] = lifecycle.sync(store, "bad_share", [finding()], ["a", "b"], NOW + 3)
    assert second != first and len(deliveries(store)) == 4
    assert [a[1] for a in audit(store) if a[1].startswith("alert.")] == ["alert.open", "alert.close", "alert.open"]
    with pytest.raises(sqlite3.IntegrityError):  # the store itself refuses a second live one
        store.conn.execute(
            "INSERT INTO alerts (rule, subject, summary, detail, opened_ms, updated_ms) "
            "VALUES ('bad_share', 'W01', '', '{}', 0, 0)"
        )


def test_acknowledge_needs_a_comment_and_an_open_alert(store: Store) -> None:
    [alert_id] = lifecycle.sync(store, "bad_share", [finding()], [], NOW)
    with pytest.raises(BadComment, match="comment"):
        lifecycle.acknowledge(store, alert_id, "wang", "  ")
    with pytest.raises(BadComment, match="longer than 500"):
        lifecycle.acknowledge(store, alert_id, "wang", "长" * 501)
    acked = lifecycle.acknowledge(store, alert_id, "wang", "已联系窗口负责人")
    assert (acked["state"], acked["acked_by"], acked["comment"]) == ("acknowledged", "wang", "已联系窗口负责人")
    with pytest.raises(AlertStateError, match="acknowledged"):
        lifecycle.acknowledge(store, alert_id, "wang", "again")
    assert lifecycle.sync(store, "bad_share", [finding()], [], NOW + 1) == []  # still the same alert
    lifecycle.sync(store, "bad_share", [], [], NOW + 2)
    assert lifecycle.get(store, alert_id)["state"] == "closed"
    with pytest.raises(NotFound):
        lifecycle.acknowledge(store, 999, "wang", "x")
    assert ("wang", "alert.ack", f"alert:{alert_id}") in audit(store)


def test_closed_by_hand_stays_closed_until_the_condition_clears(store: Store) -> None:
    [first] = lifecycle.sync(store, "bad_share", [finding()], ["a"], NOW)
    closed = lifecycle.close(store, first, "li", "误报：测试按键")
    assert (closed["state"], closed["closed_by"], closed["close_reason"]) == ("closed", "li", "manual")
    with pytest.raises(AlertStateError, match="closed already"):
        lifecycle.close(store, first, "li")
    assert lifecycle.sync(store, "bad_share", [finding()], ["a"], NOW + 1) == []  # still holds: no new alert
    assert lifecycle.sync(store, "bad_share", [], ["a"], NOW + 2) == []  # cleared
    [second] = lifecycle.sync(store, "bad_share", [finding()], ["a"], NOW + 3)  # back: a new alert
    assert second > first and len(deliveries(store)) == 2


def test_rules_keep_their_own_subjects(store: Store) -> None:
    lifecycle.sync(store, "bad_share", [finding("W01")], [], NOW)
    lifecycle.sync(store, "silent", [Finding("silent", "T01", "静默")], [], NOW)
    lifecycle.sync(store, "bad_share", [], [], NOW)
    assert [(a["rule"], a["state"]) for a in lifecycle.list_alerts(store)] == [
        ("silent", "open"),
        ("bad_share", "closed"),
    ]
    assert [a["rule"] for a in lifecycle.list_alerts(store, "live")] == ["silent"]


# -- the engine ------------------------------------------------------------------------------------
class Broken:
    name = "broken"

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        raise RuntimeError("a bug in a rule")


def config(**alerts: Any) -> HubConfig:
    return build(HubConfig, {"hall": "H1", "alerts": alerts}, "test")


def test_a_failing_rule_is_logged_once_and_the_others_go_on(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = AlertEngine(config(silent={"enabled": False}), tmp_path, lambda: {})
    engine.rules.insert(0, Broken())
    press(store, "W01", BAD, BAD, BAD, BAD, at=NOW - MIN)
    with caplog.at_level(logging.ERROR, logger="hub.alerts.engine"):
        assert len(engine.tick(store, NOW)) == 1
        assert engine.tick(store, NOW) == []
    assert [r.message for r in caplog.records] == ["alert rule broken failed; its alerts stay as they are"]
    assert [a["rule"] for a in lifecycle.list_alerts(store)] == ["bad_share"]


class Scripted:
    """A rule whose condition the test sets: the subjects for which it holds."""

    name = "bad_share"

    def __init__(self) -> None:
        self.holding: set[str] = set()

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        return [finding(s) for s in sorted(self.holding)]


def scripted_engine(tmp_path: Path, **alerts: Any) -> tuple[AlertEngine, Scripted]:
    engine, rule = AlertEngine(config(**alerts), tmp_path, lambda: {}), Scripted()
    engine.rules = [rule]
    return engine, rule


def test_an_alert_closes_only_once_its_condition_stayed_clear(store: Store, tmp_path: Path) -> None:
    engine, rule = scripted_engine(tmp_path, clear_minutes=5)
    rule.holding = {"W01"}
    [first] = engine.tick(store, NOW)
    rule.holding = set()
    engine.tick(store, NOW + MIN)
    rule.holding = {"W01"}
    assert engine.tick(store, NOW + 3 * MIN) == []  # it flickered: the same alert, not notified again
    rule.holding = set()
    engine.tick(store, NOW + 4 * MIN)
    engine.tick(store, NOW + 9 * MIN - 1)
    assert lifecycle.get(store, first)["state"] == "open"
    engine.tick(store, NOW + 9 * MIN)  # five minutes clear
    assert lifecycle.get(store, first)["state"] == "closed"
    rule.holding = {"W01"}
    [second] = engine.tick(store, NOW + 10 * MIN)
    assert second > first


def test_with_clear_minutes_0_an_alert_closes_at_once(store: Store, tmp_path: Path) -> None:
    engine, rule = scripted_engine(tmp_path, clear_minutes=0)
    rule.holding = {"W01"}
    [first] = engine.tick(store, NOW)
    rule.holding = set()
    engine.tick(store, NOW + 1)
    assert lifecycle.get(store, first)["state"] == "closed"


def test_one_closed_by_hand_stays_closed_through_a_flicker(store: Store, tmp_path: Path) -> None:
    engine, rule = scripted_engine(tmp_path, clear_minutes=5)
    rule.holding = {"W01"}
    [first] = engine.tick(store, NOW)
    lifecycle.close(store, first, "li")
    rule.holding = set()
    engine.tick(store, NOW + MIN)
    rule.holding = {"W01"}
    assert engine.tick(store, NOW + 2 * MIN) == []
    rule.holding = set()
    engine.tick(store, NOW + 3 * MIN)
    engine.tick(store, NOW + 8 * MIN)
    rule.holding = {"W01"}
    assert len(engine.tick(store, NOW + 9 * MIN)) == 1


# -- configuration and CLI -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "alerts, message",
    [
        ({"intervl_s": 1}, "unknown key 'alerts.intervl_s'"),
        ({"opening": "9-17"}, "'alerts.opening' must be HH:MM-HH:MM"),
        ({"opening": "17:00-09:00"}, "must end after it starts"),
        ({"bad_share": {"share": 1.5}}, "'alerts.bad_share.share' must be a fraction"),
        ({"bad_share": {"minimum": 4}}, "unknown key 'alerts.bad_share.minimum'"),
        ({"webhooks": [{"name": "a", "url": "ftp://x"}]}, "'alerts.webhooks[0].url' must be an http"),
        ({"webhooks": [{"name": "a", "url": "http://x", "kind": "slack"}]}, "must be one of json, wecom, dingtalk"),
        ({"webhooks": [{"name": "a", "url": "http://x", "secret": "s"}]}, "not dingtalk"),
        ({"webhooks": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}, "distinct"),
        ({"webhooks": [{"url": "http://x"}]}, "missing key 'alerts.webhooks[0].name'"),
    ],
)
def test_config_errors_are_one_clear_line(alerts: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")) as err:
        config(**alerts)
    assert "\n" not in str(err.value)


def test_defaults_are_happyornots() -> None:
    a = config().alerts
    assert (a.bad_share.share, a.bad_share.minutes, a.bad_share.min_ratings) == (0.5, 15.0, 4)
    assert (a.opening, a.days, a.webhooks) == ("09:00-17:00", "workdays", ())


def run(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, (args, result.output, result.stderr)
    return result


def test_cli_lists_acknowledges_and_closes(tmp_path: Path) -> None:
    home = str(tmp_path)
    run("hub", "init", "--home", home, "--hall", "H1")
    with Store(tmp_path / "hub.db") as s:
        [a1] = lifecycle.sync(s, "bad_share", [finding("W01")], [], NOW)
        [a2] = lifecycle.sync(s, "silent", [Finding("silent", "T01", "终端静默")], [], NOW)
    rows = json.loads(run("alerts", "list", "--home", home, "--format", "json").output)["rows"]
    assert [(r["id"], r["state"]) for r in rows] == [(a2, "open"), (a1, "open")]
    assert run("alerts", "ack", str(a1), "--home", home, ok=False).exit_code == 2  # --comment is required
    run("alerts", "ack", str(a1), "--comment", "在处理", "--actor", "wang", "--home", home)
    run("alerts", "close", str(a2), "--actor", "li", "--home", home)
    again = run("alerts", "close", str(a2), "--home", home, ok=False)
    assert again.exit_code == 1 and again.stderr.strip() == f"Error: alert {a2} is closed already"
    live = json.loads(run("alerts", "list", "--home", home, "--format", "json").output)["rows"]
    assert [(r["id"], r["state"], r["acked_by"]) for r in live] == [(a1, "acknowledged", "wang")]
    every = json.loads(run("alerts", "list", "--state", "all", "--home", home, "--format", "json").output)["rows"]
    assert [r["state"] for r in every] == ["closed", "acknowledged"]
    assert run("alerts", "ack", "99", "--comment", "x", "--home", home, ok=False).stderr.strip() == "Error: no alert 99"
    with Store(tmp_path / "hub.db") as s:
        assert [(a, act) for a, act, _ in audit(s)][-2:] == [("wang", "alert.ack"), ("li", "alert.close")]


def test_cli_shows_the_rules_of_hub_toml(tmp_path: Path) -> None:
    home = str(tmp_path)
    run("hub", "init", "--home", home, "--hall", "H1")
    with (tmp_path / "hub.toml").open("a") as f:
        f.write('[alerts.bad_share]\nshare = 0.6\n[[alerts.webhooks]]\nname = "值班群"\nkind = "dingtalk"\n')
        f.write('url = "https://oapi.dingtalk.com/robot/send?access_token=t"\nsecret = "SECx"\n')
    load(tmp_path)
    shown = json.loads(run("alerts", "rules", "--home", home, "--format", "json").output)
    assert shown["webhooks"] == [{"name": "值班群", "kind": "dingtalk", "signed": True}]
    bad = next(r for r in shown["rules"] if r["rule"] == "bad_share")
    assert bad["enabled"] and "60%" in bad["condition"] and "至少 4 个" in bad["condition"]
    assert "SECx" not in run("alerts", "rules", "--home", home).output
