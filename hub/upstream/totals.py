"""Period totals per window and item, queued for the regional system.

Totals come from :func:`hub.stats.stats`, the same counters as ``haocha stats``, so what upstream
receives matches what the hall reads. A period's totals have a stable id; queuing them again
while unsent replaces the pending copy, and the regional system keeps the newest it received.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..config import HubConfig
from ..stats import stats
from ..store import Store
from . import outbox


def period_range(period: str, day: dt.date) -> tuple[dt.date, dt.date, str]:
    """(first day, last day, label) of the ``period`` holding ``day``."""
    if period == "day":
        return day, day, day.isoformat()
    if period == "week":
        start = day - dt.timedelta(days=day.weekday())
        year, week, _ = day.isocalendar()
        return start, start + dt.timedelta(days=6), f"{year}-W{week:02d}"
    if period == "month":
        start = day.replace(day=1)
        return start, _next_month(start) - dt.timedelta(days=1), start.isoformat()[:7]
    if period == "quarter":
        q = (day.month - 1) // 3
        start = dt.date(day.year, 3 * q + 1, 1)
        end = _next_month(_next_month(_next_month(start))) - dt.timedelta(days=1)
        return start, end, f"{day.year}-Q{q + 1}"
    if period == "year":
        return dt.date(day.year, 1, 1), dt.date(day.year, 12, 31), str(day.year)
    raise ValueError(f"unknown period {period!r}; choose day, week, month, quarter or year")


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def totals_rows(store: Store, config: HubConfig, period: str, day: dt.date) -> list[dict[str, Any]]:
    start, end, label = period_range(period, day)
    result = stats(store, ["window", "item"], start, end, config.satisfaction_threshold)
    keep = ("cases", "evaluations", "levels", "evaluation_rate", "satisfaction_rate", "bad_rate")
    return [
        {
            "totals_id": f"{config.hall}-{label}-{row['window']}-{row['item']}",
            "hall": config.hall,
            "period": label,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "window": row["window"],
            "item": row["item"],
            **{k: row[k] for k in keep},
        }
        for row in result["rows"]
    ]


def queue_totals(store: Store, config: HubConfig, period: str, day: dt.date) -> int:
    """Queue the totals of the period holding ``day``; returns how many rows were queued."""
    rows = totals_rows(store, config, period, day)
    with store.transaction() as conn:
        for row in rows:
            outbox.put_totals(conn, row["totals_id"], row)
    return len(rows)
