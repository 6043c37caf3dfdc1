"""Ingest, dedupe, acks and counters against a real hub database, without a broker."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.cases import CaseRequest, cancel_case, open_case
from hub.ingest import Incoming, Ingestor
from hub.stats import stats
from hub.store import Store
from hub.store import registry as reg
from hub.store.tallies import segments
from protocol.frames import Event, encode_batch

KEY = bytes(range(32))
EPOCH = "0123456789abcdef"
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "hub.db", create=True)
    reg.add_window(s, "W01", "一号窗", None)
    reg.insert_device(s, "T01", "W01", "gpio", "free", KEY.hex(), "x")
    return s


def rating(
    seq: int,
    level: str = "satisfied",
    case: str | None = None,
    wall_ms: int = 1_790_000_000_000,
    epoch: str = EPOCH,
    item: str | None = None,
) -> Event:
    return Event(
        epoch=epoch,
        seq=seq,
        kind="rating",
        window="W01",
        level=level,
        trigger="invite" if case else "free",
        case=case,
        item=item,
        boot="b",
        wall_ms=wall_ms,
        synced=True,
        age_ms=3,
    )


def message(events: list[Event], device: str = "T01", key: bytes = KEY) -> Incoming:
    return Incoming(f"haocha/v1/H1/{device}/ev", encode_batch(key, "H1", device, events), 1_790_000_000_000)


def ingest(store: Store, *messages: Incoming) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    result = Ingestor(store, "H1", TZ).ingest(list(messages))
    return result.acks, dict(result.counts)


def test_duplicates_are_acked_not_stored_and_gaps_hold_the_ack(store: Store) -> None:
    acks, counts = ingest(store, message([rating(1), rating(2)]), message([rating(2), rating(4)]))
    assert acks == {("T01", EPOCH): 2} and counts == {"stored": 3, "duplicate": 1}
    acks, counts = ingest(store, message([rating(3)]))
    assert acks == {("T01", EPOCH): 4}
    assert stats(store, ["device"], None, None)["rows"][0]["events"] == 4


def test_every_reject_is_counted_and_nothing_is_stored(store: Store) -> None:
    good = rating(1)
    wrong_key = message([good], key=b"k" * 32)
    unknown = message([good], device="T99")
    malformed = Incoming("haocha/v1/H1/T01/ev", b"{nope", 0)
    oversize = Incoming("haocha/v1/H1/T01/ev", b"x" * 70_000, 0)
    bad_topic = Incoming("haocha/v1/H2/T01/ev", b"{}", 0)
    acks, counts = ingest(store, wrong_key, unknown, malformed, oversize, bad_topic)
    assert acks == {}
    assert counts == {"bad_mac": 1, "unknown_device": 1, "malformed": 1, "oversize": 1, "bad_topic": 1}
    assert store.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_revoked_device_is_rejected(store: Store) -> None:
    reg.revoke_device(store, "T01")
    _acks, counts = ingest(store, message([rating(1)]))
    assert counts == {"revoked": 1}


def test_second_rating_of_a_case_is_stored_as_refused_and_counted_apart(store: Store) -> None:
    open_case(store, CaseRequest("C1", "W01"), 60, TZ)
    ingest(store, message([rating(1, "satisfied", case="C1"), rating(2, "very_dissatisfied", case="C1")]))
    row = stats(store, ["window"], None, None)["rows"][0]
    assert (row["cases"], row["evaluations"], row["refused"], row["rated"], row["events"]) == (1, 1, 1, 1, 2)
    assert row["levels"]["very_dissatisfied"] == 0 and row["evaluation_rate"] == 1.0


def test_ratings_of_cases_the_hub_did_not_open_are_flagged(store: Store) -> None:
    open_case(store, CaseRequest("C2", "W01"), 60, TZ)
    cancel_case(store, "C2")
    ingest(store, message([rating(1, "satisfied", case="FORGED"), rating(2, "basic", case="C2")]))
    reasons = dict(store.conn.execute("SELECT case_no, status_reason FROM events").fetchall())
    assert reasons == {"FORGED": "unknown_case", "C2": "case_cancelled"}
    total = stats(store, ["window"], None, None)["total"]
    assert (total["evaluations"], total["flagged"], total["rated"], total["satisfaction_rate"]) == (2, 2, 0, None)


def test_unsynced_clock_time_is_derived_from_receipt_and_age(store: Store) -> None:
    event = Event(
        epoch=EPOCH,
        seq=1,
        kind="rating",
        level="basic",
        trigger="free",
        boot="b",
        wall_ms=0,
        synced=False,
        age_ms=5_000,
    )
    ingest(store, message([event]))
    t_ms, source, day = store.conn.execute("SELECT t_ms, t_source, day FROM events").fetchone()
    assert (t_ms, source) == (1_790_000_000_000 - 5_000, "derived")
    assert day == dt.datetime.fromtimestamp(t_ms / 1000, TZ).date().isoformat()


def test_counters_equal_a_scan_of_the_events_for_any_range(store: Store) -> None:
    """Counters with month and year roll-ups answer any date range like a full scan would."""
    rng = random.Random(7)
    start = dt.datetime(2023, 11, 20, tzinfo=TZ)
    levels = ["very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"]
    events = [
        rating(
            i + 1,
            rng.choice(levels),
            wall_ms=int((start + dt.timedelta(hours=rng.randrange(24 * 800))).timestamp() * 1000),
            item=rng.choice(["A", "B", None]),
        )
        for i in range(3000)
    ]
    ingest(store, *(message(events[i : i + 100]) for i in range(0, len(events), 100)))
    for _ in range(40):
        a = dt.date(2023, 11, 1) + dt.timedelta(days=rng.randrange(900))
        b = a + dt.timedelta(days=rng.randrange(500))
        got = {r["item"]: r["evaluations"] for r in stats(store, ["item"], a, b)["rows"] if r["evaluations"]}
        scan = dict(
            store.conn.execute(
                "SELECT coalesce(item, ''), count(*) FROM events WHERE day BETWEEN ? AND ? GROUP BY 1",
                (a.isoformat(), b.isoformat()),
            ).fetchall()
        )
        assert got == scan, (a, b)


def test_segments_split_ranges_into_years_months_and_days() -> None:
    assert segments(dt.date(2024, 3, 15), dt.date(2026, 2, 10), False) == [
        ("d", "2024-03-15", "2024-03-31"),
        ("m", "2024-04", "2024-12"),
        ("y", "2025", "2025"),
        ("m", "2026-01", "2026-01"),
        ("d", "2026-02-01", "2026-02-10"),
    ]
    assert segments(None, None, False) == [("y", "0001", "9999")]
    assert segments(dt.date(2025, 1, 1), dt.date(2025, 1, 2), True) == [("d", "2025-01-01", "2025-01-02")]


def test_bursts_are_flagged_in_seq_order_whatever_the_arrival_order(tmp_path: Path) -> None:
    def free(seq: int, mono_ms: int) -> Event:
        return Event(epoch=EPOCH, seq=seq, kind="rating", level="basic", trigger="free", boot="b", mono_ms=mono_ms,
                     wall_ms=1_790_000_000_000, synced=True, age_ms=0)  # fmt: skip

    presses = [free(1, 0), free(2, 500), free(3, 5_000), free(4, 5_100)]  # 2 and 4 come too soon
    for order in ([0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0]):
        s = Store(tmp_path / f"hub-{order}.db", create=True)
        reg.add_window(s, "W01", "一号窗", None)
        reg.insert_device(s, "T01", "W01", "gpio", "free", KEY.hex(), "x")
        ingestor = Ingestor(s, "H1", TZ, burst_gap_s=1.0)
        for i in order:
            ingestor.ingest([message([presses[i]])])
        flagged = [seq for (seq,) in s.conn.execute("SELECT seq FROM events WHERE status = 'flagged' ORDER BY seq")]
        total = stats(s, ["window"], None, None)["total"]
        assert (flagged, total["flagged"], total["evaluations"]) == ([2, 4], 2, 4), order
        s.close()


def test_rates_leave_flagged_ratings_out(store: Store) -> None:
    ingest(store, message([rating(1, "very_satisfied"), rating(2, "dissatisfied")]))
    store.conn.execute("UPDATE tallies SET fl_dissatisfied = 1, flagged = 1")
    total = stats(store, ["window"], None, None)["total"]
    assert (total["evaluations"], total["flagged"], total["bad_rate"], total["satisfaction_rate"]) == (2, 1, 0.0, 1.0)
    assert total["evaluation_rate"] is None and total["mean_score"] == 5.0
