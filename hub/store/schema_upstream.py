"""Tables of the upstream outbox and the bad-review work queue (one migration).

The outbox is written in the ingest transaction, so a rating is stored if and only if its
upstream record is queued; the sender only ever flips ``status``. Tickets keep the opening day in
hall local time; deadlines are computed from it with the configured calendar when read, so a
holiday added later moves the deadlines of open tickets.
"""

from __future__ import annotations

import sqlite_utils


def migrate_upstream(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            record_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            lane TEXT NOT NULL,
            event_id INTEGER,
            body TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            rev INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL,
            sent_ms INTEGER,
            error TEXT)"""
    )
    db.execute("CREATE INDEX outbox_pending ON outbox(id) WHERE status = 'pending'")
    db.execute("CREATE INDEX outbox_parked ON outbox(id) WHERE status = 'parked'")
    db.execute("CREATE UNIQUE INDEX outbox_evaluation ON outbox(record_id) WHERE kind = 'evaluation'")
    db.execute("CREATE INDEX outbox_ticket ON outbox(record_id) WHERE kind = 'ticket'")
    db.execute("CREATE INDEX outbox_totals ON outbox(record_id) WHERE kind = 'totals'")
    db.execute("CREATE INDEX events_reason_ref ON events(device, epoch, ref) WHERE kind = 'reason'")
    db.execute(
        """CREATE TABLE tickets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ticket_no TEXT NOT NULL UNIQUE,
            event_id INTEGER NOT NULL,
            device TEXT NOT NULL,
            window TEXT NOT NULL,
            item TEXT,
            case_no TEXT,
            staff TEXT,
            level TEXT NOT NULL,
            reasons TEXT,
            state TEXT NOT NULL DEFAULT 'registered',
            verdict TEXT,
            assignee TEXT,
            dept TEXT,
            appeal TEXT,
            feedback TEXT,
            changes INTEGER NOT NULL DEFAULT 0,
            opened_ms INTEGER NOT NULL,
            opened_day TEXT NOT NULL,
            updated_ms INTEGER NOT NULL,
            closed_ms INTEGER)"""
    )
    db.execute("CREATE INDEX tickets_open ON tickets(opened_day) WHERE closed_ms IS NULL")
    db.execute("CREATE INDEX tickets_day ON tickets(opened_day)")


def migrate_lazy_ratings(db: sqlite_utils.Database) -> None:
    """Rating records lose their stored body (built from the event when sent) and are found by
    their event: one short row per rating keeps ingest fast. SQLite cannot drop a NOT NULL, so
    the table is rebuilt; ids, and with them the queue order, are kept."""
    db.execute("ALTER TABLE outbox RENAME TO outbox_old")
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            record_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            lane TEXT NOT NULL,
            event_id INTEGER,
            body TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            rev INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL,
            sent_ms INTEGER,
            error TEXT)"""
    )
    db.execute("INSERT INTO outbox SELECT * FROM outbox_old")
    db.execute("DROP TABLE outbox_old")
    db.execute("CREATE INDEX outbox_pending ON outbox(id) WHERE status = 'pending'")
    db.execute("CREATE INDEX outbox_parked ON outbox(id) WHERE status = 'parked'")
    db.execute("CREATE UNIQUE INDEX outbox_rating ON outbox(event_id) WHERE kind = 'evaluation'")
    db.execute("CREATE INDEX outbox_ticket ON outbox(record_id) WHERE kind = 'ticket'")
    db.execute("CREATE INDEX outbox_totals ON outbox(record_id) WHERE kind = 'totals'")


def migrate_upstream_days(db: sqlite_utils.Database) -> None:
    """Rating records the regional system acknowledged, per hall-local day of the rating, for the
    daily reconciliation (console upstream page): counted when a record is first marked sent, so
    pruning sent rows loses nothing. Filled from the sent rows still kept; older days stay
    unknown (no row)."""
    db.execute("CREATE TABLE upstream_days (day TEXT PRIMARY KEY, acked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
    db.execute(
        "INSERT INTO upstream_days (day, acked) SELECT e.day, count(*) "
        "FROM outbox o JOIN events e ON e.id = o.event_id "
        "WHERE o.kind = 'evaluation' AND o.status = 'sent' GROUP BY e.day"
    )
