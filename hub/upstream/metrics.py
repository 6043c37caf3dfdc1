"""Prometheus metrics of the upstream outbox, for the hub's ``/metrics`` collector to yield.

Read at scrape time from the database (partial indexes and a counter), so any process that can
open ``hub.db`` reports the same numbers as ``haocha upstream status``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import outbox


def upstream_metrics(conn: sqlite3.Connection) -> Iterator[Metric]:
    counts = outbox.counts(conn)
    yield GaugeMetricFamily("haocha_upstream_pending", "Outbox records waiting to be sent", value=counts["pending"])
    yield GaugeMetricFamily(
        "haocha_upstream_held",
        "Ratings (counted in pending) waiting for a gap in their terminal's sequence to fill",
        value=outbox.held(conn),
    )
    yield CounterMetricFamily("haocha_upstream_sent", "Outbox records the regional system took", value=counts["sent"])
    parked = GaugeMetricFamily(
        "haocha_upstream_parked", "Records the regional system refused as invalid, by kind", labels=["kind"]
    )
    for kind, n in conn.execute("SELECT kind, count(*) FROM outbox WHERE status = 'parked' GROUP BY kind"):
        parked.add_metric([kind], n)
    yield parked
    oldest = conn.execute("SELECT min(created_ms) FROM outbox WHERE status = 'pending'").fetchone()[0]
    yield GaugeMetricFamily(
        "haocha_upstream_oldest_pending_ms", "Queue time (epoch ms) of the oldest pending record; 0: none",
        value=oldest or 0,
    )  # fmt: skip
