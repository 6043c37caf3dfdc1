"""The Today page's figures (supervisor, auditor): the hall's day at a glance.

Everything comes from the day's counter rows (one range of the tallies' primary key), the open
tickets (a partial index) and the terminals' stored states, so the cost does not grow with the
years of evaluations kept (``bench/today.py``: 10 million stored, target ≤ 100 ms).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..config import HubConfig
from ..stats import stats, summarize
from ..store import Store, now_ms
from ..store.registry import list_windows
from ..tickets import Calendar
from .terminals import Terminal, terminals


@dataclass(frozen=True, slots=True)
class WindowCard:
    window: str
    name: str
    dept: str | None
    figures: dict[str, Any]  #: a ``stats`` row (cases, evaluations, levels, rates, mean score)
    terminals: list[Terminal]


@dataclass(frozen=True, slots=True)
class Today:
    day: dt.date
    total: dict[str, Any]  #: the hall's ``stats`` total for the day
    tickets_open: int  #: bad reviews waiting: tickets not closed, whatever day they came
    tickets_overdue: int  #: of those, past their deadline in working days
    windows: list[WindowCard]
    terminals_online: int
    terminals_silent: int
    terminals_total: int  #: not revoked


def today(store: Store, config: HubConfig, at_ms: int | None = None) -> Today:
    """The hall's figures for the hall-local day holding ``at_ms`` (default now)."""
    at_ms = now_ms() if at_ms is None else at_ms
    day = dt.datetime.fromtimestamp(at_ms / 1000, config.tz).date()
    result = stats(store, ["window"], day, day, config.satisfaction_threshold)
    rows = {r["window"]: r for r in result["rows"]}
    zero = summarize({}, config.satisfaction_threshold)  # a window with no counter row today
    terms = [t for t in terminals(store, at_ms) if not t.revoked]
    by_window: dict[str, list[Terminal]] = {}
    for t in terms:
        by_window.setdefault(t.window, []).append(t)
    cards = [
        WindowCard(w["window"], w["name"], w["dept"], rows.get(w["window"], zero), by_window.get(w["window"], []))
        for w in list_windows(store)
    ]
    open_n, overdue_n = _open_tickets(store, config, day)
    return Today(
        day=day,
        total=result["total"],
        tickets_open=open_n,
        tickets_overdue=overdue_n,
        windows=cards,
        terminals_online=sum(t.online is True for t in terms),
        terminals_silent=sum(t.silent for t in terms),
        terminals_total=len(terms),
    )


def _open_tickets(store: Store, config: HubConfig, day: dt.date) -> tuple[int, int]:
    """(open, overdue) tickets; one deadline computed per opening day, not per ticket."""
    cal = Calendar.from_settings(config.tickets)
    days = config.tickets.deadline_days
    open_n = overdue_n = 0
    for opened_day, n in store.conn.execute(
        "SELECT opened_day, count(*) FROM tickets WHERE closed_ms IS NULL GROUP BY opened_day"
    ):
        open_n += n
        if day > cal.add_workdays(dt.date.fromisoformat(opened_day), days):
            overdue_n += n
    return open_n, overdue_n
