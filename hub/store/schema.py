"""The hub database schema, as numbered migrations applied in order (``PRAGMA user_version``).

Evaluations are kept forever with their raw fields. Counters ("tallies") per
(day, device, window, item, staff) with month and year roll-ups are updated in the same
transaction as each insert, so a stats query reads a bounded number of rows however many years
of evaluations the hall has.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from .layout import EVENT_COLUMNS, RULE_COLUMNS, TALLY_COLUMNS, TALLY_KEYS, TICKET_COLUMNS, count_tickets
from .schema_upstream import migrate_lazy_ratings, migrate_upstream, migrate_upstream_days

__all__ = ["TALLY_COLUMNS", "TALLY_KEYS", "migrate"]


def _m1_core(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("windows").create({"id": str, "name": str, "dept": str, "created_ms": int}, pk="id", not_null={"name"})
    db.table("items").create({"code": str, "name": str, "created_ms": int}, pk="code", not_null={"name"})
    db.table("staff").create({"id": str, "name": str, "window": str}, pk="id")
    db.table("devices").create(
        {
            "id": str,
            "window": str,
            "kind": str,
            "mode": str,
            "mac_key": str,
            "password_hash": str,
            "revoked": int,
            "created_ms": int,
            "rotated_ms": int,
            "state": str,
            "state_ms": int,
        },
        pk="id",
        not_null={"window", "kind", "mode", "mac_key", "password_hash"},
        defaults={"revoked": 0},
        foreign_keys=[("window", "windows", "id")],
    )
    db.table("events").create(
        {
            "id": int,
            "device": str,
            "epoch": str,
            "seq": int,
            "kind": str,
            "status": str,
            "status_reason": str,
            "level": str,
            "reasons": str,
            "ref": int,
            "case_no": str,
            "item": str,
            "staff": str,
            "window": str,
            "trigger": str,
            "boot": str,
            "mono_ms": int,
            "wall_ms": int,
            "synced": int,
            "age_ms": int,
            "t_ms": int,
            "t_source": str,
            "day": str,
            "received_ms": int,
            "mac": str,
        },
        pk="id",
        not_null={"device", "epoch", "seq", "kind", "status", "t_ms", "day", "received_ms"},
    )
    db.table("events").create_index(["device", "epoch", "seq"], unique=True)
    db.execute("CREATE INDEX events_case ON events(case_no) WHERE case_no IS NOT NULL")
    db.table("epochs").create(
        {"device": str, "epoch": str, "upto": int, "first_ms": int, "last_ms": int}, pk=("device", "epoch")
    )
    db.table("frame_counts").create({"outcome": str, "device": str, "n": int, "last_ms": int}, pk=("outcome", "device"))
    db.table("audit").create(
        {"id": int, "ts_ms": int, "actor": str, "action": str, "subject": str, "detail": str}, pk="id"
    )
    cols = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in EVENT_COLUMNS)
    keys = ", ".join(f"{k} TEXT NOT NULL" for k in TALLY_KEYS)
    db.execute(f"CREATE TABLE tallies ({keys}, {cols}, PRIMARY KEY ({', '.join(TALLY_KEYS)})) WITHOUT ROWID")


def _m2_cases(db: sqlite_utils.Database) -> None:
    """Cases (办件) opened by the business system, the CLI or a staff key, and the commands
    (invitations, cancels) waiting to be published to terminals."""
    db.table("cases").create(
        {
            "case_no": str,
            "window": str,
            "device": str,
            "item": str,
            "staff": str,
            "source": str,
            "status": str,
            "opened_ms": int,
            "expires_ms": int,
            "closed_ms": int,
            "rated_event": int,
        },
        pk="case_no",
        not_null={"window", "source", "status", "opened_ms"},
    )
    db.table("commands").create(
        {"id": int, "device": str, "payload": str, "created_ms": int, "expires_ms": int, "published_ms": int},
        pk="id",
        not_null={"device", "payload", "created_ms"},
    )
    db.execute("CREATE INDEX commands_unpublished ON commands(id) WHERE published_ms IS NULL")


def _m5_ticket_counters(db: sqlite_utils.Database) -> None:
    """Work-queue counters beside the event counters, so ``stats`` gives the rectification rate
    without scanning tickets; filled from the tickets already there."""
    for column in TICKET_COLUMNS:
        db.execute(f"ALTER TABLE tallies ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    count_tickets(db.conn, TICKET_COLUMNS)


def _m6_invalid_events(db: sqlite_utils.Database) -> None:
    """Events that break a field rule (SPEC section 10) are stored with their raw JSON and counted
    apart; ``kind`` and ``status`` are both ``invalid`` for them, so no query by kind sees them."""
    db.execute("ALTER TABLE events ADD COLUMN raw TEXT")
    for column in RULE_COLUMNS:
        db.execute(f"ALTER TABLE tallies ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


def _m7_device_keys(db: sqlite_utils.Database) -> None:
    """Every MAC key and broker password a device has had, by key id (SPEC section 11): frames
    name their key, a rotation is ``pending`` until the terminal has its new secrets, old keys
    stay ``retired`` (verifiable, accepted for a grace period) and never go. ``devices`` keeps the
    ``active`` pair, which the broker's password file is made from."""
    db.execute(
        "CREATE TABLE device_keys (device TEXT NOT NULL REFERENCES devices(id), kid INTEGER NOT NULL, "
        "mac_key TEXT NOT NULL, password_hash TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL, "
        "active_ms INTEGER, retired_ms INTEGER, trusted INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (device, kid))"
    )
    db.execute(
        "INSERT INTO device_keys (device, kid, mac_key, password_hash, state, created_ms, active_ms) "
        "SELECT id, 1, mac_key, password_hash, 'active', coalesce(created_ms, 0), coalesce(created_ms, 0) FROM devices"
    )
    db.execute("ALTER TABLE devices ADD COLUMN kid INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE events ADD COLUMN kid INTEGER")


def _m8_people(db: sqlite_utils.Database) -> None:
    """People and their logins (SPEC section 12): accounts with a role, a department, a slow
    password hash and a lockout; personal API tokens and console sessions, both kept only as a
    SHA-256 of the secret (they are long random strings, so a fast hash is enough)."""
    db.execute(
        "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, dept TEXT, password_hash TEXT NOT NULL, "
        "disabled INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, locked_until_ms INTEGER, "
        "created_ms INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE TABLE user_tokens (token_hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), "
        "created_ms INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE TABLE console_sessions (session_hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), "
        "created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL)"
    )
    db.execute("CREATE INDEX audit_time ON audit(ts_ms)")  # `haocha audit --from --to`
    db.execute("CREATE INDEX audit_subject ON audit(subject)")  # a ticket's history


def _m10_alerts(db: sqlite_utils.Database) -> None:
    """Alerts (open → acknowledged → closed) and their webhook deliveries. At most one alert per
    (rule, subject) is not closed; ``held`` marks one closed by hand while its condition still
    held, so it does not open again until the condition clears. A delivery row per webhook is made
    with its alert and marked ``sent`` once the webhook took it: a restart never sends it twice."""
    db.execute(
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            rule TEXT NOT NULL,
            subject TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'open',
            summary TEXT NOT NULL,
            detail TEXT NOT NULL,
            opened_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL,
            acked_ms INTEGER,
            acked_by TEXT,
            comment TEXT,
            closed_ms INTEGER,
            closed_by TEXT,
            close_reason TEXT,
            held INTEGER NOT NULL DEFAULT 0)"""
    )
    db.execute("CREATE UNIQUE INDEX alerts_live ON alerts(rule, subject) WHERE state != 'closed'")
    db.execute("CREATE INDEX alerts_held ON alerts(rule, subject) WHERE held = 1")
    db.execute(
        """CREATE TABLE alert_deliveries (
            alert_id INTEGER NOT NULL REFERENCES alerts(id),
            webhook TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_ms INTEGER NOT NULL,
            sent_ms INTEGER,
            error TEXT,
            PRIMARY KEY (alert_id, webhook))"""
    )
    db.execute("CREATE INDEX alert_deliveries_pending ON alert_deliveries(next_ms) WHERE state = 'pending'")


def _m11_config_layers(db: sqlite_utils.Database) -> None:
    """Layered configuration (SPEC section 13): settings at hall, window and device level (the
    lower wins), who set each and when; per device the versions pushed (the effective settings
    each carried) and what the terminal last reported: the version in force, the last refused."""
    db.execute(
        "CREATE TABLE config_layers (scope TEXT NOT NULL, target TEXT NOT NULL, key TEXT NOT NULL, "
        "value TEXT NOT NULL, who TEXT NOT NULL, set_ms INTEGER NOT NULL, PRIMARY KEY (scope, target, key))"
    )
    db.execute(
        "CREATE TABLE config_pushes (device TEXT NOT NULL REFERENCES devices(id), version INTEGER NOT NULL, "
        "body TEXT NOT NULL, pushed_ms INTEGER NOT NULL, PRIMARY KEY (device, version))"
    )
    db.execute(
        "CREATE TABLE config_reports (device TEXT PRIMARY KEY REFERENCES devices(id), applied INTEGER NOT NULL, "
        "refused INTEGER, refused_reason TEXT, reported_ms INTEGER NOT NULL)"
    )


def _m12_releases(db: sqlite_utils.Database) -> None:
    """Signed releases and their rollout (SPEC section 13): a release's manifest (the exact signed
    text) and signature; per announced device the phase it last reported. ``paused_reason`` is set
    by a rollback anywhere: further widening then needs ``--force``."""
    db.execute(
        "CREATE TABLE releases (release TEXT PRIMARY KEY, kind TEXT NOT NULL, manifest TEXT NOT NULL, "
        "sig TEXT NOT NULL, created_ms INTEGER NOT NULL, paused_ms INTEGER, paused_reason TEXT)"
    )
    db.execute(
        "CREATE TABLE release_devices (release TEXT NOT NULL REFERENCES releases(release), device TEXT NOT NULL, "
        "announced_ms INTEGER NOT NULL, phase TEXT, detail TEXT, phase_ms INTEGER, PRIMARY KEY (release, device))"
    )
    db.execute("CREATE INDEX release_devices_device ON release_devices(device)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _m1_core,
    _m2_cases,
    migrate_upstream,
    migrate_lazy_ratings,
    _m5_ticket_counters,
    _m6_invalid_events,
    _m7_device_keys,
    _m8_people,
    migrate_upstream_days,
    _m10_alerts,
    _m11_config_layers,
    _m12_releases,
]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply every migration newer than the file's ``user_version``; return the new version."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.conn:
            db.execute("BEGIN IMMEDIATE")
            migration(db)
            db.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)
