"""The upstream outbox: one row per record to send, written in the transaction that caused it.

A rating's record is queued in the ingest transaction, so it exists if and only if the rating is
stored. Its ``record_id`` (hall, device, epoch, seq) is stable: the sender may post a record
again after a crash or a lost response, and the regional system recognises it. A reason that
arrives after its rating is merged into the pending record, or, once the record has been sent,
queued as an ``update`` carrying the same id; each body change bumps ``rev``, so a change made
while the sender has the row in flight becomes a follow-up record (:func:`settle_sent`). The
sender moves rows ``pending`` → ``sent`` or ``parked``; rows are never deleted, and the counts
stay cheap to read through partial indexes and a ``meta`` counter.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..store import now_ms

KINDS = ("evaluation", "update", "ticket", "totals")
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
    rev: int = 0  #: bumped whenever the body changes, so a change made while in flight is not lost


def enqueue(
    conn: sqlite3.Connection, rid: str, kind: str, lane: str, body: dict[str, Any], event_id: int | None = None
) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    conn.execute(
        "INSERT INTO outbox (record_id, kind, lane, event_id, body, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (rid, kind, lane, event_id, json.dumps(body, ensure_ascii=False, sort_keys=True), now_ms()),
    )


def on_reason(conn: sqlite3.Connection, rid: str, reasons: list[str]) -> None:
    """Attach reasons to the rating's record: in place while pending or parked, else an update."""
    row = conn.execute(
        "SELECT id, status, lane, body FROM outbox WHERE record_id = ? AND kind = 'evaluation'", (rid,)
    ).fetchone()
    if row is None:
        return  # the rating is not stored yet (gap): it picks its reasons up when it arrives
    oid, status, lane, text = row
    body = {**json.loads(text), "reasons": reasons}
    if status == "sent":
        enqueue(conn, rid, "update", lane, body)
    else:
        conn.execute(
            "UPDATE outbox SET body = ?, rev = rev + 1 WHERE id = ?",
            (json.dumps(body, ensure_ascii=False, sort_keys=True), oid),
        )


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


def pending(conn: sqlite3.Connection, limit: int) -> list[OutboxRow]:
    """The oldest pending rows, in queue order."""
    cur = conn.execute(
        "SELECT id, record_id, kind, lane, body, attempts, rev FROM outbox "
        "WHERE status = 'pending' ORDER BY id LIMIT ?",
        (limit,),
    )
    return [OutboxRow(i, r, k, la, json.loads(b), a, v) for i, r, k, la, b, a, v in cur]


def mark_sent(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Mark rows sent whatever changed meanwhile (used where nothing can be in flight)."""
    if not ids:
        return
    cur = conn.executemany(
        "UPDATE outbox SET status = 'sent', sent_ms = ?, attempts = attempts + 1, error = NULL "
        "WHERE id = ? AND status = 'pending'",
        [(now_ms(), i) for i in ids],
    )
    _bump_sent(conn, cur.rowcount)


def settle_sent(conn: sqlite3.Connection, rows: list[OutboxRow]) -> None:
    """Mark rows sent as they were posted. A body changed while in flight (a late reason, newer
    totals) is not lost: evaluations and tickets get a follow-up record with the same id, totals
    stay pending and go again."""
    done: list[int] = []
    for row in rows:
        current = conn.execute("SELECT rev, body, status FROM outbox WHERE id = ?", (row.id,)).fetchone()
        if current is None or current[2] != "pending":
            continue
        if current[0] == row.rev:
            done.append(row.id)
        elif row.kind != "totals":
            done.append(row.id)
            follow = "update" if row.kind in ("evaluation", "update") else row.kind
            enqueue(conn, row.record_id, follow, row.lane, json.loads(current[1]))
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
    """``{"pending", "sent", "parked"}`` record counts (SPEC section 7), cheap enough for /metrics."""
    pending_n = conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
    parked_n = conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'parked'").fetchone()[0]
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_SENT_KEY,)).fetchone()
    return {"pending": int(pending_n), "sent": int(row[0]) if row else 0, "parked": int(parked_n)}


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
