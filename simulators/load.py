"""A load generator: many terminals' MQTT sessions from one process.

Each simulated terminal connects with its own provisioned credentials, keeps a retained state,
and publishes signed rating events at a given rate; it follows the hub's acks so a run can wait
until everything was stored. Used by the RSS and ingest benchmarks, where hundreds of real
terminal processes would measure the machine rather than the hub.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from protocol.frames import Ack, Event, encode_batch, encode_state
from protocol.transport import no_delay
from terminal.config import load as load_config

LEVELS = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")


class LoadTerminal:
    """One terminal's session: publishes events with consecutive seqs, records the hub's ack."""

    def __init__(self, config_path: Path, seed: int) -> None:
        self.settings: dict[str, Any] = tomllib.loads(config_path.read_text())
        self.key = bytes.fromhex(self.settings["key"])
        self.epoch = secrets.token_hex(16)
        self.seq = 0
        self.acked = 0
        self.rng = random.Random(seed)
        device, hall = self.settings["device"], self.settings["hall"]
        self.base = f"haocha/v1/{hall}/{device}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"load-{hall}-{device}")
        self.client.username_pw_set(device, self.settings["broker"]["password"])
        tls = load_config(config_path).broker_tls()
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.will_set(f"{self.base}/state", encode_state(False), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        no_delay(self.client)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(f"{self.base}/ack", qos=1)
        client.publish(f"{self.base}/state", encode_state(True, epoch=self.epoch, backlog=0), qos=1, retain=True)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ack = Ack.decode(bytes(msg.payload))
        if ack.epoch == self.epoch:
            self.acked = max(self.acked, ack.upto)

    def start(self) -> None:
        broker = self.settings["broker"]
        self.client.connect_async(broker["host"], broker["port"], keepalive=30)
        self.client.loop_start()

    def press(self) -> None:
        self.seq += 1
        event = Event(
            epoch=self.epoch,
            seq=self.seq,
            kind="rating",
            window=self.settings["window"],
            level=self.rng.choice(LEVELS),
            trigger="free",
            boot="load",
            mono_ms=self.seq,
            wall_ms=int(time.time() * 1000),
            synced=True,
            age_ms=0,
        )
        payload = encode_batch(self.key, self.settings["hall"], self.settings["device"], [event])
        self.client.publish(f"{self.base}/ev", payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class LoadGenerator:
    """``terminals`` sessions pressing at ``rate`` presses a second in total."""

    def __init__(self, config_paths: list[Path], rate: float, seed: int = 1) -> None:
        self.terminals = [LoadTerminal(path, seed + i) for i, path in enumerate(config_paths)]
        self.rate = rate
        self._stop = threading.Event()

    def start(self) -> None:
        for terminal in self.terminals:
            terminal.start()

    def connected(self) -> bool:
        return all(t.client.is_connected() for t in self.terminals)

    def press_for(self, seconds: float) -> int:
        """Press round-robin at the total rate for ``seconds``; returns the presses made."""
        deadline, interval, made = time.monotonic() + seconds, 1.0 / self.rate, 0
        next_at = time.monotonic()
        while time.monotonic() < deadline and not self._stop.is_set():
            self.terminals[made % len(self.terminals)].press()
            made += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        return made

    def all_acked(self) -> bool:
        return all(t.acked >= t.seq for t in self.terminals)

    def close(self) -> None:
        self._stop.set()
        for terminal in self.terminals:
            terminal.close()
