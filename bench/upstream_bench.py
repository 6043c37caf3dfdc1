"""Upstream figures: ingest cost of handing ratings over to the outbox (records and tickets), sender
throughput, and drain time after an outage, against the regional simulator on loopback.
Run: ``python -m bench.upstream_bench [N]``."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from hub import handover
from hub.ingest import Incoming, Ingestor
from hub.upstream import outbox
from hub.upstream.sender import Sender
from protocol.frames import encode_batch
from simulators.hall import wait_for
from simulators.regional import RegionalSim
from simulators.upstream_data import EPOCH, KEY, T0, TZ, make_home, rating


def _ingest(home: Path, n: int, epoch: str = EPOCH) -> float:
    from hub.store import Store

    levels = ["very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"]
    with Store(home / "hub.db") as store:
        ingestor = Ingestor(store, "H1", TZ)
        start = time.perf_counter()
        for first in range(1, n + 1, 200):
            events = [rating(s, levels[s % 5], epoch) for s in range(first, min(first + 200, n + 1))]
            ingestor.ingest([Incoming("haocha/v1/H1/T01/ev", encode_batch(KEY, "H1", "T01", events), T0)])
        return n / (time.perf_counter() - start)


def _drain(home: Path, sim: RegionalSim, batch: int) -> float:
    from hub.config import HubConfig
    from hub.store import Store
    from protocol.config import build

    fast = {"poll_s": 0.01, "backoff_initial_s": 0.05, "backoff_max_s": 1.0, "totals_interval_s": 0.0}
    config = build(HubConfig, {"hall": "H1", "upstream": {"url": sim.url, "batch_size": batch, **fast}}, "bench")
    with Store(home / "hub.db") as store:
        start = time.perf_counter()
        with Sender(config, home) as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 600, "the drain", interval=0.01)
        return time.perf_counter() - start


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        make_home(home)[1].close()
        with_hook = _ingest(home, n)
        original = handover.hand_over
        handover.hand_over = lambda *a, **k: None  # baseline: ingest that queues no record and opens no ticket
        without = _ingest(home, n, "fedcba9876543210")
        handover.hand_over = original
        print(f"ingest with outbox+tickets: {with_hook:,.0f} ev/s; without: {without:,.0f} ev/s")
        pending = outbox.counts(__import__("sqlite3").connect(home / "hub.db"))["pending"]
        with RegionalSim() as sim:
            secs = _drain(home, sim, 100)
            print(f"sent {pending:,} records (batch 100, healthy link) in {secs:.2f}s: {pending / secs:,.0f} records/s")
            assert sim.state.summary()["records"] == n
        with tempfile.TemporaryDirectory() as tmp2:
            flaky_home = Path(tmp2)
            make_home(flaky_home)[1].close()
            _ingest(flaky_home, n)
            with RegionalSim(fail_rate=0.5, seed=1) as sim:
                secs = _drain(flaky_home, sim, 100)
                summary = sim.state.summary()
                print(
                    f"sent {pending:,} records with half the requests failing in {secs:.2f}s: "
                    f"{pending / secs:,.0f} records/s; upstream summary {summary}"
                )
                assert summary["records"] == n and summary["conflicts"] == 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
