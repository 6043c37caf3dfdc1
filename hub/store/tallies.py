"""Counters per (day, device, window, item, staff), rolled up by month and year.

Every change is applied at three grains in the same transaction as the event insert: ``d``
(period ``YYYY-MM-DD``), ``m`` (``YYYY-MM``) and ``y`` (``YYYY``). A query over any date range is
split into whole years, whole months and leftover days, so a year costs about as much as a day.
Bad-review tickets are counted in the same rows, in the transaction of each ticket change.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .layout import GRAINS, TALLY_COLUMNS, TALLY_KEYS, TICKET_COUNTS, count_tickets

__all__ = ["DIMENSIONS", "GRAINS", "TICKET_COUNTS", "count_tickets", "query"]

#: (day, device, window, item, staff); empty strings where a field is unknown.
TallyKey = tuple[str, str, str, str, str]
DIMENSIONS = ("device", "window", "item", "staff", "day")

_UPSERT = (
    f"INSERT INTO tallies ({', '.join(TALLY_KEYS)}, {{cols}}) VALUES ({', '.join('?' * len(TALLY_KEYS))}, {{marks}}) "
    f"ON CONFLICT ({', '.join(TALLY_KEYS)}) DO UPDATE SET {{sets}}"
)


def local_day(t_ms: int, tz: dt.tzinfo) -> str:
    """The hall-local day of an instant, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(t_ms / 1000, tz).date().isoformat()


class DayCache:
    """:func:`local_day` for a stream of mostly same-day instants: remembers the last day's bounds."""

    def __init__(self, tz: dt.tzinfo) -> None:
        self.tz = tz
        self._lo = self._hi = 0
        self._day = ""

    def __call__(self, t_ms: int) -> str:
        if not self._lo <= t_ms < self._hi:
            local = dt.datetime.fromtimestamp(t_ms / 1000, self.tz)
            start = local.replace(hour=0, minute=0, second=0, microsecond=0)
            end = (start + dt.timedelta(days=1)).replace(tzinfo=None).replace(tzinfo=self.tz)  # DST-safe wall day
            self._lo, self._hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
            self._day = start.date().isoformat()
        return self._day


class TallyDelta:
    """Counter changes gathered over one ingest batch, applied in one go."""

    def __init__(self) -> None:
        self.rows: defaultdict[TallyKey, Counter[str]] = defaultdict(Counter)

    def add(self, key: TallyKey, column: str, n: int = 1) -> None:
        if column not in TALLY_COLUMNS:
            raise KeyError(f"no tally column {column!r}")
        self.rows[key][column] += n

    def apply(self, conn: sqlite3.Connection) -> None:
        for (day, device, window, item, staff), counts in self.rows.items():
            cols = sorted(counts)
            sql = _UPSERT.format(
                cols=", ".join(cols),
                marks=", ".join("?" * len(cols)),
                sets=", ".join(f"{c} = {c} + excluded.{c}" for c in cols),
            )
            values = [counts[c] for c in cols]
            conn.executemany(sql, [(g, day[:n], device, window, item, staff, *values) for g, n in GRAINS])
        self.rows.clear()


def _month_end(day: dt.date) -> dt.date:
    if (day.year, day.month) == (9999, 12):
        return dt.date.max
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1) - dt.timedelta(days=1)


def _next(day: dt.date) -> dt.date | None:
    return None if day == dt.date.max else day + dt.timedelta(days=1)


def segments(start: dt.date | None, end: dt.date | None, by_day: bool) -> list[tuple[str, str, str]]:
    """(grain, first period, last period) triples covering [start, end], largest grains first."""
    start = start or dt.date(1, 1, 1)
    end = end or dt.date.max
    if by_day:
        return [("d", start.isoformat(), end.isoformat())]
    out: list[tuple[str, str, str]] = []
    cur: dt.date | None = start
    while cur is not None and cur <= end:
        if cur.month == 1 and cur.day == 1 and dt.date(cur.year, 12, 31) <= end:
            last_year = end.year if end.month == 12 and end.day == 31 else end.year - 1
            out.append(("y", f"{cur.year:04d}", f"{last_year:04d}"))
            cur = _next(dt.date(last_year, 12, 31))
        elif cur.day == 1 and _month_end(cur) <= end:
            last = cur
            while last.month < 12 and _month_end(dt.date(last.year, last.month + 1, 1)) <= end:
                last = dt.date(last.year, last.month + 1, 1)
            out.append(("m", cur.isoformat()[:7], last.isoformat()[:7]))
            cur = _next(_month_end(last))
        else:
            last_day = min(_month_end(cur), end)
            out.append(("d", cur.isoformat(), last_day.isoformat()))
            cur = _next(last_day)
    return out


def query(
    conn: sqlite3.Connection,
    by: Sequence[str],
    start: dt.date | None,
    end: dt.date | None,
    where: Iterable[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    """Summed counters grouped by ``by`` (names from :data:`DIMENSIONS`) over [start, end]."""
    for name in by:
        if name not in DIMENSIONS:
            raise ValueError(f"cannot group by {name!r}; choose from {', '.join(DIMENSIONS)}")
    filters = list(where)
    parts, params = [], []
    for grain, lo, hi in segments(start, end, "day" in by):
        cond = " AND ".join(["grain = ?", "period BETWEEN ? AND ?", *(f"{k} = ?" for k, _ in filters)])
        parts.append(f"SELECT * FROM tallies WHERE {cond}")
        params.extend([grain, lo, hi, *(v for _, v in filters)])
    cols = ["period AS day" if d == "day" else d for d in by]
    sums = [f"SUM({c}) AS {c}" for c in TALLY_COLUMNS]
    group = f" GROUP BY {', '.join(by)} ORDER BY {', '.join(by)}" if by else ""
    sql = f"SELECT {', '.join([*cols, *sums])} FROM ({' UNION ALL '.join(parts)}){group}"
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur]
    return [r for r in rows if r[TALLY_COLUMNS[0]] is not None or by]
