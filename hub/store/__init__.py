"""The hub's SQLite store: one file holding the registry, events, counters and audit log."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import StoreError
from .schema import migrate


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    """A connection to ``hub.db`` in WAL mode with ``synchronous=FULL``. Not shared across
    threads: each thread that needs the store opens its own."""

    def __init__(self, path: Path | str, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"no hub database at {self.path} (run `haocha hub init` first)")
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self.db = sqlite_utils.Database(conn)
            migrate(self.db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open hub database {self.path}: {exc}") from exc
        if create:
            self.path.chmod(0o600)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception (re-raised)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def audit(self, actor: str, action: str, subject: str, **detail: Any) -> None:
        self.conn.execute(
            "INSERT INTO audit (ts_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            (now_ms(), actor, action, subject, json.dumps(detail, ensure_ascii=False)),
        )

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def bump_registry(self) -> None:
        """Mark the device registry changed (the broker and the hub reload it)."""
        self.set_meta("registry_version", str(int(self.meta("registry_version", "0") or 0) + 1))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
