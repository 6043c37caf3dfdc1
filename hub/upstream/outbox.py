"""The upstream outbox: one row per record to send, written in the transaction that caused it.

A rating's record is queued in the ingest transaction that completes its terminal's sequence up
to it (:mod:`.hook`). Its ``record_id`` (hall, device, epoch, seq) is stable: the sender may post
a record again after a crash or a lost response, and the regional system recognises it.

Rating records carry no body: the sender builds it from the stored event when it reads the row
(:func:`pending`), so ingest writes one short row per rating and a late reason or misuse flag
needs no rewrite. Any change to what a record says bumps ``rev``, so a change made while the
sender has the row in flight becomes a follow-up record (:func:`settle_sent`); once sent, a
change is queued as an ``update`` with the same id. Ticket and totals rows keep the body they
were queued with. The sender moves rows ``pending`` → ``sent`` or ``parked``; sent rows are
pruned after ``keep_sent_days``, and the counts stay cheap through partial indexes and a
``meta`` counter.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from protocol.levels import BAD_LEVEL_IDS

from ..statuses import EventStatus
from ..store import now_ms

KINDS = ("evaluation", "update", "ticket", "totals")
RATING_KINDS = ("evaluation", "update")
_SENT_KEY = "outbox_sent"


def record_id(hall: str, device: str, epoch: str, seq: int) -> str:
    """The stable id of the upstream record of rating (device, epoch, seq)."""
    return f"{hall}-{device}-{epoch}-{seq}"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    record_id: str
    kind: str
    lane: str
    body: dict[str, Any]
    attempts: int
    rev: int = 0  #: bumped whenever the record changes, so a change made while in flight is not lost
    event_id: int | None = None  #: the rating event a rating record is built from


def enqueue(
    conn: sqlite3.Connection, rid: str, kind: str, lane: str, body: dict[str, Any] | None, event_id: int | None = None
) -> None:
    """Queue one record; ``body`` None means "build it from rating ``event_id`` when sending"."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    text = None if body is None else json.dumps(body, ensure_ascii=False, sort_keys=True)
    conn.execute(
        "INSERT INTO outbox (record_id, kind, lane, event_id, body, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (rid, kind, lane, event_id, text, now_ms()),
    )


def enqueue_ratings(conn: sqlite3.Connection, rows: list[tuple[str, str, int]]) -> None:
    """Queue the records of ratings ``(record_id, window, event_id)``, in that order; a rating
    queued before (handed over early, see :func:`hub.handover.hand_over_held`) is skipped."""
    at = now_ms()
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (record_id, kind, lane, event_id, created_ms) VALUES (?, 'evaluation', ?, ?, ?)",
        [(rid, lane, event_id, at) for rid, lane, event_id in rows],
    )


def rating_changed(conn: sqlite3.Connection, rid: str, lane: str, event_id: int, handed_over: bool) -> None:
    """A handed-over rating's record says something new (a late reason, a misuse flag): while pending
    or parked its body is rebuilt when sent (``rev`` marks the change), once sent an update goes."""
    sql = "SELECT id, status FROM outbox WHERE event_id = ? AND kind = 'evaluation'"
    row = conn.execute(sql, (event_id,)).fetchone()
    if row is None:
        if handed_over:  # sent long ago and pruned
            enqueue(conn, rid, "update", lane, None, event_id)
        return  # not handed over yet: its body is built with the change when it is
    if row[1] == "sent":
        enqueue(conn, rid, "update", lane, None, event_id)
    else:
        conn.execute("UPDATE outbox SET rev = rev + 1 WHERE id = ?", (row[0],))


def latest_reasons(conn: sqlite3.Connection, device: str, epoch: str, seq: int) -> list[str] | None:
    """The reasons given for rating (device, epoch, seq): the last reason event about it wins."""
    rows = conn.execute(
        "SELECT seq, reasons FROM events WHERE device = ? AND epoch = ? AND ref = ? AND kind = 'reason'",
        (device, epoch, seq),
    ).fetchall()  # no ORDER BY: it would make SQLite walk the (device, epoch, seq) index instead
    if not rows:
        return None
    latest = max(rows)[1]
    return None if latest is None else list(json.loads(latest))


def set_ticket_reasons(conn: sqlite3.Connection, ticket_no: str, reasons: list[str]) -> None:
    """Put late reasons into the ticket's records not sent yet (ids ``ticket_no#change``)."""
    cur = conn.execute(
        "SELECT id, body FROM outbox WHERE kind = 'ticket' AND record_id >= ? AND record_id < ? AND status != 'sent'",
        (f"{ticket_no}#", f"{ticket_no}$"),
    )
    for oid, text in cur.fetchall():
        body = json.dumps({**json.loads(text), "reasons": reasons}, ensure_ascii=False, sort_keys=True)
        conn.execute("UPDATE outbox SET body = ?, rev = rev + 1 WHERE id = ?", (body, oid))


def put_totals(conn: sqlite3.Connection, rid: str, body: dict[str, Any]) -> None:
    """Queue period totals; a pending record of the same period and key is replaced, not piled up."""
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    cur = conn.execute(
        "UPDATE outbox SET body = ?, rev = rev + 1 WHERE record_id = ? AND kind = 'totals' AND status = 'pending'",
        (text, rid),
    )
    if cur.rowcount == 0:
        enqueue(conn, rid, "totals", "totals", body)


_RATING_FIELDS = "e.device, e.epoch, e.seq, e.window, e.item, e.case_no, e.staff, e.level, e.trigger, e.t_ms, e.status"


def pending(conn: sqlite3.Connection, limit: int, hall: str) -> list[OutboxRow]:
    """The oldest pending rows, in queue order, rating bodies built from their events."""
    return read(conn, hall, "o.status = 'pending'", limit=limit)


def read(
    conn: sqlite3.Connection, hall: str, where: str, args: tuple[Any, ...] = (), limit: int = -1
) -> list[OutboxRow]:
    """Rows matching ``where`` (on ``o``, the outbox) in queue order, with their bodies."""
    cur = conn.execute(
        f"SELECT o.id, o.record_id, o.kind, o.lane, o.body, o.attempts, o.rev, o.event_id, {_RATING_FIELDS} "
        "FROM outbox o LEFT JOIN events e ON o.body IS NULL AND e.id = o.event_id "
        f"WHERE {where} ORDER BY o.id LIMIT ?",
        (*args, limit),
    )
    rows = []
    for oid, rid, kind, lane, text, attempts, rev, event_id, *rating in cur.fetchall():
        body = json.loads(text) if text is not None else _rating_body(conn, hall, rid, rating)
        rows.append(OutboxRow(oid, rid, kind, lane, body, attempts, rev, event_id))
    return rows


def _rating_body(conn: sqlite3.Connection, hall: str, rid: str, rating: list[Any]) -> dict[str, Any]:
    device, epoch, seq, window, item, case, staff, level, trigger, t_ms, status = rating
    if device is None:
        return {"record_id": rid}  # names no stored rating (edited by hand): the adapter refuses, the sender parks it
    return {
        "record_id": rid,
        "hall": hall,
        "device": device,
        "epoch": epoch,
        "seq": seq,
        "window": window,
        "item": item,
        "case": case,
        "staff": staff,
        "level": level,
        "reasons": (latest_reasons(conn, device, epoch, seq) or []) if level in BAD_LEVEL_IDS else [],
        "trigger": trigger,
        "t_ms": t_ms,
        "flagged": status == EventStatus.FLAGGED,
    }


def mark_sent(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Mark rows sent whatever changed meanwhile (used where nothing can be in flight)."""
    if not ids:
        return
    _count_acked(conn, ids)
    cur = conn.executemany(
        "UPDATE outbox SET status = 'sent', sent_ms = ?, attempts = attempts + 1, error = NULL "
        "WHERE id = ? AND status = 'pending'",
        [(now_ms(), i) for i in ids],
    )
    _bump_sent(conn, cur.rowcount)


def _count_acked(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Add the rating records among ``ids`` still pending to their day's acknowledged count
    (``upstream_days``), before they are marked sent: each record counts once."""
    marks = ", ".join("?" * len(ids))
    conn.execute(
        "INSERT INTO upstream_days (day, acked) SELECT e.day, count(*) "
        "FROM outbox o JOIN events e ON e.id = o.event_id "
        f"WHERE o.id IN ({marks}) AND o.kind = 'evaluation' AND o.status = 'pending' GROUP BY e.day "
        "ON CONFLICT(day) DO UPDATE SET acked = acked + excluded.acked",
        ids,
    )


def settle_sent(conn: sqlite3.Connection, rows: list[OutboxRow]) -> None:
    """Mark rows sent as they were posted. A record changed while in flight (a late reason, newer
    totals) is not lost: ratings and tickets get a follow-up record with the same id, totals stay
    pending and go again."""
    done: list[int] = []
    for row in rows:
        current = conn.execute("SELECT rev, body, status FROM outbox WHERE id = ?", (row.id,)).fetchone()
        if current is None or current[2] != "pending":
            continue
        if current[0] == row.rev:
            done.append(row.id)
        elif row.kind != "totals":
            done.append(row.id)
            follow = "update" if row.kind in RATING_KINDS else row.kind
            body = None if current[1] is None else json.loads(current[1])
            enqueue(conn, row.record_id, follow, row.lane, body, row.event_id)
    mark_sent(conn, done)


def park(conn: sqlite3.Connection, oid: int, reason: str) -> None:
    conn.execute(
        "UPDATE outbox SET status = 'parked', attempts = attempts + 1, error = ? WHERE id = ? AND status = 'pending'",
        (reason[:500], oid),
    )


def note_failure(conn: sqlite3.Connection, ids: list[int], error: str) -> None:
    conn.executemany(
        "UPDATE outbox SET attempts = attempts + 1, error = ? WHERE id = ?", [(error[:500], i) for i in ids]
    )


def unpark(conn: sqlite3.Connection, ids: list[int] | None) -> int:
    """Queue parked rows again (all of them when ``ids`` is None); returns how many."""
    if ids is None:
        return conn.execute("UPDATE outbox SET status = 'pending' WHERE status = 'parked'").rowcount
    return sum(
        conn.execute("UPDATE outbox SET status = 'pending' WHERE id = ? AND status = 'parked'", (i,)).rowcount
        for i in ids
    )


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """``{"pending", "sent", "parked"}`` record counts (SPEC section 7), cheap enough for /metrics.
    ``pending`` includes the ratings held behind a gap (:func:`held`): they are not sent yet."""
    pending_n = conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
    parked_n = conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'parked'").fetchone()[0]
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_SENT_KEY,)).fetchone()
    sent_n = int(row[0]) if row else 0
    return {"pending": int(pending_n) + held(conn), "sent": sent_n, "parked": int(parked_n)}


#: Ratings stored beyond the acked prefix of their (device, epoch), whose records wait for the gap.
HELD_SQL = """FROM epochs p JOIN events e ON e.device = p.device AND e.epoch = p.epoch AND e.seq > p.upto
    WHERE e.kind = 'rating' AND e.status != 'refused'
    AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id AND o.kind = 'evaluation')"""


def held(conn: sqlite3.Connection) -> int:
    """How many ratings wait behind a gap in their terminal's sequence (see :mod:`.hook`)."""
    return int(conn.execute(f"SELECT COUNT(*) {HELD_SQL}").fetchone()[0])


def prune_sent(conn: sqlite3.Connection, sent_before_ms: int, limit: int = 5000) -> int:
    """Delete up to ``limit`` rows sent before ``sent_before_ms``, oldest first; returns how many.
    The sent counter is kept apart, so ``counts`` does not change."""
    return conn.execute(
        "DELETE FROM outbox WHERE id IN "
        "(SELECT id FROM outbox WHERE status = 'sent' AND sent_ms < ? ORDER BY id LIMIT ?)",
        (sent_before_ms, limit),
    ).rowcount


def parked(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT id, record_id, kind, lane, attempts, error, created_ms FROM outbox WHERE status = 'parked' ORDER BY id"
    )
    keys = ("id", "record_id", "kind", "window", "attempts", "reason", "created_ms")
    return [dict(zip(keys, row, strict=True)) for row in cur]


def _bump_sent(conn: sqlite3.Connection, n: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT)",
        (_SENT_KEY, str(n), n),
    )
