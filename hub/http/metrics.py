"""``GET /metrics``: Prometheus text format, read from the hub database at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..broker import refused_logins
from ..store import Store
from ..store.registry import stored_state
from ..upstream.metrics import upstream_metrics


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        conn = self.store.conn
        frames = CounterMetricFamily(
            "haocha_frames", "Events stored and duplicates, frames rejected by reason", labels=["outcome"]
        )
        for outcome, n in conn.execute("SELECT outcome, sum(n) FROM frame_counts GROUP BY outcome"):
            frames.add_metric([outcome], n)
        yield frames
        stored = conn.execute("SELECT coalesce(sum(n), 0) FROM frame_counts WHERE outcome = 'stored'").fetchone()[0]
        yield CounterMetricFamily("haocha_events_stored", "Events stored by the hub", value=stored)
        yield from self._devices()
        pending = conn.execute("SELECT count(*) FROM commands WHERE published_ms IS NULL").fetchone()[0]
        yield GaugeMetricFamily("haocha_commands_pending", "Invitations and commands not yet published", value=pending)
        yield from upstream_metrics(conn)

    def _devices(self) -> Iterator[Metric]:
        online = backlog = total = 0
        for revoked, state in self.store.conn.execute("SELECT revoked, state FROM devices"):
            if revoked:
                continue
            total += 1
            parsed = stored_state(state)
            online += parsed.get("online") is True
            backlog += parsed.get("backlog", 0) if parsed.get("online") else 0
        yield GaugeMetricFamily("haocha_devices", "Provisioned terminals (not revoked)", value=total)
        yield GaugeMetricFamily("haocha_devices_online", "Terminals whose retained state says online", value=online)
        yield GaugeMetricFamily(
            "haocha_terminal_backlog", "Unacknowledged events reported by online terminals", value=backlog
        )


class BrokerCollector(Collector):
    """What ``broker run`` counted in Mosquitto's log. Mosquitto 2.0 names no user for a refused
    login, so this is one total (wrong password, unknown or revoked user, no user name)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "haocha_broker_logins_refused",
            "Broker logins refused (bad credentials), counted by `haocha broker run`",
            value=refused_logins(self.store),
        )


class IngestCollector(Collector):
    """The running daemon's writer, which the database cannot tell: a full disk shows here."""

    def __init__(self, health: dict[str, int]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "haocha_ingest_commit_failures",
            "Ingest commits that failed and were retried (disk full, I/O error): nothing was acked meanwhile",
            value=self.health.get("commit_failures", 0),
        )
        yield GaugeMetricFamily(
            "haocha_ingest_queue", "MQTT messages received, not yet committed", value=self.health.get("queued", 0)
        )


def render_metrics(store: Store, health: dict[str, int] | None = None) -> bytes:
    """Metrics from the database, plus the daemon's own ``health`` when it serves them."""
    from prometheus_client import generate_latest

    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    registry.register(BrokerCollector(store))
    if health is not None:
        registry.register(IngestCollector(health))
    return generate_latest(registry)
