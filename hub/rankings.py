"""Published window rankings, by window and department name, read from the counters only.

- the monthly window ranking (窗口月度排名): every window of the hall in one month, ranked by
  satisfaction rate, then mean score, then bad-review rate (the satisfaction rate alone saturates
  near 100 %); windows without ratings are listed last, unranked;
- the "most difficult windows" list (最难办窗口, a quarter by default, as district halls publish
  it): the windows with at least ``min_ratings`` ratings and at least one bad review, worst
  bad-review rate first, those ranked ``top`` or better (windows tied for the last place all stay).

Ratings flagged as misuse are left out of every figure here (as they are of every rate), so
``ratings`` is the rates' denominator. A query costs the same for a month of ten years' data as
for a day (the counters' month roll-ups; see :mod:`hub.store.tallies`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from protocol.levels import BAD_LEVEL_IDS, LEVEL_IDS

from .config import HubConfig
from .periods import period_range
from .stats import summarize
from .store import Store
from .store.registry import list_windows
from .store.schema import TALLY_COLUMNS
from .store.tallies import query

KINDS = ("monthly", "difficult")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a ranking table: its Chinese heading, row key and kind of value.

    Kinds: ``text``, ``int``, ``rate`` (a fraction, shown and written as a percentage),
    ``score`` (mean score 1–5)."""

    head: str
    key: str
    kind: str = "int"


_RATES = (
    Column("评价率", "evaluation_rate", "rate"),
    Column("满意率", "satisfaction_rate", "rate"),
    Column("差评率", "bad_rate", "rate"),
    Column("平均分", "mean_score", "score"),
)
_NAMES = (Column("窗口编号", "window", "text"), Column("窗口名称", "name", "text"), Column("部门", "dept", "text"))
MONTHLY_COLUMNS = (
    Column("排名", "rank"),
    *_NAMES,
    Column("办件量", "cases"),
    Column("评价数", "ratings"),
    *_RATES,
    Column("差评数", "bad"),
    Column("有效差评", "valid_tickets"),
    Column("已整改", "rectified"),
    Column("整改率", "rectification_rate", "rate"),
)
DIFFICULT_COLUMNS = (
    Column("排名", "rank"),
    *_NAMES,
    Column("评价数", "ratings"),
    Column("差评数", "bad"),
    Column("差评率", "bad_rate", "rate"),
    Column("满意率", "satisfaction_rate", "rate"),
    Column("平均分", "mean_score", "score"),
    Column("有效差评", "valid_tickets"),
    Column("已整改", "rectified"),
    Column("整改率", "rectification_rate", "rate"),
)
COLUMNS = {"monthly": MONTHLY_COLUMNS, "difficult": DIFFICULT_COLUMNS}


def _figures(counts: dict[str, Any], threshold: str) -> dict[str, Any]:
    """The rates of :func:`hub.stats.summarize` plus the clean ratings and bad reviews behind them."""
    row = summarize(counts, threshold)
    clean = {lv: (counts.get(f"lv_{lv}") or 0) - (counts.get(f"fl_{lv}") or 0) for lv in LEVEL_IDS}
    return {
        **{k: row[k] for k in ("cases", "evaluation_rate", "satisfaction_rate", "bad_rate", "mean_score")},
        **{k: row[k] for k in ("valid_tickets", "rectified", "rectification_rate")},
        "ratings": sum(clean.values()),
        "bad": sum(clean[lv] for lv in BAD_LEVEL_IDS),
    }


def window_figures(store: Store, start: dt.date, end: dt.date, threshold: str) -> list[dict[str, Any]]:
    """Every registered window (and any window the counters name) with its name, department and
    figures over [start, end], in window id order."""
    counted = {str(r["window"]): r for r in query(store.conn, ["window"], start, end)}
    registry = {w["window"]: w for w in list_windows(store)}
    out = []
    for window in sorted(registry.keys() | counted.keys()):
        reg = registry.get(window, {})
        out.append(
            {
                "window": window,
                "name": reg.get("name") or window,
                "dept": reg.get("dept") or "",
                **_figures(counted.get(window, {}), threshold),
            }
        )
    return out


def _hall_total(store: Store, start: dt.date, end: dt.date, threshold: str) -> dict[str, Any]:
    (counts,) = query(store.conn, [], start, end) or [dict.fromkeys(TALLY_COLUMNS, 0)]
    return _figures(counts, threshold)


def _ranked(rows: list[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    """``rows`` (already in order) with competition ranks (1, 2, 2, 4): equal keys share a rank."""
    out, previous, rank = [], None, 0
    for i, row in enumerate(rows, start=1):
        k = key(row)
        rank = rank if k == previous else i
        previous = k
        out.append({"rank": rank, **row})
    return out


def _head(kind: str, config: HubConfig, start: dt.date, end: dt.date, label: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "hall": config.hall,
        "period": label,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "threshold": config.satisfaction_threshold,
    }


def monthly(store: Store, config: HubConfig, day: dt.date) -> dict[str, Any]:
    """The monthly ranking of the month holding ``day``."""
    start, end, label = period_range("month", day)
    th = config.satisfaction_threshold
    rows = window_figures(store, start, end, th)
    rated = [r for r in rows if r["ratings"]]
    rated.sort(key=lambda r: (-r["satisfaction_rate"], -r["mean_score"], r["bad_rate"], -r["ratings"], r["window"]))
    ranked = _ranked(rated, lambda r: (r["satisfaction_rate"], r["mean_score"], r["bad_rate"]))
    unrated = [{"rank": None, **r} for r in rows if not r["ratings"]]
    return {
        **_head("monthly", config, start, end, label),
        "rows": ranked + unrated,
        "total": _hall_total(store, start, end, th),
    }


def difficult(
    store: Store, config: HubConfig, day: dt.date, period: str = "quarter", min_ratings: int = 30, top: int = 10
) -> dict[str, Any]:
    """The ``top`` windows by bad-review rate over the ``period`` holding ``day`` (more when
    windows tie for the last place), among those with at least ``min_ratings`` ratings and one
    bad review."""
    start, end, label = period_range(period, day)
    th = config.satisfaction_threshold
    rows = window_figures(store, start, end, th)
    eligible = [r for r in rows if r["ratings"] >= max(min_ratings, 1) and r["bad"] > 0]
    eligible.sort(key=lambda r: (-r["bad_rate"], -r["bad"], r["window"]))
    ranked = _ranked(eligible, lambda r: r["bad_rate"])
    return {
        **_head("difficult", config, start, end, label),
        "min_ratings": min_ratings,
        "top": top,
        "eligible": len(eligible),
        "windows": len(rows),
        "rows": [r for r in ranked if r["rank"] <= top],  # windows tied for the last place all stay
        "total": _hall_total(store, start, end, th),
    }


def build(
    kind: str, store: Store, config: HubConfig, day: dt.date, period: str | None, min_ratings: int, top: int
) -> dict[str, Any]:
    """The report ``kind`` (one of :data:`KINDS`) as one JSON-ready dict."""
    if kind == "monthly":
        if period not in (None, "month"):
            raise ValueError("the monthly ranking covers a month: leave out --period")
        return monthly(store, config, day)
    if kind == "difficult":
        return difficult(store, config, day, period or "quarter", min_ratings, top)
    raise ValueError(f"unknown report {kind!r}; choose {', '.join(KINDS)}")
