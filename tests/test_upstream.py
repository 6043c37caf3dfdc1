"""Upstream sync without a broker: outbox rows written by ingest, the national adapter, the
sender against the real regional simulator over loopback HTTP (failing, down, refusing)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner

from haocha.cli import main
from hub.stats import stats
from hub.upstream import outbox
from hub.upstream.adapters import Context, NationalAdapter
from hub.upstream.sender import Sender
from hub.upstream.totals import queue_totals
from simulators.hall import wait_for
from simulators.regional import RegionalSim

from .upstream_helpers import EPOCH, TZ, bodies, ingest, make_home, outbox_rows, rating, reason, status


def test_ingest_queues_each_rating_once_and_merges_its_reasons(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1), rating(2, "very_dissatisfied"), reason(3, 2, ("cold", "lazy"))])
    ingest(store, [rating(1), reason(3, 2)])  # duplicates change nothing
    assert outbox_rows(store) == [
        (f"H1-T01-{EPOCH}-1", "evaluation", "pending"),
        (f"H1-T01-{EPOCH}-2", "evaluation", "pending"),
        (f"H1-T01-{EPOCH}-2#0", "ticket", "pending"),
    ]
    body = bodies(store)[1]
    assert body["reasons"] == ["cold", "lazy"] and body["level"] == "very_dissatisfied"
    assert store.conn.execute("SELECT body FROM outbox WHERE kind = 'evaluation'").fetchall() == [(None,), (None,)]


def test_a_reason_stored_before_its_rating_is_picked_up(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [reason(2, 1, ("shirk",))])  # the rating's message was lost and comes later
    ingest(store, [rating(1, "dissatisfied")])
    assert bodies(store)[0]["reasons"] == ["shirk"]
    assert store.conn.execute("SELECT reasons FROM tickets").fetchone()[0] == '["shirk"]'


def test_a_reason_after_the_record_was_sent_becomes_an_update(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1, "dissatisfied")])
    with store.transaction() as conn:
        outbox.mark_sent(conn, [1])
    ingest(store, [reason(2, 1, ("greedy",))])
    assert [r[1:] for r in outbox_rows(store)] == [("evaluation", "sent"), ("ticket", "pending"), ("update", "pending")]
    assert outbox.counts(store.conn) == {"pending": 2, "sent": 1, "parked": 0}


def test_national_adapter_maps_levels_the_upstream_way_round_and_uses_local_time(tmp_path: Path) -> None:
    config, store = make_home(tmp_path)
    ingest(store, [rating(1, "very_satisfied", case="C1"), rating(2, "very_dissatisfied"), reason(3, 2, ("cold",))])
    ctx = Context(TZ, config.upstream.reason_codes, {"W01": "市场监管局"})
    rows = outbox.pending(store.conn, 10, "H1")
    best, worst = (NationalAdapter().encode("evaluation", r.body, ctx) for r in rows[:2])
    assert (best["satisfaction"], worst["satisfaction"]) == (5, 1)  # 5 = 非常满意, 1 = 非常不满意
    assert best["assessTime"] == "2026-11-20 09:30:00"  # hall local time, not UTC (01:30)
    assert (best["pf"], best["assessNumber"], best["projectNo"], best["taskCode"]) == (5, 1, "C1", "ITEM-1")
    assert (best["proManager"], best["proDepart"], best["evalDetail"]) == ("S01", "市场监管局", "")
    assert worst["evalDetail"] == "501" and worst["projectNo"] == f"H1-T01-{EPOCH}-2"


def _run_sender(tmp: Path, sim: RegionalSim, **upstream: object) -> Sender:
    config, store = make_home(tmp, url=sim.url, **upstream)
    store.close()
    sender = Sender(config, tmp)
    sender.start()
    return sender


def test_flaky_then_down_then_back_every_record_arrives_once_in_order(tmp_path: Path) -> None:
    sim = RegionalSim(fail_rate=0.5, seed=7).start()
    config, store = make_home(tmp_path, ("W01", "W02"), url=sim.url, batch_size=25)
    with Sender(config, tmp_path) as sender:
        sender.start()
        for n in range(1, 301, 20):  # ratings keep arriving on two windows while the sender works
            ingest(store, [rating(s) for s in range(n, n + 20)], "T01")
            ingest(store, [rating(s, "basic", epoch="fedcba9876543210") for s in range(n, n + 20)], "T02")
        wait_for(lambda: sim.state.summary()["records"] >= 200, 30, "some records through the flaky link")
        sim.stop()  # down for a long stretch (connection refused)
        ingest(store, [rating(s) for s in range(301, 401)], "T01")
        wait_for(lambda: sender.failures >= 5, 30, "the sender to retry against the dead link")
        sim.start()
        wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 60, "the outbox to drain")
    summary = sim.state.summary()
    assert summary["records"] == 700 and summary["conflicts"] == 0 and summary["rejected"] == 0
    assert summary["failed"] > 0 and summary["duplicates"] > 0  # dropped answers were resent, as resends
    arrived = sim.state.in_order()
    for device, window in (("T01", "W01"), ("T02", "W02")):
        seqs = [int(r["recordId"].rsplit("-", 1)[1]) for r in arrived if r["windowNo"] == window]
        assert seqs == list(range(1, 401 if device == "T01" else 301)), window
    assert outbox.counts(store.conn) == {"pending": 0, "sent": 700, "parked": 0}
    sim.stop()


def test_a_refused_record_is_parked_with_its_reason_and_the_rest_flow(tmp_path: Path) -> None:
    with RegionalSim() as sim:
        config, store = make_home(tmp_path, url=sim.url, reason_codes={"cold": "C-1"})
        ingest(store, [rating(1), rating(2, "dissatisfied"), reason(3, 2, ("cold",)), rating(4)])
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 20, "the outbox to drain")
        assert outbox.counts(store.conn) == {"pending": 0, "sent": 2, "parked": 2}  # the rating and its ticket
        parked = outbox.parked(store.conn)
        assert {p["kind"] for p in parked} == {"evaluation", "ticket"}
        assert all("evalDetail" in p["reason"] for p in parked), parked
        assert sim.state.summary()["records"] == 2
        home = ["--home", str(tmp_path)]
        out = CliRunner().invoke(main, ["upstream", "status", *home, "--format", "json"])
        assert json.loads(out.stdout) == {"pending": 0, "sent": 2, "parked": 2}
        listed = CliRunner().invoke(main, ["upstream", "parked", *home, "--format", "json"]).stdout
        assert "evalDetail must be comma-separated 3-digit codes" in listed


def test_a_whole_request_refused_is_split_to_find_the_bad_record(tmp_path: Path) -> None:
    with RegionalSim() as sim:
        config, store = make_home(tmp_path, url=sim.url)
        ingest(store, [rating(s) for s in range(1, 6)])
        sim.state.control["reject_ids"] = [f"H1-T01-{EPOCH}-3"]
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 20, "the outbox to drain")
        assert outbox.counts(store.conn)["parked"] == 1 and sim.state.summary()["records"] == 4


def test_hmac_signature_is_checked_and_a_wrong_secret_is_retried_not_parked(tmp_path: Path) -> None:
    with RegionalSim(secret="s3cret") as sim:
        config, store = make_home(tmp_path, url=sim.url, signing="hmac-sha256", secret="wrong", app_id="hall-1")
        ingest(store, [rating(1)])
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: sender.failures >= 2, 10, "401s to be retried")
        assert outbox.counts(store.conn) == {"pending": 1, "sent": 0, "parked": 0}
        good = dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, secret="s3cret"))
        with Sender(good, tmp_path) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["sent"] == 1, 10, "the signed request to pass")


def test_totals_sent_upstream_match_the_hub_stats(tmp_path: Path) -> None:
    with RegionalSim(fail_rate=0.3, seed=2) as sim:
        config, store = make_home(tmp_path, ("W01", "W02"), url=sim.url)
        levels = ["very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"]
        ingest(store, [rating(s, levels[s % 5], case=f"C{s}" if s % 3 else None) for s in range(1, 41)], "T01")
        ingest(store, [rating(s, levels[s % 2]) for s in range(1, 11)], "T02")
        day = dt.date(2026, 11, 20)
        assert queue_totals(store, config, "month", day) == 3
        assert queue_totals(store, config, "month", day) == 3  # replaces the pending copies
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 30, "the outbox to drain")
        sent = {(t["windowNo"], t["taskCode"]): t for t in sim.state.totals.values()}
        hub = stats(store, ["window", "item"], day.replace(day=1), day.replace(day=30))["rows"]
        assert len(sent) == len(hub) == 3
        for row in hub:
            t = sent[(row["window"], row["item"])]
            assert (t["cases"], t["evaluations"], t["badRate"]) == (row["cases"], row["evaluations"], row["bad_rate"])
            assert t["levels"]["5"] == row["levels"]["very_satisfied"] and t["period"] == "2026-11"


def test_sim_regional_command_serves_and_fails_on_demand(tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from simulators.hall import free_port, port_open

    port = free_port()
    cmd = [sys.executable, "-m", "haocha", "sim", "regional", "--listen", f"127.0.0.1:{port}", "--fail-rate", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: port_open(port), 15, "the simulator to listen")
        base = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(f"{base}/api/v1/evaluations", data=b'{"records": [{}]}', method="POST")
        for _ in range(4):  # every request fails: a 503 at once, or a dropped answer
            try:
                urllib.request.urlopen(request, timeout=5)
                raise AssertionError("a request passed with --fail-rate 1")
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
            except OSError:
                pass  # the answer was dropped
        with urllib.request.urlopen(f"{base}/sim/summary", timeout=5) as answer:
            summary = json.loads(answer.read())
        assert (summary["records"], summary["duplicates"]) == (0, 0) and summary["requests"] == 4
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_batches_keep_evaluations_in_order_and_tickets_after_their_rating() -> None:
    from hub.upstream.sender import choose_batch

    def row(i: int, kind: str) -> outbox.OutboxRow:
        return outbox.OutboxRow(i, f"r{i}", kind, "W01", {}, 0)

    window = [row(1, "evaluation"), row(2, "ticket"), row(3, "evaluation"), row(4, "update"), row(5, "ticket")]
    adapter = NationalAdapter()
    assert [r.id for r in choose_batch(window, adapter, 10)] == [1, 3, 4]
    assert [r.id for r in choose_batch(window, adapter, 2)] == [1, 3]
    tickets_first = [row(2, "ticket"), row(5, "totals"), row(6, "ticket"), row(7, "evaluation"), row(8, "ticket")]
    assert [r.id for r in choose_batch(tickets_first, adapter, 10)] == [2, 6]  # not past evaluation 7


def test_a_record_the_adapter_cannot_encode_is_parked_not_blocking(tmp_path: Path) -> None:
    with RegionalSim() as sim:
        config, store = make_home(tmp_path, url=sim.url)
        ingest(store, [rating(1), rating(2)])
        with store.transaction() as conn:  # a level this adapter has no code for
            conn.execute("UPDATE events SET level = 'superb' WHERE seq = 1")
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 20, "the outbox to drain")
        assert outbox.counts(store.conn) == {"pending": 0, "sent": 1, "parked": 1}
        assert "cannot encode for national: KeyError" in outbox.parked(store.conn)[0]["reason"]


def test_answers_slower_than_the_timeout_are_resent_as_the_same_records(tmp_path: Path) -> None:
    with RegionalSim() as sim:
        sim.state.control["slow_s"] = 0.4  # committed, but answered after the client gave up
        config, store = make_home(tmp_path, url=sim.url, timeout_s=0.2)
        ingest(store, [rating(s) for s in range(1, 11)])
        with Sender(config, tmp_path) as sender:
            sender.start()
            wait_for(lambda: sim.state.summary()["records"] == 10 and sender.failures >= 1, 10, "a timed-out commit")
            sim.state.control["slow_s"] = 0.0
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 20, "the outbox to drain")
        summary = sim.state.summary()
        assert (summary["records"], summary["conflicts"]) == (10, 0) and summary["duplicates"] >= 10


def test_metrics_report_the_outbox(tmp_path: Path) -> None:
    from collections.abc import Iterator

    from prometheus_client.core import CollectorRegistry, Metric
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector as Collector_

    from hub.upstream.metrics import upstream_metrics

    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1), rating(2), rating(4)])  # 3 is missing: 4 is held behind the gap
    with store.transaction() as conn:
        outbox.park(conn, 1, "bad")
        outbox.mark_sent(conn, [2])

    class Collector(Collector_):
        def collect(self) -> Iterator[Metric]:
            return upstream_metrics(store.conn)

    registry = CollectorRegistry()
    registry.register(Collector())
    text = generate_latest(registry).decode()
    assert "haocha_upstream_pending 1.0" in text and "haocha_upstream_sent_total 1.0" in text
    assert "haocha_upstream_held 1.0" in text
    assert 'haocha_upstream_parked{kind="evaluation"} 1.0' in text


def test_a_reason_arriving_while_its_record_is_in_flight_is_not_lost(tmp_path: Path) -> None:
    _cfg, store = make_home(tmp_path)
    ingest(store, [rating(1, "dissatisfied")])
    in_flight = outbox.pending(store.conn, 10, "H1")  # the sender posted these (without the reason) ...
    ingest(store, [reason(2, 1, ("lazy",))])  # ... when the reason was stored
    with store.transaction() as conn:
        outbox.settle_sent(conn, in_flight)
    rows = [(r.kind, status(store, r.id), r.body["reasons"]) for r in outbox.read(store.conn, "H1", "1")]
    assert rows == [
        ("evaluation", "sent", ["lazy"]),
        ("ticket", "sent", ["lazy"]),
        ("update", "pending", ["lazy"]),
        ("ticket", "pending", ["lazy"]),
    ]
