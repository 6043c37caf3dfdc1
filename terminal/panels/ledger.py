"""What a bus panel driver has already handed to the journal, kept across terminal restarts.

Modbus panels count presses and serial panels repeat a press until it is acknowledged, so after a
restart (or ``kill -9``) the driver must know which counter value or press id it has already
journaled: otherwise it would deliver old presses twice or, taking the panel's figures as a new
baseline, lose the presses made while the terminal was down.

The mark cannot share a transaction with the journal row (the journal belongs to the evaluator),
so each delivery is a small two-phase step in this SQLite file (WAL, ``synchronous=FULL``):

1. an *intent* row names the press and the journal's ``last_seq`` before it is handed on;
2. ``on_key`` commits the journal row;
3. the mark advances and the intent is removed, in one transaction.

If the process dies between 2 and 3, the next :class:`PressLedger` on the file finds the intent and decides from
the journal itself: ``last_seq`` grew, so the press was journaled and the mark advances; it did
not, so the press is delivered again. Only the panel's thread journals (every row comes from a
key), so nothing else makes ``last_seq`` grow meanwhile. A press that journals nothing (a reason
key outside a reason wait) may be offered twice after a crash; it journals nothing again.

A panel that counts from the start again (rebooted, wiped, replaced) gets a new baseline for all
of its sources at once (:meth:`PressLedger.rebase`, one transaction) before any of its new
presses is delivered, so a crash in the middle of delivering them finds marks that all belong to
the new count.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import PanelError
from ..panel import Key, KeyHandler

_LOG = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mark (source TEXT PRIMARY KEY, boot INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS intent (source TEXT PRIMARY KEY, boot INTEGER NOT NULL, count INTEGER NOT NULL,
                                   before_seq INTEGER NOT NULL);
"""


class NotAccepted(PanelError):
    """``on_key`` refused a press: its mark stays, and the panel offers the press again."""


@dataclass(frozen=True, slots=True)
class Mark:
    """The newest press of ``source`` already journaled: the panel's boot and its counter/press id."""

    boot: int
    count: int


class PressLedger:
    """Thread-safe; one file may serve several panels (sources are named by the drivers)."""

    def __init__(self, path: Path, journal_path: Path) -> None:
        self.path = path
        self.journal_path = journal_path
        self._lock = threading.Lock()
        self._journal: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise PanelError(f"cannot open panel state {path}: {exc}") from exc
        with self._lock:
            self._recover()

    # -- reading --------------------------------------------------------------------------
    def get(self, source: str) -> Mark | None:
        with self._lock:
            row = self._conn().execute("SELECT boot, count FROM mark WHERE source = ?", (source,)).fetchone()
        return None if row is None else Mark(int(row[0]), int(row[1]))

    # -- writing --------------------------------------------------------------------------
    def set(self, source: str, mark: Mark) -> None:
        """Move the mark without a press (first contact, a panel reboot's new baseline)."""
        with self._lock:
            self._write("INSERT OR REPLACE INTO mark VALUES (?, ?, ?)", (source, mark.boot, mark.count))

    def rebase(self, marks: dict[str, Mark]) -> None:
        """Move several marks at once, in one transaction (a panel counting from 0 again)."""
        statements: list[object] = []
        for source, mark in marks.items():
            statements += ["INSERT OR REPLACE INTO mark VALUES (?, ?, ?)", (source, mark.boot, mark.count)]
        with self._lock:
            self._write(*statements)

    def deliver(self, source: str, mark: Mark, key: Key, on_key: KeyHandler | None) -> None:
        """Hand ``key`` to ``on_key`` and then advance ``source`` to ``mark``.

        Runs on the driver's thread. If ``on_key`` raises (JournalError: nothing committed), or
        the panel is not started (None), the mark stays where it was and :class:`NotAccepted`
        is raised: the press is not consumed, and the panel offers it again.
        """
        if on_key is None:
            raise NotAccepted("panel not started")
        with self._lock:
            before = self._journal_last_seq()
            self._write("INSERT OR REPLACE INTO intent VALUES (?, ?, ?, ?)", (source, mark.boot, mark.count, before))
        try:
            on_key(key)
        except BaseException as exc:
            with self._lock:
                self._write("DELETE FROM intent WHERE source = ?", (source,))
            if isinstance(exc, Exception):
                raise NotAccepted(f"press of {key.kind.value} {key.value!r} was not accepted: {exc}") from exc
            raise
        with self._lock:
            self._write(
                "INSERT OR REPLACE INTO mark VALUES (?, ?, ?)",
                (source, mark.boot, mark.count),
                "DELETE FROM intent WHERE source = ?",
                (source,),
            )

    # -- internals ------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise PanelError(f"panel state {self.path} is closed")
        return self._db

    def _write(self, *statements: object) -> None:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, args in zip(statements[::2], statements[1::2], strict=True):
                db.execute(str(sql), args)  # type: ignore[arg-type]
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise PanelError(f"panel state {self.path}: {exc}") from exc

    def _recover(self) -> None:
        """Settle intents left by a process that died between a journal commit and its mark."""
        intents = self._conn().execute("SELECT source, boot, count, before_seq FROM intent").fetchall()
        if not intents:
            return
        last = self._journal_last_seq()
        for source, boot, count, before in intents:
            if last > before:
                _LOG.warning("press %s of %s was journaled before a crash: not delivering it again", count, source)
                self._write(
                    "INSERT OR REPLACE INTO mark VALUES (?, ?, ?)",
                    (source, boot, count),
                    "DELETE FROM intent WHERE source = ?",
                    (source,),
                )
            else:
                _LOG.warning("press %s of %s was not journaled before a crash: it will be delivered", count, source)
                self._write("DELETE FROM intent WHERE source = ?", (source,))

    def _journal_last_seq(self) -> int:
        """The journal's last_seq, read through a read-only connection (0 if there is no journal)."""
        if self._journal is None:
            if not self.journal_path.exists():
                return 0
            self._journal = sqlite3.connect(f"file:{self.journal_path}?mode=ro", uri=True, check_same_thread=False)
        try:
            row = self._journal.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
        except sqlite3.Error as exc:
            raise PanelError(f"cannot read journal {self.journal_path}: {exc}") from exc
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            for db in (self._db, self._journal):
                if db is not None:
                    db.close()
            self._db = self._journal = None

    def __enter__(self) -> PressLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
