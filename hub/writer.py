"""The hub's writer process: stores the batches the daemon hands over, then says what to ack.

Why a process of its own: ingest is Python work (frame parsing, MAC checks, SQLite calls that
drop and retake the GIL at every step). In the daemon's process it shared one GIL with paho's
network thread, and each kept waiting for the other: the hub stored about 0.6 of what a bare
paho subscriber received. Here it has its own interpreter and CPU time.

Nothing can be lost between the two processes: the daemon PUBACKs a message only when this
process reports its batch committed, so a message in a pipe when either process dies was never
acked, and the broker delivers it again (dedupe makes that harmless).

Over two pipes (:mod:`hub.pipes`):
  daemon → writer: a list of ``(topic, payload, received_ms, mid)``; an empty list is the
  daemon's heartbeat (see ``hub.daemon``), answered with an empty :class:`Stored`;
  writer → daemon: :class:`Stored` after each commit, :class:`CommitFailing` after each failed
  commit (disk full: nothing stored, nothing acked, retried with backoff).
The writer ignores SIGINT and SIGTERM and exits when the daemon closes its pipe (or dies), so it
always finishes the batch it holds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.retry import Backoff

from .config import DB_NAME, HubConfig, load
from .ingest import BatchResult, Incoming, Ingestor
from .pipes import PipeEnd, widen
from .store import Store, now_ms

#: A failed commit (disk full, I/O error) is retried at most this far apart: cheap, and a disk an
#: operator clears is picked up within seconds.
COMMIT_RETRY_FIRST_S = 0.5
COMMIT_RETRY_MAX_S = 5.0
#: How often the writer looks for ratings held behind a gap for longer than ``gap_hold_s``.
RELEASE_CHECK_S = 10.0

_LOG = logging.getLogger(__name__)
Wire = tuple[str, bytes, int, int]  # topic, payload, received_ms, mid


@dataclass(frozen=True, slots=True)
class Stored:
    """A batch is committed: PUBACK ``mids``, publish ``acks``; ``counts`` by outcome."""

    mids: list[int]
    acks: dict[tuple[str, str], int]
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class CommitFailing:
    """A commit failed; ``failures`` counts every failed attempt since the writer started."""

    failures: int


class Writer:
    """The loop of the writer process (see the module docstring)."""

    def __init__(self, config: HubConfig, home: Path, batches: PipeEnd, reports: PipeEnd) -> None:
        self.config = config
        self.home = home
        self.batches = batches
        self.reports = reports
        self.failures = 0
        self._parent = os.getppid()
        self._next_hand_over = 0.0

    def run(self) -> None:
        with Store(self.home / DB_NAME) as store:
            cfg = self.config
            ingestor = Ingestor(store, cfg.hall, cfg.tz, cfg.misuse.burst_gap_s, cfg.key_grace_s)
            while True:
                self._maybe_hand_over_held(ingestor)
                if not self.batches.wait(RELEASE_CHECK_S):
                    continue
                try:
                    batch = self._gather()
                except EOFError:
                    return  # the daemon closed the pipe or died
                if not batch:  # the daemon's heartbeat: answering it shows this loop is not stuck
                    self._report(Stored([], {}, {}))
                    continue
                result = self._commit(ingestor, batch)
                if result is None:
                    return
                self._report(Stored([m.mid for m in batch], result.acks, dict(result.counts)))

    def _gather(self) -> list[Incoming]:
        """Everything waiting in the pipe, up to ``max_batch`` messages, for one transaction."""
        wires: list[Wire] = []
        for frame in self.batches.take():
            wires.extend(frame)
        while len(wires) < self.config.ingest.max_batch and self.batches.wait(0):
            try:
                for frame in self.batches.take():
                    wires.extend(frame)
            except EOFError:
                break  # commit what arrived; the next take reports the end
        return [Incoming(*wire) for wire in wires]

    def _commit(self, ingestor: Ingestor, batch: list[Incoming]) -> BatchResult | None:
        """Commit, retrying with backoff while the disk refuses; None if the daemon went away."""
        backoff = Backoff(COMMIT_RETRY_FIRST_S, COMMIT_RETRY_MAX_S)
        while True:
            try:
                return ingestor.ingest(batch)
            except sqlite3.Error as exc:
                delay = backoff.failed()
                _LOG.error("cannot commit %d messages (%s); retrying in %.1fs", len(batch), exc, delay)
            except Exception:  # a bug, not input (ingest isolates each message): keep the hub up, loudly
                delay = backoff.failed()
                _LOG.exception("storing %d messages failed; retrying in %.1fs", len(batch), delay)
            self.failures += 1
            self._report(CommitFailing(self.failures))
            time.sleep(delay)
            if os.getppid() != self._parent:
                return None

    def _maybe_hand_over_held(self, ingestor: Ingestor) -> None:
        """Ratings stuck behind a gap longer than ``gap_hold_s`` go upstream and open tickets."""
        if time.monotonic() < self._next_hand_over:
            return
        self._next_hand_over = time.monotonic() + RELEASE_CHECK_S
        try:
            ingestor.hand_over_held(now_ms() - int(self.config.upstream.gap_hold_s * 1000))
        except sqlite3.Error as exc:  # disk full: the next check tries again
            _LOG.error("cannot hand over held ratings: %s", exc)

    def _report(self, message: Stored | CommitFailing) -> None:
        try:
            self.reports.send(message)
        except OSError:
            pass  # the daemon is gone: nothing to ack any more, the broker redelivers


def spawn(home: Path, verbose: bool) -> tuple[subprocess.Popen[bytes], PipeEnd, PipeEnd]:
    """Start the writer for hub ``home``: (process, batches to send, reports to receive)."""
    to_writer_r, to_writer_w = os.pipe()
    from_writer_r, from_writer_w = os.pipe()
    widen(to_writer_w)
    cmd = [sys.executable, "-m", "hub.writer", "--home", str(home), "--batches", str(to_writer_r)]
    cmd += ["--reports", str(from_writer_w), *(["-v"] if verbose else [])]
    proc = subprocess.Popen(cmd, pass_fds=(to_writer_r, from_writer_w))
    os.close(to_writer_r)
    os.close(from_writer_w)
    return proc, PipeEnd(to_writer_w), PipeEnd(from_writer_r)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub.writer", description="The hub's writer process.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--batches", type=int, required=True, help="fd to read batches from")
    parser.add_argument("--reports", type=int, required=True, help="fd to write reports to")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon ends this process by closing the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from protocol.process import setup_logging

    setup_logging(args.verbose)
    batches = PipeEnd(args.batches)
    reports = PipeEnd(args.reports)
    Writer(load(args.home), args.home, batches, reports).run()


if __name__ == "__main__":
    # Run from the imported module, not this ``__main__`` copy: the reports must unpickle as
    # ``hub.writer.Stored`` in the daemon.
    from hub import writer

    writer.main()
