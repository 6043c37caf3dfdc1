"""Upstream order per window when a terminal's sequence has a gap, the hold on ratings behind a
gap, pruning of sent records, and the migration to body-less rating records."""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from hub.ingest import Ingestor
from hub.store import Store, now_ms
from hub.store.schema import MIGRATIONS, migrate
from hub.upstream import outbox
from hub.upstream.sender import Sender
from simulators.hall import wait_for
from simulators.regional import RegionalSim

from .upstream_helpers import EPOCH, T0, TZ, bodies, ingest, make_home, outbox_rows, rating, reason


def _seqs(store: Store, kind: str = "evaluation") -> list[int]:
    return [int(rid.rsplit("-", 1)[1].split("#")[0]) for rid, k, _ in outbox_rows(store) if k == kind]


def test_ratings_behind_a_gap_wait_for_it_and_go_in_seq_order(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1), rating(2), rating(4, "dissatisfied"), rating(5)])  # 3 was lost on the way
    assert _seqs(store) == [1, 2] and _seqs(store, "ticket") == []
    assert outbox.counts(store.conn) == {"pending": 4, "sent": 0, "parked": 0}  # 4 and 5 are held, not sent
    assert outbox.held(store.conn) == 2
    ingest(store, [rating(3)])  # the terminal resends it
    assert _seqs(store) == [1, 2, 3, 4, 5] and _seqs(store, "ticket") == [4]
    kinds = [k for _, k, _ in outbox_rows(store)]
    assert kinds.index("ticket") > kinds.index("evaluation") + 3  # after the rating it is about
    assert outbox.held(store.conn) == 0


def test_a_gap_that_never_fills_hands_over_what_waits_behind_it(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1), rating(3, "very_dissatisfied"), reason(4, 3, ("greedy",)), rating(5)])
    ingestor = Ingestor(store, "H1", TZ)
    assert ingestor.hand_over_held(T0) == 0  # received at T0: not held long enough yet
    assert ingestor.hand_over_held(T0 + 1) == 2
    assert _seqs(store) == [1, 3, 5] and _seqs(store, "ticket") == [3]
    assert [b["reasons"] for b in bodies(store) if b.get("seq") == 3] == [["greedy"]]
    assert store.conn.execute("SELECT reasons FROM tickets").fetchone()[0] == '["greedy"]'
    ingest(store, [rating(2)])  # the gap fills after all: 2 goes, nothing goes twice
    assert _seqs(store) == [1, 3, 5, 2] and _seqs(store, "ticket") == [3]
    assert outbox.counts(store.conn) == {"pending": 5, "sent": 0, "parked": 0}


def test_a_reason_for_a_held_rating_travels_with_it(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(2, "dissatisfied")])
    ingest(store, [reason(3, 2, ("shirk",))])
    assert outbox_rows(store) == []  # 1 is missing: nothing released, no update queued for 2
    ingest(store, [rating(1)])
    assert [(b["seq"], b["reasons"]) for b in bodies(store)[:2]] == [(1, []), (2, ["shirk"])]
    assert [k for _, k, _ in outbox_rows(store)] == ["evaluation", "evaluation", "ticket"]


def test_sent_records_are_pruned_and_a_late_change_still_goes_as_an_update(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1), rating(2, "dissatisfied")])
    with store.transaction() as conn:
        outbox.mark_sent(conn, [1, 2, 3])
        assert outbox.prune_sent(conn, now_ms() - 60_000) == 0  # too recent
        assert outbox.prune_sent(conn, now_ms() + 1, limit=2) == 2
        assert outbox.prune_sent(conn, now_ms() + 1) == 1
    assert outbox.counts(store.conn) == {"pending": 0, "sent": 3, "parked": 0}
    ingest(store, [reason(3, 2, ("cold",))])  # its record was sent and pruned
    assert outbox_rows(store) == [(f"H1-T01-{EPOCH}-2", "update", "pending")]
    assert bodies(store)[0]["reasons"] == ["cold"]


def test_the_regional_system_gets_each_window_in_seq_order_across_a_late_gap(tmp_path: Path) -> None:
    with RegionalSim(fail_rate=0.3, seed=5) as sim:
        config, store = make_home(tmp_path, url=sim.url, batch_size=7)
        ingest(store, [rating(s) for s in range(1, 41) if s not in (10, 11, 25)])
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: sim.state.summary()["records"] >= 9, 20, "the prefix before the gap to arrive")
            ingest(store, [rating(25), rating(11)])
            ingest(store, [rating(10)])
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 30, "the outbox to drain")
        seqs = [int(r["recordId"].rsplit("-", 1)[1]) for r in sim.state.in_order()]
        assert seqs == list(range(1, 41))


def test_migration_keeps_queued_records_and_their_order(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    db = sqlite_utils.Database(path)
    for number, migration in enumerate(MIGRATIONS[:3], start=1):  # a hub.db from before lazy bodies
        migration(db)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute(
        "INSERT INTO outbox (id, record_id, kind, lane, event_id, body, created_ms) "
        "VALUES (7, 'T#0', 'ticket', 'W01', NULL, '{\"x\": 1}', 1)"
    )
    db.conn.commit()
    assert migrate(db) == len(MIGRATIONS)
    assert list(db.execute("SELECT id, record_id, body FROM outbox")) == [(7, "T#0", '{"x": 1}')]
    index = db.execute("SELECT sql FROM sqlite_master WHERE name = 'outbox_rating'").fetchone()[0]
    assert "UNIQUE" in index and "event_id" in index
