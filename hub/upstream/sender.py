"""The upstream sender: a thread of the hub daemon that drains the outbox to the regional system.

It posts the oldest pending records in batches (one kind per request; evaluations in queue
order, so order per window holds; see :func:`choose_batch`), and marks them sent only after the
regional system answered for each. A crash between the answer and the commit makes it post the
same records again under the same ids: the regional system sees a resend, never a new record.
Network errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff and jitter
(capped by ``backoff_max_s`` ≤ 30 s); 401/403 are retried too (a configuration fault is not the
record's fault). Any other 4xx is a verdict on the records: a batch is split and posted one by
one, and a single record refused is parked with the reason. Everything it needs survives
restarts in the database; nothing is kept in memory. Requests go over one httpx client, so the
connection to the regional system is kept alive between batches.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from protocol.retry import Backoff

from ..config import DB_NAME, HubConfig
from ..errors import ConfigError
from ..store import Store, now_ms
from . import outbox
from .adapters import Adapter, Context, make_adapter
from .signing import Signer, make_signer
from .totals import queue_totals

_LOG = logging.getLogger(__name__)
PRUNE_CHUNK = 5000
PRUNE_EVERY_S = 600.0


class Retry(Exception):
    """The request failed in a way that says nothing about the records: try again later."""


@dataclass(frozen=True)
class Refused:
    """The regional system refused the whole request as invalid (a 4xx other than 401/403/408/429)."""

    status: int
    reason: str


class Sender:
    """Owns its own Store connection (opened on its thread); start/stop from the daemon."""

    def __init__(
        self, config: HubConfig, home: Path, rng: random.Random | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.config = config
        self.settings = config.upstream
        self.home = home
        self.tls = tls or upstream_tls(config, home)
        self.adapter: Adapter = make_adapter(self.settings.adapter)
        self.signer: Signer = make_signer(self.settings.signing, self.settings.app_id, self.settings.secret)
        self.rng = rng or random.Random()
        #: One client for the sender's life: its pool keeps the connection open between batches.
        self.http = httpx.Client(verify=self.tls, timeout=self.settings.timeout_s, follow_redirects=False)
        self.stopping = threading.Event()
        self.backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s, jitter=True, rng=self.rng)
        self.sent = 0
        self._next_totals = 0.0
        self._next_prune = 0.0
        self._thread: threading.Thread | None = None

    # -- thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="upstream-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.stop()
        self.http.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _main(self) -> None:
        """Thread entry point: never dies on an error, logs it with its traceback and backs off."""
        _LOG.info("upstream sender to %s started", self.settings.url)
        with Store(self.home / DB_NAME) as store:
            while not self.stopping.is_set():
                try:
                    self._maybe_totals(store)
                    self._maybe_prune(store)
                    handled = self.step(store)
                except Retry as exc:
                    self._back_off(str(exc))
                    continue
                except Exception:
                    _LOG.exception("upstream sender step failed")
                    self._back_off("internal error")
                    continue
                if handled == 0:
                    self.stopping.wait(self.settings.poll_s)
        _LOG.info("upstream sender stopped after %d records", self.sent)

    @property
    def failures(self) -> int:
        """Failed requests in a row."""
        return self.backoff.failures

    def _back_off(self, why: str) -> None:
        delay = self.backoff.failed()
        _LOG.warning("upstream: %s; retry %d in %.2fs", why, self.failures, delay)
        self.stopping.wait(delay)

    def _maybe_prune(self, store: Store) -> None:
        """Delete sent records older than ``keep_sent_days``, a chunk at a time."""
        keep_days = self.settings.keep_sent_days
        if keep_days <= 0 or time.monotonic() < self._next_prune:
            return
        cutoff = now_ms() - int(keep_days * 86_400_000)
        with store.transaction() as conn:
            pruned = outbox.prune_sent(conn, cutoff, PRUNE_CHUNK)
        self._next_prune = time.monotonic() + (0 if pruned == PRUNE_CHUNK else PRUNE_EVERY_S)
        if pruned:
            _LOG.info("pruned %d sent records older than %g days", pruned, keep_days)

    def _maybe_totals(self, store: Store) -> None:
        interval = self.settings.totals_interval_s
        if interval <= 0 or time.monotonic() < self._next_totals:
            return
        self._next_totals = time.monotonic() + interval
        now = dt.datetime.now(self.config.tz)
        days = {now.date(), (now - dt.timedelta(seconds=2 * interval)).date()}  # close the period just ended
        for period in self.settings.totals_periods:
            for day in sorted(days):
                queue_totals(store, self.config, period, day)

    # -- one batch ------------------------------------------------------------------------------
    def step(self, store: Store) -> int:
        """Post the oldest pending batch; returns how many rows left ``pending``. Raises Retry."""
        size = self.settings.batch_size
        rows = choose_batch(outbox.pending(store.conn, 2 * size, self.config.hall), self.adapter, size)
        if not rows:
            return 0
        ctx = self._context(store)
        unencodable = self._unencodable(rows, ctx)
        if unencodable:
            return self._settle(store, [r for r, _ in unencodable], [why for _, why in unencodable])
        try:
            verdicts = self._post(rows, ctx)
        except Retry as exc:
            with store.transaction() as conn:
                outbox.note_failure(conn, [r.id for r in rows], str(exc))
            raise
        if isinstance(verdicts, Refused):
            return self._one_by_one(store, rows, ctx) if len(rows) > 1 else self._settle(store, rows, [verdicts.reason])
        return self._settle(store, rows, verdicts)

    def _unencodable(self, rows: list[outbox.OutboxRow], ctx: Context) -> list[tuple[outbox.OutboxRow, str | None]]:
        """Rows the adapter cannot encode (parked at once, so one bad row never blocks the queue)."""
        bad: list[tuple[outbox.OutboxRow, str | None]] = []
        for row in rows:
            try:
                self.adapter.encode(row.kind, row.body, ctx)
            except (KeyError, ValueError, TypeError) as exc:
                bad.append((row, f"cannot encode for {self.adapter.name}: {type(exc).__name__} {exc}"))
        return bad

    def _one_by_one(self, store: Store, rows: list[outbox.OutboxRow], ctx: Context) -> int:
        done = 0
        for row in rows:
            verdict = self._post([row], ctx)
            done += self._settle(store, [row], [verdict.reason] if isinstance(verdict, Refused) else verdict)
        return done

    def _settle(self, store: Store, rows: list[outbox.OutboxRow], verdicts: list[str | None]) -> int:
        with store.transaction() as conn:
            outbox.settle_sent(conn, [r for r, v in zip(rows, verdicts, strict=True) if v is None])
            for row, reason in zip(rows, verdicts, strict=True):
                if reason is not None:
                    _LOG.error("upstream refused %s %s: %s (parked)", row.kind, row.record_id, reason)
                    outbox.park(conn, row.id, reason)
        self.backoff.succeeded()
        self.sent += sum(v is None for v in verdicts)
        return len(rows)

    def _context(self, store: Store) -> Context:
        depts = {w: d for w, d in store.conn.execute("SELECT id, dept FROM windows")}
        return Context(self.config.tz, self.settings.reason_codes, depts)

    def _post(self, rows: list[outbox.OutboxRow], ctx: Context) -> list[str | None] | Refused:
        kind = rows[0].kind
        body = json.dumps(
            self.adapter.envelope(kind, [self.adapter.encode(r.kind, r.body, ctx) for r in rows]), ensure_ascii=False
        ).encode()
        url = self.settings.url.rstrip("/") + self.adapter.path(kind)
        headers = {"Content-Type": "application/json; charset=utf-8", **self.signer.headers(body)}
        try:
            response = self.http.post(url, content=body, headers=headers)
            if response.status_code >= 400:
                return _http_error(response.status_code, response.text)
            return _verdicts(response.content, len(rows))
        except (httpx.HTTPError, OSError, ValueError) as exc:  # refused, reset, timed out, dropped; garbled
            raise Retry(f"{type(exc).__name__}: {exc}") from exc


def choose_batch(rows: list[outbox.OutboxRow], adapter: Adapter, size: int) -> list[outbox.OutboxRow]:
    """The rows of one request, from the oldest pending ``rows``, never reordering what matters.

    Evaluations (and their updates) keep their queue order among themselves, whatever the
    tickets and totals queued between them. A ticket or totals row goes only after every older
    evaluation, so a ticket never overtakes the rating it is about.
    """
    if not rows:
        return rows
    evaluation = ("evaluation", "update")
    if rows[0].kind in evaluation:
        return [r for r in rows if r.kind in evaluation][:size]
    path, batch = adapter.path(rows[0].kind), list[outbox.OutboxRow]()
    for row in rows:
        if row.kind in evaluation or len(batch) == size:
            break
        if adapter.path(row.kind) == path:
            batch.append(row)
    return batch


def _verdicts(raw: bytes, n: int) -> list[str | None]:
    """None per record taken (stored, duplicate or updated); the reason per record refused."""
    answer = json.loads(raw)
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != n:
        raise ValueError(f"the answer holds {len(results) if isinstance(results, list) else 'no'} results for {n}")
    return [None if r.get("status") != "rejected" else str(r.get("reason") or "rejected") for r in results]


def _http_error(status: int, text: str) -> Refused:
    if status in (401, 403, 408, 429) or status >= 500:
        raise Retry(f"HTTP {status} {text[:200]}".strip())
    return Refused(status, f"HTTP {status}: {_reason(text)}")


def _reason(text: str) -> str:
    try:
        body: Any = json.loads(text)
    except ValueError:
        return text[:300] or "no reason given"
    if isinstance(body, dict):
        return str(body.get("reason") or body.get("message") or body)[:300]
    return str(body)[:300]


def upstream_tls(config: HubConfig, home: Path) -> ssl.SSLContext:
    """How an ``https://`` upstream's certificate is checked: against ``[upstream] ca`` (a PEM
    bundle, relative to the home) or else the system's CAs, its host name always. ConfigError (one
    line) when the bundle cannot be read: the hub says so at start, not at the first record."""
    ca = config.upstream.ca
    if not ca:
        return ssl.create_default_context()
    path = Path(ca) if Path(ca).is_absolute() else home / ca
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[upstream] ca {path}: cannot be read as a CA bundle ({exc})") from None


def start_sender(config: HubConfig, home: Path, tls: ssl.SSLContext | None = None) -> Sender | None:
    """The daemon's sender thread, started; None when no upstream URL is configured."""
    if not config.upstream.url:
        _LOG.info("no [upstream] url: records stay queued in the outbox")
        return None
    sender = Sender(config, home, tls=tls)
    sender.start()
    return sender
