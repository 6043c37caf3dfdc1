"""The hub daemon (``haocha hub run``): MQTT in, durable commit, then PUBACK and the app-level ack.

Threads: paho's network thread only stamps each message and puts it on a queue (the broker holds
it un-PUBACKed meanwhile, so the queue is not a place a rating can be lost: a crash makes the
broker deliver it again). The writer thread drains the queue in batches, commits each batch in
one transaction, then PUBACKs every message of the batch (``manual_ack``) and publishes the
retained cumulative ack per terminal. If the commit fails (disk full, I/O error) nothing is
acked; the batch is retried with backoff until it commits.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import uvicorn
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.frames import Ack, encode_state
from protocol.topics import Leaf, hub_state_topic, topic, wildcard
from protocol.transport import no_delay

from .commands import CommandPublisher
from .config import DB_NAME, HubConfig
from .http.app import create_app
from .ingest import BatchResult, Incoming, Ingestor
from .store import Store, now_ms
from .upstream.sender import start_sender

_LOG = logging.getLogger(__name__)
SESSION_EXPIRY_S = 7 * 24 * 3600
#: A failed commit (disk full, I/O error) is retried at most this far apart: cheap, and a disk an
#: operator clears is picked up within seconds.
COMMIT_RETRY_MAX_S = 5.0
GIL_SWITCH_S = 0.0005
#: How often the writer looks for ratings held behind a gap for longer than ``gap_hold_s``.
RELEASE_CHECK_S = 10.0


class HubDaemon:
    def __init__(self, config: HubConfig, home: Path) -> None:
        self.config = config
        self.home = home
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.totals: dict[str, int] = {}
        self.commit_failures = 0
        self.client = self._make_client()
        self.commands = CommandPublisher(self.client, config.hall, home / DB_NAME, self.connected)
        self.http: uvicorn.Server | None = None
        self._threads: list[threading.Thread] = []

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"haocha-hub-{cfg.hall}", protocol=mqtt.MQTTv5, manual_ack=True
        )
        client.username_pw_set(cfg.broker.user, cfg.broker.password)
        client.will_set(hub_state_topic(cfg.hall), encode_state(False), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        no_delay(client)
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        """paho network thread."""
        if reason.is_failure:
            _LOG.error("broker refused the hub: %s", reason)
            return
        hall = self.config.hall
        client.subscribe([(wildcard(hall, Leaf.EV), 1), (wildcard(hall, Leaf.STATE), 1)])
        client.publish(hub_state_topic(hall), encode_state(True), qos=1, retain=True)
        self.connected.set()
        self.commands.wake()
        _LOG.info(
            "hub connected to %s:%s (session present: %s)",
            self.config.broker.host,
            self.config.broker.port,
            flags.session_present,
        )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            _LOG.warning("hub lost the broker: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """paho network thread: stamp and queue, nothing else."""
        self.inbox.put(Incoming(msg.topic, bytes(msg.payload), now_ms(), msg.mid))

    def run(self) -> None:
        """Connect and ingest until :meth:`stop`."""
        # The writer thread's batches would otherwise hold the GIL for 5 ms slices while paho's
        # network thread waits to read and PUBACK: switch more often.
        sys.setswitchinterval(GIL_SWITCH_S)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.config.broker.receive_maximum
        self.client.connect_async(
            self.config.broker.host, self.config.broker.port, keepalive=15, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._start_thread("commands", lambda: self.commands.run(self.stopping))
        self._start_http()
        sender = start_sender(self.config, self.home)
        try:
            with Store(self.home / DB_NAME) as store:
                ingestor = Ingestor(store, self.config.hall, self.config.tz, self.config.misuse.burst_gap_s)
                self._write_loop(ingestor)
        finally:
            if sender is not None:
                sender.stop()
            self._shutdown()

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except (Exception, SystemExit):  # uvicorn exits when it cannot bind its port
                _LOG.exception("hub thread %s died; stopping the hub", name)
                self.stop()

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_http(self) -> None:
        """The HTTP API on its own thread (uvicorn installs no signal handlers off the main thread)."""
        app = create_app(self.home, self.config, on_command=self.commands.wake, health=self.health)
        cfg = uvicorn.Config(
            app,
            host=self.config.http.host,
            port=self.config.http.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.http = uvicorn.Server(cfg)
        self._start_thread("http", self.http.run)

    def _write_loop(self, ingestor: Ingestor) -> None:
        next_release = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_release:
                next_release = time.monotonic() + RELEASE_CHECK_S
                self._release_held(ingestor)
            try:
                batch = [self.inbox.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < self.config.ingest.max_batch:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            result = self._commit_with_retry(ingestor, batch)
            if result is not None:
                self._acknowledge(batch, result)

    def _release_held(self, ingestor: Ingestor) -> None:
        """Ratings stuck behind a gap longer than ``gap_hold_s`` go upstream and open tickets."""
        try:
            ingestor.release_held(now_ms() - int(self.config.upstream.gap_hold_s * 1000))
        except sqlite3.Error as exc:  # disk full: the next check tries again
            _LOG.error("cannot release held ratings: %s", exc)

    def _commit_with_retry(self, ingestor: Ingestor, batch: list[Incoming]) -> BatchResult | None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                return ingestor.ingest(batch)
            except sqlite3.Error as exc:
                # Disk full or I/O error: nothing was stored, nothing is acked. Keep the batch and retry.
                self.commit_failures += 1
                _LOG.error("cannot commit %d messages (%s); retrying in %.1fs", len(batch), exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, COMMIT_RETRY_MAX_S)
        return None

    def _acknowledge(self, batch: list[Incoming], result: BatchResult) -> None:
        for msg in batch:
            self.client.ack(msg.mid, 1)
        for (device, epoch), upto in result.acks.items():
            self.client.publish(
                topic(self.config.hall, device, Leaf.ACK), Ack(epoch, upto).encode(), qos=1, retain=True
            )
        for outcome, n in result.counts.items():
            self.totals[outcome] = self.totals.get(outcome, 0) + n

    def health(self) -> dict[str, int]:
        """The writer's state for /metrics (read from the HTTP thread: plain ints)."""
        return {"commit_failures": self.commit_failures, "queued": self.inbox.qsize()}

    def stop(self) -> None:
        self.stopping.set()

    def _shutdown(self) -> None:
        if self.http is not None:
            self.http.should_exit = True
        for thread in self._threads:
            thread.join(timeout=5)
        if self.connected.is_set():
            info = self.client.publish(hub_state_topic(self.config.hall), encode_state(False), qos=1, retain=True)
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        _LOG.info("hub stopped: %s", self.totals)
