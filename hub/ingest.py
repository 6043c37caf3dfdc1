"""Turning MQTT messages into stored events, counters and acks (SPEC section 3, rule 3).

One call to :meth:`Ingestor.ingest` handles a batch of messages in one transaction: every event is
checked (topic → device, registry, MAC), deduplicated on (device, epoch, seq) *before* any business
rule, inserted, and counted; the cumulative ack per (device, epoch) is the end of the contiguous
prefix of stored seqs. Moving that ack point hands the ratings it passes over to the upstream outbox
and the work queue, in seq order (:mod:`hub.handover`). Nothing is acked to the broker or the
terminal until the commit returned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from protocol.errors import BadTopic, ProtocolError, UnknownKey
from protocol.frames import Event, Kind, Trigger, parse_frame, verify_event
from protocol.rules import event_problem
from protocol.state import State
from protocol.topics import Leaf, hub_state_topic, parse_topic

from . import handover, layers
from .cases import get_case
from .releases import record_update
from .statuses import CaseStatus, EventStatus
from .store import Store, keys, now_ms
from .store.registry import Device, all_devices, set_device_state
from .store.tallies import DayCache, TallyDelta

_LOG = logging.getLogger(__name__)

_INSERT = """INSERT OR IGNORE INTO events (device, epoch, seq, kind, status, status_reason, level, reasons, ref,
    case_no, item, staff, window, trigger, boot, mono_ms, wall_ms, synced, age_ms, t_ms, t_source, day,
    received_ms, mac, kid)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
#: An event that breaks a field rule keeps only its key, its raw JSON and why (SPEC section 10).
_INSERT_INVALID = """INSERT OR IGNORE INTO events (device, epoch, seq, kind, status, status_reason, window, t_ms,
    t_source, day, received_ms, mac, kid, raw)
    VALUES (?, ?, ?, 'invalid', 'invalid', ?, ?, ?, 'receipt', ?, ?, ?, ?, ?)"""
#: How often a pending key's rekey command is sent again to a terminal still on its old key.
REKEY_RESEND_MS = 60_000
#: How often the devices and their keys are read again even when the registry did not change
#: (a retired key's grace period ends with time, not with a change).
REGISTRY_MAX_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class Incoming:
    """One MQTT message as the network thread received it."""

    topic: str
    payload: bytes
    received_ms: int
    mid: int = 0


@dataclass
class BatchResult:
    #: (device, epoch) → upto, for every epoch the batch touched (duplicates included).
    acks: dict[tuple[str, str], int] = field(default_factory=dict)
    #: outcome → count: ``stored`` and ``duplicate`` per event, reject reasons per frame.
    counts: Counter[str] = field(default_factory=Counter)


def event_time(event: Event, received_ms: int) -> tuple[int, str]:
    """Event time and its source: the terminal's clock when synchronised, else the hub's receive
    time minus the event's age (``derived``), else the receive time itself (``receipt``)."""
    if event.synced:
        return event.wall_ms, "clock"
    if event.age_ms is not None:
        return received_ms - event.age_ms, "derived"
    return received_ms, "receipt"


class Ingestor:
    """Owns one :class:`Store` connection; used by one thread (the hub's writer)."""

    def __init__(
        self, store: Store, hall: str, tz: ZoneInfo, burst_gap_s: float = 0.0, key_grace_s: float = 7 * 86400
    ) -> None:
        self.store = store
        #: After a rotation, frames signed with the old key are accepted this long.
        self.key_grace_ms = int(key_grace_s * 1000)
        self.hall = hall
        self.tz = tz
        #: Free-mode ratings closer than this on one terminal are flagged as misuse (0: off).
        self.burst_gap_ms = int(burst_gap_s * 1000)
        self.day_of = DayCache(tz)
        self._hub_state = hub_state_topic(hall)
        self.devices: dict[str, Device] = {}
        self._registry_version: str | None = None
        self._registry_read = 0.0
        self._uptos: dict[tuple[str, str], int] = {}
        #: What the current batch stored, per (device, epoch): seq → the rating to hand over, or
        #: None for other kinds. Lets the common case hand over without reading back.
        self._fresh: defaultdict[tuple[str, str], dict[int, handover.Rated | None]] = defaultdict(dict)

    def refresh_registry(self) -> None:
        version = self.store.meta("registry_version", "0")
        if version != self._registry_version or time.monotonic() - self._registry_read > REGISTRY_MAX_AGE_S:
            self.devices = all_devices(self.store, self.key_grace_ms)
            self._registry_version = version
            self._registry_read = time.monotonic()

    def ingest(self, batch: list[Incoming]) -> BatchResult:
        """Store a batch in one transaction and say what to ack.

        Per-message isolation (SPEC section 10): whatever one message holds, it ends stored,
        duplicate or rejected with a counted reason. If handling a message raises anything but a
        database failure, the batch rolls back and every message is handled again in a
        transaction of its own, where the one that raises is rejected as ``error`` (and acked,
        so it is never redelivered forever) while the others commit. Only
        ``sqlite3.OperationalError`` (disk full, I/O error) leaves this method: nothing is
        stored, nothing may be acked, the writer retries."""
        self.refresh_registry()
        try:
            return self._ingest(batch)
        except _MessageFailed as failed:
            _LOG.error("a message on %s failed (%s); storing the batch message by message", *failed.args)
        result = BatchResult()
        for msg in batch:
            one = self._ingest_alone(msg)
            result.acks.update(one.acks)
            result.counts.update(one.counts)
        return result

    def _ingest(self, batch: list[Incoming]) -> BatchResult:
        delta = TallyDelta()
        touched: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
        frames: Counter[tuple[str, str]] = Counter()
        self._fresh.clear()
        with self.store.transaction() as conn:
            for msg in batch:
                try:
                    self._message(conn, msg, delta, touched, frames)
                except sqlite3.OperationalError:
                    raise
                except Exception as exc:  # the one place input may raise: see ingest()
                    raise _MessageFailed(_cut(msg.topic), _cut(repr(exc))) from exc
            delta.apply(conn)
            acks = self._advance(conn, touched)
            _count_frames(conn, frames, max((m.received_ms for m in batch), default=0))
        self._uptos.update(acks)
        result = BatchResult(acks=acks)
        for (outcome, _device), n in frames.items():
            result.counts[outcome] += n
        return result

    def _ingest_alone(self, msg: Incoming) -> BatchResult:
        """One message in its own transaction; one that raises is rejected as ``error``."""
        try:
            return self._ingest([msg])
        except _MessageFailed as failed:
            _LOG.error("rejected a message on %s: handling it raised %s", *failed.args)
        device = _device_of(self.hall, msg.topic)
        with self.store.transaction() as conn:
            _count_frames(conn, Counter({("error", device): 1}), msg.received_ms)
        return BatchResult(counts=Counter({"error": 1}))

    def hand_over_held(self, received_before_ms: int) -> int:
        """Release ratings stored beyond a gap before ``received_before_ms`` (see
        :func:`hub.handover.hand_over_held`); returns how many."""
        with self.store.transaction() as conn:
            return handover.hand_over_held(conn, self.hall, received_before_ms)

    def _message(
        self,
        conn: sqlite3.Connection,
        msg: Incoming,
        delta: TallyDelta,
        touched: defaultdict[tuple[str, str], set[int]],
        frames: Counter[tuple[str, str]],
    ) -> None:
        if msg.topic == self._hub_state:
            return  # the hub's own retained state, which the ``+/state`` subscription also brings
        try:
            device, leaf = parse_topic(self.hall, msg.topic)
        except BadTopic as exc:
            frames[(exc.reason, "")] += 1
            return
        dev = self.devices.get(device)
        if dev is None or dev.revoked:
            frames[("unknown_device" if dev is None else "revoked", device)] += 1
            return
        try:
            if leaf is Leaf.STATE:
                state = State.decode(msg.payload)
                set_device_state(self.store, device, state.fields(), msg.received_ms)
                if state.config is not None:  # a terminal that takes configurations (SPEC section 13)
                    layers.on_report(conn, device, state.config, msg.received_ms)
                if state.update is not None:
                    record_update(conn, device, state.update.fields(), msg.received_ms)
                frames[("state", device)] += 1
                self._key_in_use(dev, state.kid, from_state=True)
                return
            if leaf is not Leaf.EV:
                raise BadTopic(f"devices do not publish on {leaf.value}")
            batch = parse_frame(msg.payload)
            kid = dev.kid if batch.kid is None else batch.kid
            key = dev.key_for(kid)
            if key is None:
                raise UnknownKey(f"the frame names key {kid}, which {device} may not use now")
            pairs = batch.events
            for event, mac in pairs:
                verify_event(key, self.hall, device, event, mac)
        except ProtocolError as exc:
            _LOG.warning("rejected a frame from %s: %s", device, _cut(str(exc)))
            frames[(exc.reason, device)] += 1
            return
        for event, mac in pairs:
            problem = event_problem(event)
            if problem is None:
                stored = self._event(conn, dev, event, mac, msg.received_ms, delta, kid)
            else:
                stored = self._invalid(conn, dev, event, mac, problem, msg.received_ms, delta, kid)
            frames[("stored" if stored else "duplicate", device)] += 1
            if stored and problem is not None:
                frames[("invalid", device)] += 1
            touched[(device, event.epoch)].add(event.seq)
        self._key_in_use(dev, kid)

    def _key_in_use(self, dev: Device, kid: object, from_state: bool = False) -> None:
        """A MAC-valid frame or a state of ``dev`` shows the key it uses: a pending key in use is
        promoted (the rotation completes); a state still on an older key gets its rekey again."""
        if dev.pending_kid is None or type(kid) is not int:
            return
        if kid == dev.pending_kid:
            if keys.promote(self.store, dev.id, kid):
                _LOG.info("%s took up its new key %d: the old one is retired", dev.id, kid)
                self._registry_version = None  # read the keys again for the next batch
        elif from_state and kid < dev.pending_kid:
            keys.resend_rekey(self.store, dev.id, dev.pending_kid, REKEY_RESEND_MS)

    def _event(
        self,
        conn: sqlite3.Connection,
        dev: Device,
        ev: Event,
        mac: str,
        received_ms: int,
        delta: TallyDelta,
        kid: int | None = None,
    ) -> bool:
        """Insert one verified event unless it is a duplicate; True if inserted.

        The unique (device, epoch, seq) index decides: a duplicate inserts nothing, and the
        rule's verdict (read-only) and every counter change are dropped with it, so dedupe
        still comes before every business rule."""
        status, why = self._rule(conn, dev, ev)
        t_ms, t_source = event_time(ev, received_ms)
        day = self.day_of(t_ms)
        reasons = None if ev.reasons is None else json.dumps(list(ev.reasons))
        row = (dev.id, ev.epoch, ev.seq, ev.kind, status, why, ev.level, reasons, ev.ref, ev.case, ev.item, ev.staff,
               dev.window, ev.trigger, ev.boot, ev.mono_ms, ev.wall_ms, int(ev.synced), ev.age_ms,
               t_ms, t_source, day, received_ms, mac, kid)  # fmt: skip
        cur = conn.execute(_INSERT, row)
        if cur.rowcount == 0:
            return False
        event_id = int(cur.lastrowid or 0)
        _track_case(conn, dev, ev, status, event_id, t_ms)
        self._fresh[(dev.id, ev.epoch)][ev.seq] = _to_hand_over(event_id, dev, ev, status, t_ms, day)
        if ev.kind == Kind.REASON and ev.ref is not None and ev.reasons is not None:
            handover.on_reason(conn, self.hall, dev.id, ev.epoch, ev.ref, list(ev.reasons))
        _tally(delta, (day, dev.id, dev.window, ev.item or "", ev.staff or ""), ev, status)
        if ev.trigger == Trigger.FREE and self.burst_gap_ms:
            self._flag_next_if_burst(conn, dev, ev, delta)
        return True

    def _invalid(
        self,
        conn: sqlite3.Connection,
        dev: Device,
        ev: Event,
        mac: str,
        problem: str,
        received_ms: int,
        delta: TallyDelta,
        kid: int | None = None,
    ) -> bool:
        """Store a MAC-valid event that breaks a field rule: its key, raw JSON and the problem, at
        its receive time; counted as ``invalid`` and in no rate. True if inserted."""
        raw = json.dumps({**{k: v for k, v in ev.fields().items() if v is not None}, "mac": mac})  # ASCII: a
        # lone surrogate from a JSON escape cannot be stored as UTF-8
        day = self.day_of(received_ms)
        row = (dev.id, ev.epoch, ev.seq, problem[:200], dev.window, received_ms, day, received_ms, mac, kid, raw)
        if conn.execute(_INSERT_INVALID, row).rowcount == 0:
            return False
        _LOG.warning("stored an invalid event from %s, seq %d: %s", dev.id, ev.seq, _cut(problem))
        self._fresh[(dev.id, ev.epoch)][ev.seq] = None
        key = (day, dev.id, dev.window, "", "")
        delta.add(key, "events")
        delta.add(key, "invalid")
        return True

    def _rule(self, conn: sqlite3.Connection, dev: Device, ev: Event) -> tuple[str, str | None]:
        """(status, reason): ``accepted``; ``refused`` for a second rating of a case; ``flagged``
        (stored, counted, left out of the rates) for a rating that looks like misuse."""
        if ev.kind == Kind.STAFF:
            return (EventStatus.ACCEPTED, None) if _local_case(dev, ev) else (EventStatus.FLAGGED, "unknown_case")
        if ev.kind != Kind.RATING:
            return EventStatus.ACCEPTED, None
        if ev.case is not None:
            return _case_verdict(conn, dev, ev)
        if ev.trigger == Trigger.FREE and self.burst_gap_ms and self._burst(conn, dev, ev):
            return EventStatus.FLAGGED, "burst"
        return EventStatus.ACCEPTED, None

    def _flag_next_if_burst(self, conn: sqlite3.Connection, dev: Device, ev: Event, delta: TallyDelta) -> None:
        """A rating that arrives late (resent after a gap) may be the one the next rating came too
        soon after: bursts follow seq order, not arrival order."""
        row = conn.execute(
            "SELECT id, seq, boot, mono_ms, status, trigger, level, day, item, staff FROM events "
            "WHERE device = ? AND epoch = ? AND seq > ? AND kind = 'rating' ORDER BY seq LIMIT 1",
            (dev.id, ev.epoch, ev.seq),
        ).fetchone()
        if row is None:
            return
        event_id, seq, boot, mono_ms, status, trigger, level, day, item, staff = row
        if status != EventStatus.ACCEPTED or trigger != Trigger.FREE or boot != ev.boot:
            return
        if int(mono_ms) - ev.mono_ms < self.burst_gap_ms:
            conn.execute("UPDATE events SET status = 'flagged', status_reason = 'burst' WHERE id = ?", (event_id,))
            key = (day, dev.id, dev.window, item or "", staff or "")
            delta.add(key, "flagged")
            delta.add(key, f"fl_{level}")
            fresh = self._fresh[(dev.id, ev.epoch)]
            rated = fresh.get(seq)
            if rated is not None:  # stored by this batch, not handed over yet
                fresh[seq] = dataclasses.replace(rated, status=EventStatus.FLAGGED)
            handover.rating_changed(conn, self.hall, event_id)

    def _burst(self, conn: sqlite3.Connection, dev: Device, ev: Event) -> bool:
        """Did the previous rating of this terminal come less than the gap before this one?"""
        row = conn.execute(
            "SELECT boot, mono_ms FROM events WHERE device = ? AND epoch = ? AND seq < ? "
            "AND kind = 'rating' ORDER BY seq DESC LIMIT 1",
            (dev.id, ev.epoch, ev.seq),
        ).fetchone()
        return row is not None and row[0] == ev.boot and ev.mono_ms - int(row[1]) < self.burst_gap_ms

    def _advance(
        self, conn: sqlite3.Connection, touched: dict[tuple[str, str], set[int]]
    ) -> dict[tuple[str, str], int]:
        acks = {}
        for (device, epoch), seqs in touched.items():
            after = upto = self._upto(conn, device, epoch)
            while (upto + 1) in seqs or _exists(conn, device, epoch, upto + 1):
                upto += 1
            handover.hand_over(conn, self.hall, device, epoch, after, upto, self._fresh.get((device, epoch), {}))
            conn.execute(
                "INSERT INTO epochs (device, epoch, upto, first_ms, last_ms) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(device, epoch) DO UPDATE SET upto = excluded.upto, last_ms = excluded.last_ms",
                (device, epoch, upto, now_ms(), now_ms()),
            )
            acks[(device, epoch)] = upto
        return acks

    def _upto(self, conn: sqlite3.Connection, device: str, epoch: str) -> int:
        cached = self._uptos.get((device, epoch))
        if cached is not None:
            return cached
        row = conn.execute("SELECT upto FROM epochs WHERE device = ? AND epoch = ?", (device, epoch)).fetchone()
        return 0 if row is None else int(row[0])


def _to_hand_over(event_id: int, dev: Device, ev: Event, status: str, t_ms: int, day: str) -> handover.Rated | None:
    """The rating to hand over upstream once the ack point passes it; None for anything else."""
    if ev.kind != Kind.RATING or status == EventStatus.REFUSED or ev.level is None:
        return None
    return handover.Rated(
        event_id, dev.id, ev.epoch, ev.seq, dev.window, ev.item, ev.case, ev.staff, ev.level, status, t_ms, day
    )


def _exists(conn: sqlite3.Connection, device: str, epoch: str, seq: int) -> bool:
    sql = "SELECT 1 FROM events WHERE device = ? AND epoch = ? AND seq = ?"
    return conn.execute(sql, (device, epoch, seq)).fetchone() is not None


def _local_case(dev: Device, ev: Event) -> bool:
    """A case number this terminal made itself with its staff key: ``{device}-{epoch[:8]}-{seq}``."""
    return ev.case is not None and ev.case.startswith(f"{dev.id}-{ev.epoch[:8]}-")


def _case_verdict(conn: sqlite3.Connection, dev: Device, ev: Event) -> tuple[str, str | None]:
    """A rating bound to a case (SPEC section 10, "Cases belong to their window"): accepted once
    for an open case of this terminal's window; ``refused`` for a second rating of it; ``flagged``
    for a case of another window, a cancelled case, or one the hub never opened. The case table
    decides, so a flagged rating never makes a later genuine one look like a second rating."""
    if ev.trigger == Trigger.STAFF and not _local_case(dev, ev):
        return EventStatus.FLAGGED, "unknown_case"
    case = get_case(conn, ev.case or "")
    if case is None:
        # A staff-key case is created by its staff event, which may still be behind a gap.
        return (EventStatus.ACCEPTED, None) if ev.trigger == Trigger.STAFF else (EventStatus.FLAGGED, "unknown_case")
    if case["window"] != dev.window:
        return EventStatus.FLAGGED, "wrong_window"
    if case["status"] == CaseStatus.CANCELLED:
        return EventStatus.FLAGGED, "case_cancelled"
    if case["status"] == CaseStatus.RATED:
        return EventStatus.REFUSED, "case_already_rated"
    return EventStatus.ACCEPTED, None


def _track_case(conn: sqlite3.Connection, dev: Device, ev: Event, status: str, event_id: int, t_ms: int) -> None:
    """A staff event opens its local case; an accepted rating closes its case as rated. Nothing
    else touches cases: a flagged rating neither creates nor closes one."""
    if ev.case is None or status != EventStatus.ACCEPTED or ev.kind not in (Kind.STAFF, Kind.RATING):
        return
    if ev.trigger == Trigger.STAFF:
        conn.execute(
            "INSERT OR IGNORE INTO cases (case_no, window, device, item, staff, source, status, opened_ms) "
            "VALUES (?, ?, ?, ?, ?, 'staff', 'open', ?)",
            (ev.case, dev.window, dev.id, ev.item, ev.staff, t_ms),
        )
    if ev.kind == Kind.RATING:
        conn.execute(
            "UPDATE cases SET status = 'rated', rated_event = ?, closed_ms = ? WHERE case_no = ? AND status = 'open'",
            (event_id, t_ms, ev.case),
        )


def _tally(delta: TallyDelta, key: tuple[str, str, str, str, str], ev: Event, status: str) -> None:
    delta.add(key, "events")
    if ev.kind == Kind.RATING:
        if status == EventStatus.REFUSED:
            delta.add(key, "refused")
            return
        delta.add(key, f"lv_{ev.level}")
        if ev.case is not None and status == EventStatus.ACCEPTED:
            delta.add(key, "rated")
        if status == EventStatus.FLAGGED:
            delta.add(key, f"fl_{ev.level}")
            delta.add(key, "flagged")
    elif ev.kind == Kind.IGNORED:
        delta.add(key, "ignored")
    elif ev.kind == Kind.STAFF and status == EventStatus.ACCEPTED:
        delta.add(key, "cases")


def _count_frames(conn: sqlite3.Connection, frames: Counter[tuple[str, str]], at_ms: int) -> None:
    conn.executemany(
        "INSERT INTO frame_counts (outcome, device, n, last_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(outcome, device) DO UPDATE SET n = n + excluded.n, last_ms = excluded.last_ms",
        [(outcome, device, n, at_ms) for (outcome, device), n in frames.items()],
    )


class _MessageFailed(Exception):
    """Handling one message raised: (topic, error), both cut short for the log."""


def _cut(text: str, limit: int = 160) -> str:
    """A logged value cut short: input may be up to 64 KiB."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _device_of(hall: str, topic: str) -> str:
    try:
        return parse_topic(hall, topic)[0]
    except BadTopic:
        return ""
