"""The alert rules: each reads the store (and the daemon's own counters) and returns the subjects
whose condition holds now, as :class:`~hub.alerts.lifecycle.Finding` objects.

Rules only read, with queries whose cost does not grow with the years of stored evaluations:
recent events are found by a binary search on the event id (ids grow with receive time), the
outbox through its partial indexes, terminals through the ``devices`` and ``epochs`` tables.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Protocol
from zoneinfo import ZoneInfo

from protocol.levels import BAD_LEVEL_IDS

from ..alert_settings import RULE_TITLES, AlertSettings, BacklogRule, BadShareRule, CommitRule, SilentRule
from ..config import HubConfig
from ..layers import opening_for
from ..store.registry import stored_state
from ..tickets import Calendar
from .lifecycle import Finding

MINUTE_MS = 60_000
#: A rating stamped this far after the evaluation time still counts as now (clocks differ a little).
CLOCK_SLACK_MS = 60_000


class Rule(Protocol):
    name: str

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]: ...


def first_event_since(conn: sqlite3.Connection, since_ms: int) -> int | None:
    """The smallest event id whose receive time is ``since_ms`` or later (binary search: ids grow
    with receive time); None when nothing was received since."""
    # Two statements: SQLite answers min() alone or max() alone from the index, both together by a scan.
    lo = conn.execute("SELECT min(id) FROM events").fetchone()[0]
    hi = conn.execute("SELECT max(id) FROM events").fetchone()[0]
    if hi is None or _received_from(conn, hi) < since_ms:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if _received_from(conn, mid) >= since_ms:
            hi = mid
        else:
            lo = mid + 1
    return int(lo)


def _received_from(conn: sqlite3.Connection, event_id: int) -> int:
    """Receive time of the first event with an id at or above ``event_id`` (ids may have gaps)."""
    return int(
        conn.execute("SELECT received_ms FROM events WHERE id >= ? ORDER BY id LIMIT 1", (event_id,)).fetchone()[0]
    )


def _window_names(conn: sqlite3.Connection) -> dict[str, str]:
    return {w: n for w, n in conn.execute("SELECT id, name FROM windows")}


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


class BadShare:
    """A window's share of bad reviews over a sliding period, with a minimum count of ratings
    (HappyOrNot's default: at least 50 % unhappy in 15 minutes with at least 4 ratings). Accepted
    ratings only: refused, flagged (misuse) and invalid events are left out, as from the rates."""

    name = "bad_share"

    def __init__(self, settings: BadShareRule) -> None:
        self.settings = settings

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        s = self.settings
        since = now_ms - int(s.minutes * MINUTE_MS)
        first = first_event_since(conn, since)
        if first is None:
            return []
        bad_levels = ", ".join(f"'{lv}'" for lv in sorted(BAD_LEVEL_IDS))
        rows = conn.execute(
            f"SELECT window, count(*), sum(level IN ({bad_levels})) FROM events WHERE id >= ? AND kind = 'rating' "
            "AND status = 'accepted' AND t_ms >= ? AND t_ms <= ? GROUP BY window",
            (first, since, now_ms + CLOCK_SLACK_MS),
        ).fetchall()
        names = _window_names(conn)
        return [
            self._finding(w, names.get(w, w), n, bad) for w, n, bad in rows if n >= s.min_ratings and bad >= s.share * n
        ]

    def _finding(self, window: str, name: str, n: int, bad: int) -> Finding:
        minutes = f"{self.settings.minutes:g}"
        summary = f"窗口 {name}（{window}）{minutes} 分钟内差评 {bad}/{n}（{_percent(bad / n)}）"
        detail = {"window": window, "name": name, "ratings": n, "bad": bad, "minutes": self.settings.minutes}
        return Finding(self.name, window, summary, detail)


class OpeningHours:
    """The hall's opening hours in hall local time, on working days or every day."""

    def __init__(self, settings: AlertSettings, calendar: Calendar, tz: ZoneInfo) -> None:
        self.start, self.end = settings.opening_times()
        self.every_day = settings.days == "every"
        self.calendar = calendar
        self.tz = tz

    def opened_ms(self, now_ms: int, hours: str | None = None) -> int | None:
        """When the hall (or a window open ``hours``, "HH:MM-HH:MM", on the hall's days) opened
        today (epoch ms), or None if it is closed now."""
        local = dt.datetime.fromtimestamp(now_ms / 1000, self.tz)
        if not (self.every_day or self.calendar.is_workday(local.date())):
            return None
        start, end = (self.start, self.end) if hours is None else _hours(hours)
        if local.time() < start or (end is not None and local.time() >= end):
            return None
        return int(dt.datetime.combine(local.date(), start, self.tz).timestamp() * 1000)


def _hours(text: str) -> tuple[dt.time, dt.time | None]:
    start, end = text.split("-")
    return dt.time.fromisoformat(start), None if end == "24:00" else dt.time.fromisoformat(end)


class Silent:
    """A terminal from which nothing (no event of any kind) has arrived for ``minutes`` of today's
    opening hours: the hall's ([alerts] opening), or its own where its layers set ``opening``
    (hub.layers). Outside opening hours the condition does not hold, so its alerts close."""

    name = "silent"

    def __init__(self, settings: SilentRule, hours: OpeningHours) -> None:
        self.settings = settings
        self.hours = hours

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        hall_opened = self.hours.opened_ms(now_ms)
        own = opening_for(conn)  # windows and devices whose layers set their own ``opening``
        if hall_opened is None and not own:
            return []
        limit = int(self.settings.minutes * MINUTE_MS)
        rows = conn.execute(
            "SELECT d.id, d.window, coalesce(d.created_ms, 0), d.state, "
            "(SELECT max(last_ms) FROM epochs e WHERE e.device = d.id) FROM devices d WHERE d.revoked = 0"
        ).fetchall()
        names = _window_names(conn)
        found = []
        for device, window, created, state, last in rows:
            opened = hall_opened if device not in own else self.hours.opened_ms(now_ms, own[device])
            if opened is None:
                continue
            since = max(last or 0, created, opened)
            if now_ms - since >= limit:
                found.append(self._finding(device, window, names.get(window, window), last, state))
        return found

    def _finding(self, device: str, window: str, name: str, last: int | None, state: str | None) -> Finding:
        online = stored_state(state).get("online")
        how = "在线，但没有人评价" if online else "离线"
        summary = f"终端 {device}（窗口 {name}）营业时间内 {self.settings.minutes:g} 分钟无消息，{how}"
        detail = {"device": device, "window": window, "last_ms": last, "online": bool(online)}
        return Finding(self.name, device, summary, detail)


class Backlog:
    """An online terminal whose backlog (events journaled, not yet acknowledged by the hub, from
    its retained state) is at least ``min_backlog`` and has not shrunk over ``minutes``. Samples
    are kept in memory, one per evaluation: after a hub restart the rule waits one period."""

    name = "backlog"

    def __init__(self, settings: BacklogRule) -> None:
        self.settings = settings
        self.samples: dict[str, deque[tuple[int, int]]] = {}

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        period = int(self.settings.minutes * MINUTE_MS)
        seen, found = set(), []
        for device, state in conn.execute("SELECT id, state FROM devices WHERE revoked = 0"):
            parsed = stored_state(state)
            if not parsed.get("online"):
                continue
            seen.add(device)
            backlog = int(parsed.get("backlog", 0))
            old = self._remember(device, now_ms, backlog, period)
            if old is not None and backlog >= self.settings.min_backlog and backlog >= old:
                found.append(self._finding(device, backlog, old))
        for device in self.samples.keys() - seen:
            del self.samples[device]  # offline or revoked: start again when it is back
        return found

    def _remember(self, device: str, now_ms: int, backlog: int, period: int) -> int | None:
        """Add a sample; return the backlog ``period`` ago (None without history that long)."""
        samples = self.samples.setdefault(device, deque())
        samples.append((now_ms, backlog))
        while len(samples) > 1 and samples[1][0] <= now_ms - period:
            samples.popleft()
        return samples[0][1] if samples[0][0] <= now_ms - period else None

    def _finding(self, device: str, backlog: int, old: int) -> Finding:
        minutes = f"{self.settings.minutes:g}"
        summary = f"终端 {device} 积压 {backlog} 条未确认（{minutes} 分钟前 {old} 条），没有减少"
        return Finding(self.name, device, summary, {"device": device, "backlog": backlog, "before": old})


class UpstreamParked:
    """Records the regional system refused as invalid wait for a person (``upstream parked``)."""

    name = "upstream_parked"

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        n = int(conn.execute("SELECT count(*) FROM outbox WHERE status = 'parked'").fetchone()[0])
        if n == 0:
            return []
        summary = f"上报省平台被拒的记录 {n} 条（haocha upstream parked 查看原因）"
        return [Finding(self.name, "outbox", summary, {"parked": n})]


class UpstreamPending:
    """The oldest record waiting to go upstream has waited longer than ``pending_minutes``."""

    name = "upstream_pending"

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        row = conn.execute("SELECT created_ms FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 1").fetchone()
        if row is None or now_ms - int(row[0]) < self.minutes * MINUTE_MS:
            return []
        waited = (now_ms - int(row[0])) // MINUTE_MS
        summary = f"上报省平台的记录已等待 {waited} 分钟以上，未能发送"
        return [Finding(self.name, "outbox", summary, {"oldest_ms": int(row[0])})]


class CommitFailures:
    """The hub's writer failed to commit (disk full, I/O error): the daemon's counter grew within
    the last ``quiet_minutes``. Nothing is acknowledged meanwhile, so terminals' backlogs grow."""

    name = "commit_failures"

    def __init__(self, settings: CommitRule, health: Callable[[], dict[str, int]]) -> None:
        self.settings = settings
        self.health = health
        self.seen = 0
        self.last_ms: int | None = None

    def evaluate(self, conn: sqlite3.Connection, now_ms: int) -> list[Finding]:
        failures = int(self.health().get("commit_failures", 0))
        if failures > self.seen:
            self.seen, self.last_ms = failures, now_ms
        if self.last_ms is None or now_ms - self.last_ms >= self.settings.quiet_minutes * MINUTE_MS:
            return []
        summary = "中心数据库写入失败（磁盘满或读写错误），评价暂未确认"
        return [Finding(self.name, "writer", summary, {})]


def build_rules(config: HubConfig, health: Callable[[], dict[str, int]]) -> list[Rule]:
    """The rules ``hub.toml`` turns on, in evaluation order."""
    a = config.alerts
    hours = OpeningHours(a, Calendar.from_settings(config.tickets), config.tz)
    rules: list[Rule] = []
    if a.bad_share.enabled:
        rules.append(BadShare(a.bad_share))
    if a.silent.enabled:
        rules.append(Silent(a.silent, hours))
    if a.backlog.enabled:
        rules.append(Backlog(a.backlog))
    if a.upstream.parked:
        rules.append(UpstreamParked())
    if a.upstream.pending_minutes > 0 and config.upstream.url:
        rules.append(UpstreamPending(a.upstream.pending_minutes))
    if a.commit_failures.enabled:
        rules.append(CommitFailures(a.commit_failures, health))
    return rules


def describe(config: HubConfig) -> list[dict[str, object]]:
    """Every rule with whether it is on and its condition in words, for the CLI and the console."""
    a = config.alerts
    b, si, bl, c = a.bad_share, a.silent, a.backlog, a.commit_failures
    pending_on = a.upstream.pending_minutes > 0 and bool(config.upstream.url)
    return [
        _rule(
            "bad_share",
            b.enabled,
            f"窗口 {b.minutes:g} 分钟内至少 {b.min_ratings} 个评价且差评占比 ≥ {_percent(b.share)}",
        ),
        _rule("silent", si.enabled, f"营业时间（{a.opening}，{_DAYS[a.days]}）内终端 {si.minutes:g} 分钟无任何消息"),
        _rule("backlog", bl.enabled, f"在线终端积压 ≥ {bl.min_backlog} 条且 {bl.minutes:g} 分钟内没有减少"),
        _rule("upstream_parked", a.upstream.parked, "有被省平台拒收（搁置）的上报记录"),
        _rule("upstream_pending", pending_on, f"最早的待上报记录等待超过 {a.upstream.pending_minutes:g} 分钟"),
        _rule("commit_failures", c.enabled, f"中心写入数据库失败（{c.quiet_minutes:g} 分钟无失败后关闭）"),
    ]


_DAYS = {"workdays": "工作日", "every": "每天"}


def _rule(name: str, enabled: bool, condition: str) -> dict[str, object]:
    return {"rule": name, "title": RULE_TITLES[name], "enabled": enabled, "condition": condition}
