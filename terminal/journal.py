"""The terminal's local journal: every accepted press is a committed row before anything else.

SQLite in WAL mode with ``synchronous=FULL`` on every connection, so a commit survives power loss.
``seq`` is an AUTOINCREMENT key: SQLite never reissues it, even after every row was acked and
deleted (plain INTEGER PRIMARY KEY would reuse the largest). ``epoch`` is made once, with the file:
a wiped card gets a new epoch, so the hub never mistakes new events for old ones.
Rows are deleted only at or below the hub's ack; the acked pointer only grows.

Every row is checked against :mod:`protocol.rules` as the event it will travel as (its epoch, the
seq it gets, a staff-key row's local case number) before it is committed: a row the hub could only
store as invalid is never journaled, and never lights "thank you".
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.frames import Event
from protocol.rules import event_problem

from .errors import InvalidRow, JournalError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    body: dict[str, Any]


def row_event(epoch: str, seq: int, body: Mapping[str, Any], age_ms: int | None = None) -> Event:
    """The event a journal row travels as; TypeError if the body holds a field events do not."""
    fields = dict(body)
    if fields.get("reasons") is not None:
        fields["reasons"] = tuple(fields["reasons"])
    return Event(epoch=epoch, seq=seq, age_ms=age_ms, **fields)


def row_problem(epoch: str, seq: int, body: Mapping[str, Any]) -> str | None:
    """Why the row would break a rule of :mod:`protocol.rules` once sent, or None."""
    try:
        event = row_event(epoch, seq, body)
    except TypeError as exc:
        return f"not an event row: {exc}"
    return event_problem(event)


class Journal:
    """Thread-safe: presses commit from panel threads while the uplink reads and deletes."""

    def __init__(self, path: Path | str, device: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the writer connection
        self._read_lock = threading.Lock()  # the reader connection: WAL readers never block a press
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self.epoch = self._init_meta(device)
            self._reader = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self.device = device
        self.acked = int(self._meta("acked") or 0)

    def _init_meta(self, device: str) -> str:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            stored = self._meta("device")
            if stored is None:
                # 128 random bits: never reused by a re-flashed or wiped terminal.
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("device", device), ("epoch", secrets.token_hex(16)), ("acked", "0")],
                )
            elif stored != device:
                raise JournalError(f"journal {self.path} belongs to device {stored!r}, not {device!r}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return str(self._meta("epoch"))

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def append(self, body: dict[str, Any], case_from_seq: bool = False) -> int:
        """Commit one event and return its seq. With ``case_from_seq`` the row's ``case`` becomes
        the local case number ``{device}-{epoch[:8]}-{seq}`` (staff key), in the same commit.

        InvalidRow, with nothing written and no seq used, if the row breaks a rule of
        :mod:`protocol.rules`; JournalError if the commit failed."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                # The seq AUTOINCREMENT would give: sqlite_sequence only grows, and rows only go.
                seq = self._last_seq() + 1
                if case_from_seq:
                    body = {**body, "case": self.local_case(seq)}
                problem = row_problem(self.epoch, seq, body)
                if problem is not None:
                    raise InvalidRow(f"the row would break a rule, {problem}")
                self._db.execute("INSERT INTO journal (seq, body) VALUES (?, ?)", (seq, json.dumps(body)))
                self._db.execute("COMMIT")
                return seq
            except sqlite3.Error as exc:
                self._rollback()
                raise JournalError(f"journal commit failed: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def local_case(self, seq: int) -> str:
        return f"{self.device}-{self.epoch[:8]}-{seq}"

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def rows_after(self, after: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with seq > ``after``, in seq order."""
        with self._read_lock:
            cur = self._reader.execute(
                "SELECT seq, body FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
            return [Row(int(seq), json.loads(body)) for seq, body in cur]

    def ack(self, upto: int) -> bool:
        """Record the hub's ack and delete the rows it covers; False if it moved nothing.

        An ack beyond ``last_seq`` cannot be true of this journal and is refused.
        """
        with self._lock:
            if upto <= self.acked:
                return False
            if upto > self._last_seq():
                raise JournalError(f"ack upto {upto} is beyond last_seq {self._last_seq()}")
            try:
                # No fsync for acks: WAL with synchronous=NORMAL stays consistent, and an ack lost
                # to a power cut only makes the terminal resend rows the hub dedupes. The next
                # press's FULL commit syncs the WAL, this transaction included.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'acked'", (str(upto),))
                self._db.execute("DELETE FROM journal WHERE seq <= ?", (upto,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise JournalError(f"journal ack failed: {exc}") from exc
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self.acked = upto
            return True

    def _last_seq(self, db: sqlite3.Connection | None = None) -> int:
        row = (db or self._db).execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
        return 0 if row is None else int(row[0])

    @property
    def last_seq(self) -> int:
        """The highest seq ever committed (it survives the deletion of acked rows)."""
        with self._read_lock:
            return self._last_seq(self._reader)

    def summary(self) -> dict[str, Any]:
        """What ``haocha terminal journal`` prints."""
        with self._read_lock:
            last = self._last_seq(self._reader)
            sql = "SELECT count(*) FROM journal WHERE seq > ?"
            pending = int(self._reader.execute(sql, (self.acked,)).fetchone()[0])
        return {"device": self.device, "epoch": self.epoch, "last_seq": last, "acked": self.acked, "pending": pending}

    def close(self) -> None:
        with self._lock, self._read_lock:
            if self._db is not None:
                self._reader.close()
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_summary(path: Path) -> dict[str, Any]:
    """The journal summary from a file on disk, without creating one where none exists."""
    if not path.exists():
        raise JournalError(f"no journal at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
        acked = int(meta["acked"])
        pending = int(db.execute("SELECT count(*) FROM journal WHERE seq > ?", (acked,)).fetchone()[0])
    except (sqlite3.Error, KeyError) as exc:
        raise JournalError(f"{path} is not a terminal journal: {exc}") from exc
    finally:
        db.close()
    return {
        "device": meta["device"],
        "epoch": meta["epoch"],
        "last_seq": 0 if row is None else int(row[0]),
        "acked": acked,
        "pending": pending,
    }
