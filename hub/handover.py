"""What ingest does upstream for the events it stores: queue rating records, open tickets.

A rating's upstream record and its ticket are *handed over* once its terminal's sequence is stored
without a gap up to it, i.e. in the transaction that moves the ack point (``epochs.upto``) past
it. Ratings are handed over in seq order, so a rating resent late to fill a gap still goes before
the ratings stored beyond the gap: the regional system receives each window's ratings in the
order they were given. A gap that stays open longer than ``[upstream] gap_hold_s`` (a terminal
that died with unsent events) hands over what waits behind it anyway (:func:`hand_over_held`):
order is worth a delay, not a missing record or an unregistered bad review.

Everything runs on the hub's writer thread inside a transaction, so a rating, its record and its
ticket commit together or not at all.
"""

from __future__ import annotations

import logging
import sqlite3

from protocol.levels import BAD_LEVEL_IDS

from . import tickets
from .statuses import EventStatus
from .tickets import Rated
from .upstream import outbox

_LOG = logging.getLogger(__name__)

__all__ = ["Rated", "hand_over", "hand_over_held", "on_reason", "rating_changed"]


_RATED_COLUMNS = (
    "e.id, e.device, e.epoch, e.seq, e.window, e.item, e.case_no, e.staff, e.level, e.status, e.t_ms, e.day"
)


def hand_over(
    conn: sqlite3.Connection, hall: str, device: str, epoch: str, after: int, upto: int, fresh: dict[int, Rated | None]
) -> None:
    """The ack point of (device, epoch) moved from ``after`` to ``upto``: hand over the ratings in
    between. ``fresh`` holds what this batch stored (seq → rating, None for other kinds); when it
    covers the range, no query is needed."""
    if upto <= after:
        return
    covered = [seq for seq in fresh if after < seq <= upto]
    if len(covered) == upto - after:
        ratings = [r for r in (fresh[seq] for seq in sorted(covered)) if r is not None]
    else:  # part of the range was stored by earlier batches, beyond a gap this batch filled
        ratings = _stored(
            conn, "e.device = ? AND e.epoch = ? AND e.seq > ? AND e.seq <= ? AND e.kind = 'rating' "
            "AND e.status != 'refused' ORDER BY e.seq", (device, epoch, after, upto),
        )  # fmt: skip
    _queue(conn, hall, ratings)


def hand_over_held(conn: sqlite3.Connection, hall: str, received_before_ms: int) -> int:
    """Release the ratings held behind a gap since before ``received_before_ms``; how many."""
    sql = f"SELECT {_RATED_COLUMNS} {outbox.HELD_SQL} AND e.received_ms < ? ORDER BY e.device, e.epoch, e.seq"
    ratings = [Rated(*row) for row in conn.execute(sql, (received_before_ms,)).fetchall()]
    for device in sorted({r.device for r in ratings}):
        mine = [r.seq for r in ratings if r.device == device]
        _LOG.warning(
            "handing over %d ratings of %s (seq %d-%d) held behind a gap that never filled: they go upstream "
            "out of order", len(mine), device, min(mine), max(mine),
        )  # fmt: skip
    _queue(conn, hall, ratings)
    return len(ratings)


def on_reason(conn: sqlite3.Connection, hall: str, device: str, epoch: str, ref: int, reasons: list[str]) -> None:
    """A reason for rating ``ref`` was stored: its record and its ticket carry it."""
    row = conn.execute(
        "SELECT id FROM events WHERE device = ? AND epoch = ? AND seq = ? AND kind = 'rating'", (device, epoch, ref)
    ).fetchone()
    if row is not None:
        rating_changed(conn, hall, int(row[0]))
    tickets.set_reasons(conn, outbox.record_id(hall, device, epoch, ref), reasons)


def rating_changed(conn: sqlite3.Connection, hall: str, event_id: int) -> None:
    """What stored rating ``event_id`` says upstream changed (a late reason, a misuse flag)."""
    row = conn.execute(
        "SELECT e.device, e.epoch, e.seq, e.window, e.status, p.upto FROM events e "
        "LEFT JOIN epochs p ON p.device = e.device AND p.epoch = e.epoch WHERE e.id = ?",
        (event_id,),
    ).fetchone()
    if row is None or row[4] == EventStatus.REFUSED:
        return
    device, epoch, seq, window, _status, upto = row
    rid = outbox.record_id(hall, device, epoch, seq)
    outbox.rating_changed(conn, rid, window, event_id, handed_over=upto is not None and seq <= upto)


def _stored(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> list[Rated]:
    return [Rated(*row) for row in conn.execute(f"SELECT {_RATED_COLUMNS} FROM events e WHERE {where}", args)]


def _queue(conn: sqlite3.Connection, hall: str, ratings: list[Rated]) -> None:
    """Queue the ratings' records in order, then open the tickets of the accepted bad ones."""
    rids = [outbox.record_id(hall, r.device, r.epoch, r.seq) for r in ratings]
    outbox.enqueue_ratings(conn, [(rid, r.window, r.event_id) for rid, r in zip(rids, ratings, strict=True)])
    for rid, r in zip(rids, ratings, strict=True):
        if r.status == EventStatus.ACCEPTED and r.level in BAD_LEVEL_IDS:
            reasons = outbox.latest_reasons(conn, r.device, r.epoch, r.seq)
            tickets.open_ticket(conn, rid, r, reasons)
