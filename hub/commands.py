"""Publishes queued commands (invitations, cancels) to the terminals' ``cmd`` topics.

Commands are rows written in the same transaction as the case they belong to, so an invitation is
never lost between the HTTP answer and the broker. An invitation travels with an MQTT 5 message
expiry: the broker drops it if the terminal stays away longer, and the terminal itself refuses one
whose ``ttl_ms`` has run out (a late invitation is never shown).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import commands
from protocol.errors import ProtocolError
from protocol.topics import Leaf, topic

from .store import Store, now_ms

_LOG = logging.getLogger(__name__)
EXPIRED = -1  # published_ms of a command that expired before it could be sent (or could not be read)


def broker_expiry_s(ttl_ms: int) -> int:
    """Mosquitto keeps expiry in whole seconds and may deliver until the end of the last one:
    round down and keep a second in hand, so the broker drops an invitation early, never late."""
    return max(1, ttl_ms // 1000 - 1)


class CommandPublisher:
    """Runs on its own thread with its own Store connection."""

    def __init__(self, client: mqtt.Client, hall: str, db_path: Path, connected: threading.Event) -> None:
        self.client = client
        self.hall = hall
        self.db_path = db_path
        self.connected = connected
        self._wake = threading.Event()
        self.counts = {"published": 0, "expired": 0}

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        with Store(self.db_path) as store:
            while not stop.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                if self.connected.is_set():
                    try:
                        self.publish_pending(store)
                    except Exception:
                        _LOG.exception("publishing commands failed; retrying")

    def publish_pending(self, store: Store) -> None:
        rows = store.conn.execute(
            "SELECT id, device, payload, expires_ms FROM commands WHERE published_ms IS NULL ORDER BY id LIMIT 500"
        ).fetchall()
        for command_id, device, payload, expires_ms in rows:
            now = now_ms()
            if expires_ms is not None and now >= expires_ms:
                self._mark(store, command_id, EXPIRED)
                self.counts["expired"] += 1
                continue
            try:
                command = commands.parse(json.loads(payload))
            except (ValueError, ProtocolError) as exc:  # written by an older hub, or by hand
                _LOG.error("dropped queued command %d for %s: %s", command_id, device, exc)
                self._mark(store, command_id, EXPIRED)
                continue
            if not self._publish(device, command, expires_ms, now):
                return  # not connected any more: the rest waits for the next connection
            self._mark(store, command_id, now)
            self.counts["published"] += 1

    def _publish(self, device: str, command: commands.Command, expires_ms: int | None, now: int) -> bool:
        props = Properties(PacketTypes.PUBLISH)
        if expires_ms is not None:
            command = commands.with_lifetime(command, expires_ms - now, now)
            props.MessageExpiryInterval = broker_expiry_s(expires_ms - now)
        frame = commands.encode(command)
        info = self.client.publish(topic(self.hall, device, Leaf.CMD), frame, qos=1, properties=props)
        try:
            info.wait_for_publish(timeout=5)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    @staticmethod
    def _mark(store: Store, command_id: int, published_ms: int) -> None:
        with store.transaction() as conn:
            conn.execute("UPDATE commands SET published_ms = ? WHERE id = ?", (published_ms, command_id))
