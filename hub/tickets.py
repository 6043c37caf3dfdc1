"""The bad-review work queue (登记 → 转办 → 核实 → 反馈), SPEC section 1.

Every accepted bad review opens a ticket in the transaction that hands its rating over upstream
(:mod:`hub.handover`: normally the one that stores it). A ticket then moves
registered → assigned (to a department or person) → verified (valid; or invalid, only after an
appeal) → feedback (the rectification text). Any other move is refused with a message naming the
ticket's state and the allowed order. Each change is audited and queued upstream in the same
transaction. Deadlines count working days from the opening day (weekends and configured holidays
excluded, configured make-up working days included) and are computed when read. Opening, a valid
verdict and feedback also add the ticket to the counters (:func:`hub.store.tallies.count_tickets`)
in the same transaction, which is where ``stats`` reads the rectification rate from.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import TicketSettings
from .errors import NotFound, TicketStateError
from .stats import rectification_rate
from .statuses import TicketState
from .store import Store, now_ms
from .store.tallies import TICKET_COUNTS, count_tickets
from .upstream import outbox

STATES = tuple(TicketState)
ORDER = "registered → assigned → verified → feedback (an invalid verdict needs an appeal first)"
_COLUMNS = (
    "id, ticket_no, window, item, case_no, staff, level, reasons, state, verdict, assignee, dept, appeal, "
    "feedback, opened_ms, opened_day, updated_ms, closed_ms, "
    "coalesce(dept, (SELECT w.dept FROM windows w WHERE w.id = tickets.window)) AS department"
)


@dataclass(frozen=True, slots=True)
class Rated:
    """A stored rating (not refused), as handing it over (:mod:`hub.handover`) and registering its bad
    review need it."""

    event_id: int
    device: str
    epoch: str
    seq: int
    window: str
    item: str | None
    case: str | None
    staff: str | None
    level: str
    status: str
    t_ms: int
    day: str


@dataclass(frozen=True)
class Calendar:
    """Working days: Monday to Friday, minus holidays, plus make-up working days (调休)."""

    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()

    @classmethod
    def from_settings(cls, settings: TicketSettings) -> Calendar:
        return cls(
            frozenset(dt.date.fromisoformat(d) for d in settings.holidays),
            frozenset(dt.date.fromisoformat(d) for d in settings.workdays),
        )

    def is_workday(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_workdays(self, start: dt.date, n: int) -> dt.date:
        """The n-th working day after ``start``."""
        day = start
        while n > 0:
            day += dt.timedelta(days=1)
            n -= self.is_workday(day)
        return day


def open_ticket(conn: sqlite3.Connection, ticket_no: str, rating: Rated, reasons: list[str] | None) -> None:
    """Writer thread, in the transaction that hands the rating over (see :mod:`hub.handover`):
    register a bad review."""
    cur = conn.execute(
        "INSERT INTO tickets (ticket_no, event_id, device, window, item, case_no, staff, level, reasons, "
        "opened_ms, opened_day, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (ticket_no, rating.event_id, rating.device, rating.window, rating.item, rating.case, rating.staff,
         rating.level, None if reasons is None else json.dumps(reasons), rating.t_ms, rating.day, now_ms()),
    )  # fmt: skip
    if cur.rowcount:
        count_tickets(conn, ["tickets"], "t.ticket_no = ?", (ticket_no,))
        _audit(conn, "hub", "ticket.register", ticket_no, {"level": rating.level, "window": rating.window})
        _queue(conn, ticket_no)


def set_reasons(conn: sqlite3.Connection, ticket_no: str, reasons: list[str]) -> None:
    """Ingest thread: a reason arrived after its rating; the ticket's unsent records carry it too."""
    if conn.execute("UPDATE tickets SET reasons = ? WHERE ticket_no = ?", (json.dumps(reasons), ticket_no)).rowcount:
        outbox.set_ticket_reasons(conn, ticket_no, reasons)


def _audit(conn: sqlite3.Connection, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO audit (ts_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        (now_ms(), actor, action, subject, json.dumps(detail, ensure_ascii=False)),
    )


def _queue(conn: sqlite3.Connection, ticket_no: str) -> None:
    """Queue the ticket's current state upstream, one record per change."""
    cur = conn.execute(f"SELECT {_COLUMNS}, changes FROM tickets WHERE ticket_no = ?", (ticket_no,))
    row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    body = {k: row[k] for k in ("ticket_no", "window", "item", "case_no", "staff", "level", "state", "verdict",
                                "assignee", "dept", "appeal", "feedback", "opened_day", "updated_ms")}  # fmt: skip
    body["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
    outbox.enqueue(conn, f"{ticket_no}#{row['changes']}", "ticket", row["window"], body)


# -- changes -------------------------------------------------------------------------------------


def _load(conn: sqlite3.Connection, ref: str) -> dict[str, Any]:
    """A ticket by number or by its short integer id."""
    # ASCII: "²" is a digit int() refuses; 18 digits at most: SQLite's integers stop at 2**63.
    short = ref.isascii() and ref.isdigit() and len(ref) <= 18
    where = "id = ?" if short else "ticket_no = ?"
    cur = conn.execute(f"SELECT {_COLUMNS} FROM tickets WHERE {where}", (int(ref) if short else ref,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"unknown ticket {ref}")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _refuse(ticket: dict[str, Any], action: str, why: str = "") -> TicketStateError:
    state = ticket["state"] + (f" ({ticket['verdict']})" if ticket["verdict"] else "")
    extra = f": {why}" if why else ""
    return TicketStateError(f"ticket {ticket['id']} is {state}; cannot {action}{extra}. Order: {ORDER}")


def _change(
    store: Store, ref: str, action: str, actor: str, check: Any, sets: dict[str, Any], counts: Sequence[str] = ()
) -> dict[str, Any]:
    """Apply ``sets`` to a ticket that passes ``check``; ``counts``: the counters it now joins."""
    with store.transaction() as conn:
        ticket = _load(conn, ref)
        check(ticket)
        sets = {**sets, "updated_ms": now_ms()}
        assignments = ", ".join(f"{k} = ?" for k in sets)
        conn.execute(
            f"UPDATE tickets SET {assignments}, changes = changes + 1 WHERE id = ?", (*sets.values(), ticket["id"])
        )
        if counts:
            count_tickets(conn, counts, "t.id = ?", (ticket["id"],))
        detail = {k: v for k, v in sets.items() if k != "updated_ms"}
        _audit(conn, actor, f"ticket.{action}", ticket["ticket_no"], {"from": ticket["state"], **detail})
        _queue(conn, ticket["ticket_no"])
        return _load(conn, str(ticket["id"]))


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def assign(store: Store, ref: str, to: str, dept: str | None, actor: str = "cli") -> dict[str, Any]:
    """转办: registered (or assigned, to hand it on) → assigned. Without ``dept`` the ticket stays
    in its department (its window's, until it is assigned to another)."""

    def check(t: dict[str, Any]) -> None:
        if t["state"] not in ("registered", "assigned"):
            raise _refuse(t, "assign it")

    sets = {"state": "assigned", "assignee": _text(to, "--to")}
    if dept:
        sets["dept"] = dept
    return _change(store, ref, "assign", actor, check, sets)


def appeal(store: Store, ref: str, text: str, actor: str = "cli") -> dict[str, Any]:
    """申诉: the assignee claims the review is invalid (assigned → appealed)."""

    def check(t: dict[str, Any]) -> None:
        if t["state"] != "assigned":
            raise _refuse(t, "appeal", "only an assigned ticket can be appealed")

    return _change(store, ref, "appeal", actor, check, {"state": "appealed", "appeal": _text(text, "the appeal")})


def verify(store: Store, ref: str, valid: bool, actor: str = "cli") -> dict[str, Any]:
    """核实: assigned or appealed → verified valid; appealed → verified invalid (closed)."""

    def check(t: dict[str, Any]) -> None:
        if t["state"] not in ("assigned", "appealed"):
            raise _refuse(t, "verify it", "it must be assigned first" if t["state"] == "registered" else "")
        if not valid and t["state"] != "appealed":
            raise _refuse(t, "verify it as invalid", "a review is found invalid only after an appeal")

    sets: dict[str, Any] = {"state": "verified", "verdict": "valid" if valid else "invalid"}
    if not valid:
        sets["closed_ms"] = now_ms()
    return _change(store, ref, "verify", actor, check, sets, ["valid_tickets"] if valid else [])


def feedback(store: Store, ref: str, text: str, actor: str = "cli") -> dict[str, Any]:
    """反馈: verified valid → feedback (the rectification text); closes the ticket."""

    def check(t: dict[str, Any]) -> None:
        if t["state"] != "verified" or t["verdict"] != "valid":
            raise _refuse(t, "give feedback", "feedback follows a valid verdict")

    sets = {"state": "feedback", "feedback": _text(text, "the feedback"), "closed_ms": now_ms()}
    return _change(store, ref, "feedback", actor, check, sets, ["rectified"])


# -- reading -------------------------------------------------------------------------------------


def _view(row: dict[str, Any], cal: Calendar, days: int, today: dt.date) -> dict[str, Any]:
    deadline = cal.add_workdays(dt.date.fromisoformat(row["opened_day"]), days)
    row = {**row, "reasons": json.loads(row["reasons"]) if row["reasons"] else []}
    row["deadline"] = deadline.isoformat()
    row["overdue"] = row["closed_ms"] is None and today > deadline
    return row


def list_tickets(
    store: Store,
    settings: TicketSettings,
    today: dt.date,
    state: str | None = None,
    overdue: bool = False,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[dict[str, Any]]:
    if state is not None and state not in STATES:
        raise ValueError(f"unknown ticket state {state!r}; choose from {', '.join(STATES)}")
    cond, params = ["1"], []
    if state:
        cond.append("state = ?")
        params.append(state)
    if overdue:
        cond.append("closed_ms IS NULL")
    if start:
        cond.append("opened_day >= ?")
        params.append(start.isoformat())
    if end:
        cond.append("opened_day <= ?")
        params.append(end.isoformat())
    cur = store.conn.execute(f"SELECT {_COLUMNS} FROM tickets WHERE {' AND '.join(cond)} ORDER BY id", params)
    names = [d[0] for d in cur.description]
    cal = Calendar.from_settings(settings)
    rows = [_view(dict(zip(names, r, strict=True)), cal, settings.deadline_days, today) for r in cur]
    return [r for r in rows if r["overdue"]] if overdue else rows


def get_ticket(store: Store, ref: str, settings: TicketSettings, today: dt.date) -> dict[str, Any]:
    return _view(_load(store.conn, ref), Calendar.from_settings(settings), settings.deadline_days, today)


def rectification(store: Store, start: dt.date | None = None, end: dt.date | None = None) -> dict[str, Any]:
    """整改率: tickets with feedback ÷ valid tickets, over tickets opened in [start, end], read from
    the tickets themselves (``stats`` reads the same counts from the counters)."""
    lo = (start or dt.date.min).isoformat()
    hi = (end or dt.date.max).isoformat()
    counts = ", ".join(TICKET_COUNTS[c] for c in ("tickets", "valid_tickets", "rectified"))
    row = store.conn.execute(
        f"SELECT {counts}, SUM(t.verdict = 'invalid'), SUM(t.closed_ms IS NULL) FROM tickets t "
        "WHERE t.opened_day BETWEEN ? AND ?",
        (lo, hi),
    ).fetchone()
    total, valid, done, invalid, open_ = (int(x or 0) for x in row)
    return {
        "tickets": total,
        "open": open_,
        "valid": valid,
        "invalid": invalid,
        "feedback": done,
        "rectification_rate": rectification_rate(done, valid),
    }
