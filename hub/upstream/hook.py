"""The one call ingest makes per stored event: queue upstream records and open tickets.

Runs on the hub's writer thread inside the ingest transaction, so a rating, its upstream record
and its ticket commit together or not at all.
"""

from __future__ import annotations

import json
import sqlite3

from protocol.frames import Event, Kind
from protocol.levels import Level

from .. import tickets
from ..store.registry import Device
from . import outbox


def on_event(
    conn: sqlite3.Connection, hall: str, event_id: int, dev: Device, ev: Event, status: str, t_ms: int, day: str
) -> None:
    if ev.kind == Kind.RATING.value and status != "refused" and ev.level is not None:
        _rating(conn, hall, event_id, dev, ev, status, t_ms, day)
    elif ev.kind == Kind.REASON.value and ev.ref is not None and ev.reasons is not None:
        rid = outbox.record_id(hall, dev.id, ev.epoch, ev.ref)
        outbox.on_reason(conn, rid, list(ev.reasons))
        tickets.set_reasons(conn, rid, list(ev.reasons))


def _rating(
    conn: sqlite3.Connection, hall: str, event_id: int, dev: Device, ev: Event, status: str, t_ms: int, day: str
) -> None:
    rid = outbox.record_id(hall, dev.id, ev.epoch, ev.seq)
    reasons = _stored_reasons(conn, dev.id, ev.epoch, ev.seq) if Level(ev.level).is_bad else None
    body = {
        "record_id": rid,
        "hall": hall,
        "device": dev.id,
        "epoch": ev.epoch,
        "seq": ev.seq,
        "window": dev.window,
        "item": ev.item,
        "case": ev.case,
        "staff": ev.staff,
        "level": ev.level,
        "reasons": reasons or [],
        "trigger": ev.trigger,
        "t_ms": t_ms,
        "flagged": status == "flagged",
    }
    outbox.enqueue(conn, rid, "evaluation", dev.window, body, event_id)
    if status == "accepted" and Level(ev.level).is_bad:
        tickets.open_ticket(conn, rid, event_id, dev.id, dev.window, ev, day, t_ms, reasons)


def _stored_reasons(conn: sqlite3.Connection, device: str, epoch: str, seq: int) -> list[str] | None:
    """Reasons stored before their rating (a gap filled late)."""
    rows = conn.execute(
        "SELECT seq, reasons FROM events WHERE device = ? AND epoch = ? AND ref = ? AND kind = 'reason'",
        (device, epoch, seq),
    ).fetchall()  # no ORDER BY: it would make SQLite walk the (device, epoch, seq) index instead
    if not rows:
        return None
    latest = max(rows)[1]
    return None if latest is None else list(json.loads(latest))
