"""The upstream page's figures (technician, supervisor, auditor): the outbox towards the regional
好差评 system, its parked records, and a daily reconciliation.

Reconciliation per hall-local day: the hall's evaluations (the counters, as ``stats`` reads
them) against the rating records the regional system acknowledged (``upstream_days``, counted
when the sender marks a record sent; the migration that added it counted the sent records still
kept, ``keep_sent_days`` = 30 by default) and those it refused (parked). What is neither is still
on its way: pending, or held behind a gap in a terminal's sequence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from protocol.levels import LEVEL_IDS

from ..store import Store
from ..upstream import outbox

PARKED_SHOWN = 200


@dataclass(frozen=True, slots=True)
class DayCheck:
    day: str
    hall: int  #: evaluations counted by the hall that day (flagged ones included: they go upstream too)
    acked: int  #: rating records the regional system acknowledged
    parked: int  #: rating records it refused (parked)

    @property
    def waiting(self) -> int:
        return self.hall - self.acked - self.parked

    @property
    def status(self) -> str:
        """``ok`` (all acknowledged), ``waiting`` (some on their way), ``parked`` (some refused),
        ``mismatch`` (more acknowledged than counted)."""
        w = self.waiting
        if w < 0:
            return "mismatch"
        return "parked" if self.parked else "waiting" if w else "ok"


@dataclass(frozen=True, slots=True)
class Upstream:
    url: str
    pending: int  #: held ones included, as ``upstream status`` counts them
    held: int
    sent: int
    parked: int
    oldest_pending_ms: int | None
    parked_rows: list[dict[str, Any]]  #: the oldest :data:`PARKED_SHOWN` parked records, with reasons
    days: list[DayCheck]  #: newest first, days with evaluations or records only
    span_days: int  #: how many days back ``days`` looks


def upstream(store: Store, url: str, today: dt.date, days: int = 14) -> Upstream:
    conn = store.conn
    counts = outbox.counts(conn)
    oldest = conn.execute("SELECT min(created_ms) FROM outbox WHERE status = 'pending'").fetchone()[0]
    return Upstream(
        url=url,
        pending=counts["pending"],
        held=outbox.held(conn),
        sent=counts["sent"],
        parked=counts["parked"],
        oldest_pending_ms=oldest,
        parked_rows=outbox.parked(conn)[:PARKED_SHOWN],
        days=reconcile(store, today - dt.timedelta(days=days - 1), today),
        span_days=days,
    )


def reconcile(store: Store, start: dt.date, end: dt.date) -> list[DayCheck]:
    """One line per day of [start, end] with evaluations or records, newest first."""
    conn = store.conn
    lo, hi = start.isoformat(), end.isoformat()
    evaluations = " + ".join(f"sum(lv_{lv})" for lv in LEVEL_IDS)
    hall = dict(
        conn.execute(
            f"SELECT period, {evaluations} FROM tallies WHERE grain = 'd' AND period BETWEEN ? AND ? GROUP BY period",
            (lo, hi),
        )
    )
    acked = dict(conn.execute("SELECT day, acked FROM upstream_days WHERE day BETWEEN ? AND ?", (lo, hi)))
    parked = dict(
        conn.execute(
            "SELECT e.day, count(*) FROM outbox o JOIN events e ON e.id = o.event_id "
            "WHERE o.status = 'parked' AND o.kind = 'evaluation' AND e.day BETWEEN ? AND ? GROUP BY e.day",
            (lo, hi),
        )
    )
    return [
        DayCheck(day, int(hall.get(day) or 0), acked.get(day, 0), parked.get(day, 0))
        for day in sorted(set(hall) | set(acked) | set(parked), reverse=True)
    ]


def unpark(store: Store, actor: str, ids: list[int] | None) -> int:
    """Queue parked records again (every one when ``ids`` is None), audited under ``actor``."""
    with store.transaction() as conn:
        n = outbox.unpark(conn, ids)
        store.audit(actor, "upstream.unpark", "outbox", ids=ids or [], all=ids is None, count=n)
    return n
