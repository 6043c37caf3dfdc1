"""Windows and staff over a chosen period, with trends by day, week or month.

Figures come from the counters through :func:`hub.store.tallies.query`, which reads whole years
and months from their roll-up rows. A trend by month costs one such query per month; by day and
by week it reads the day rows of the period once, so those grains are bounded in length.
Per-staff figures are personal data: the caller decides who may see them (SPEC section 12).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..stats import stats, summarize
from ..store import Store
from ..store.schema import TALLY_COLUMNS
from ..store.tallies import query

GRAINS = ("day", "week", "month")
#: Longest period a trend by day or week may cover (they read every day row of the period).
MAX_DAYS = {"day": 92, "week": 371}


@dataclass(frozen=True, slots=True)
class Period:
    start: dt.date
    end: dt.date
    grain: str

    @classmethod
    def parse(cls, start: str | None, end: str | None, grain: str | None, today: dt.date) -> Period:
        """From query parameters; default the last 30 days by day. ValueError with a message for people."""
        try:
            last = dt.date.fromisoformat(end) if end else today
            first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=29)
        except ValueError:
            raise ValueError("日期格式应为 YYYY-MM-DD") from None
        grain = grain or "day"
        if grain not in GRAINS:
            raise ValueError(f"趋势粒度应为 {' / '.join(GRAINS)}")
        if first > last:
            raise ValueError("开始日期晚于结束日期")
        limit = MAX_DAYS.get(grain)
        if limit is not None and (last - first).days + 1 > limit:
            raise ValueError(f"按{_GRAIN_ZH[grain]}的趋势最长 {limit} 天，请选更短的时段或按月")
        return cls(first, last, grain)


_GRAIN_ZH = {"day": "日", "week": "周", "month": "月"}


@dataclass(frozen=True, slots=True)
class Point:
    label: str  #: ``YYYY-MM-DD``, ``YYYY-Www`` or ``YYYY-MM``
    start: dt.date
    end: dt.date
    figures: dict[str, Any]  #: a ``stats`` row for the bucket (clipped to the period)


def trend(
    store: Store, period: Period, threshold: str, window: str | None = None, staff: str | None = None
) -> list[Point]:
    """One point per day, ISO week or month of ``period``; buckets at the edges are clipped."""
    where = [(k, v) for k, v in (("window", window), ("staff", staff)) if v is not None]
    if period.grain == "month":
        return [
            Point(label, lo, hi, summarize(_sum(query(store.conn, [], lo, hi, where)), threshold))
            for label, lo, hi in _months(period)
        ]
    days = {r["day"]: r for r in query(store.conn, ["day"], period.start, period.end, where)}
    buckets: dict[str, list[dt.date]] = {}
    day = period.start
    while day <= period.end:
        year, week, _ = day.isocalendar()
        buckets.setdefault(day.isoformat() if period.grain == "day" else f"{year}-W{week:02d}", []).append(day)
        day += dt.timedelta(days=1)
    return [
        Point(
            label,
            span[0],
            span[-1],
            summarize(_sum([days[d.isoformat()] for d in span if d.isoformat() in days]), threshold),
        )
        for label, span in buckets.items()
    ]


def _months(period: Period) -> list[tuple[str, dt.date, dt.date]]:
    out = []
    lo = period.start
    while lo <= period.end:
        nxt = dt.date(lo.year + lo.month // 12, lo.month % 12 + 1, 1)
        hi = min(nxt - dt.timedelta(days=1), period.end)
        out.append((lo.isoformat()[:7], lo, hi))
        lo = nxt
    return out


def _sum(rows: list[dict[str, Any]]) -> dict[str, int]:
    total = dict.fromkeys(TALLY_COLUMNS, 0)
    for row in rows:
        for c in TALLY_COLUMNS:
            total[c] += row.get(c) or 0
    return total


def windows_table(store: Store, period: Period, threshold: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every registered window (and any counted window no longer registered) with its figures over
    the period, by window id, and the hall total."""
    result = stats(store, ["window"], period.start, period.end, threshold)
    rows = {r["window"]: r for r in result["rows"]}
    zero = summarize({}, threshold)
    names = {w: (n, d) for w, n, d in store.conn.execute("SELECT id, name, dept FROM windows")}
    out = [
        {**rows.get(w, zero), "window": w, "name": names.get(w, (w, None))[0], "dept": names.get(w, (w, None))[1]}
        for w in sorted(set(names) | set(rows))
    ]
    return out, result["total"]


def staff_table(store: Store, period: Period, threshold: str, window: str | None = None) -> list[dict[str, Any]]:
    """Figures per staff member over the period (of one window when given), with names where the
    hall registered them; ratings with no staff member are left out."""
    where = [("window", window)] if window else []
    raw = query(store.conn, ["staff"], period.start, period.end, where)
    names = dict(store.conn.execute("SELECT id, name FROM staff"))
    return [
        {**summarize(r, threshold), "staff": r["staff"], "name": names.get(r["staff"]) or r["staff"]}
        for r in raw
        if r["staff"]
    ]


def window_name(store: Store, window: str) -> str | None:
    row = store.conn.execute("SELECT name FROM windows WHERE id = ?", (window,)).fetchone()
    return None if row is None else str(row[0])
