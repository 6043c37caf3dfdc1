"""Reporting periods: the day, week, month, quarter or year holding a day (upstream totals and
the monthly report share them)."""

from __future__ import annotations

import datetime as dt


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
