"""Test peers for the MicroPython firmware: a real Mosquitto per test and a small stand-in hub.

The stand-in hub does what SPEC section 3 asks of the hub and nothing more: it verifies each
event's MAC with ``protocol.frames``, dedupes on (device, epoch, seq), and publishes the retained
ack ``{"epoch", "upto"}`` with ``upto`` the end of the contiguous prefix of stored seqs. It will be
replaced by the real hub once both branches are merged.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from hub import certs
from protocol.errors import ProtocolError
from protocol.frames import Ack, encode_state, parse_batch, verify_event
from protocol.topics import Leaf, hub_state_topic, parse_topic, topic, wildcard
from protocol.transport import client_tls
from simulators.hall import free_port, wait_for

MOSQUITTO = "/usr/sbin/mosquitto"


def own_ca(folder: Path, names: tuple[str, ...] = certs.LOOPBACK_NAMES) -> tuple[Path, Path, Path]:
    """A CA of its own in ``folder`` (kept when there already) and a broker certificate it signed
    for ``names`` (loopback): (CA certificate, broker certificate, broker key)."""
    ca_cert, cert, key = folder / "ca.crt", folder / "broker.crt", folder / "broker.key"
    if not ca_cert.exists():
        folder.mkdir(parents=True, exist_ok=True)
        ca_key, ca = certs.make_ca("TEST")
        broker_key, broker_cert = certs.issue(ca_key, ca, "test broker", 30, names)
        key.write_bytes(certs.key_pem(broker_key))
        cert.write_bytes(certs.cert_pem(broker_cert))
        ca_cert.write_bytes(certs.cert_pem(ca))
    return ca_cert, cert, key


class Broker:
    """Mosquitto on a free loopback port, anonymous, no persistence (a restart loses everything
    it held: what the hub's end-to-end ack is for). Over TLS (as the hall's broker) with a CA of
    its own in ``folder/tls`` (:attr:`ca`, kept across a restart in the same folder) unless
    ``tls`` is False."""

    def __init__(self, folder: Path, port: int | None = None, tls: bool = True) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = folder / "mosquitto.conf"
        self.ca: Path | None = None
        listener = f"listener {self.port} 127.0.0.1\n"
        if tls:
            self.ca, cert, key = own_ca(folder / "tls")
            listener += f"cafile {self.ca}\ncertfile {cert}\nkeyfile {key}\ntls_version tlsv1.2\n"
        self.conf.write_text(
            f"{listener}allow_anonymous true\nuser root\npersistence false\nmax_queued_messages 10000\n"
        )

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "mosquitto.log").open("ab"),
            start_new_session=True,
        )
        wait_for(self._accepts, 10, f"mosquitto on port {self.port}")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StandInHub:
    """Stores events in memory with exactly-once semantics and acks the contiguous prefix."""

    def __init__(self, hall: str, port: int, keys: dict[str, bytes], ca: Path | None = None) -> None:
        self.hall = hall
        self.keys = keys
        self.lock = threading.Lock()
        self.stored: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
        self.upto: dict[tuple[str, str], int] = defaultdict(int)
        self.duplicates = 0
        self.rejected = 0
        self.received_frames = 0
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"standin-hub-{hall}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if ca is not None:
            self.client.tls_set_context(client_tls(ca))
        self.client.will_set(hub_state_topic(hall), encode_state(False), qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.port = port

    def start(self) -> StandInHub:
        self.client.connect_async("127.0.0.1", self.port, keepalive=5)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise AssertionError("stand-in hub could not connect to the broker")
        return self

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe(wildcard(self.hall, Leaf.EV), qos=1)
        client.publish(hub_state_topic(self.hall), encode_state(True), qos=1, retain=True)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            device, _leaf = parse_topic(self.hall, msg.topic)
            key = self.keys[device]
            events = parse_batch(msg.payload)
            for event, mac in events:
                verify_event(key, self.hall, device, event, mac)
        except (ProtocolError, KeyError) as exc:
            with self.lock:
                self.rejected += 1
            print("stand-in hub rejected a frame:", exc)
            return
        acks: dict[str, int] = {}
        with self.lock:
            self.received_frames += 1
            for event, _mac in events:
                rows = self.stored[(device, event.epoch)]
                if event.seq in rows:
                    self.duplicates += 1
                else:
                    rows[event.seq] = event.fields()
                upto = self.upto[(device, event.epoch)]
                while upto + 1 in rows:
                    upto += 1
                self.upto[(device, event.epoch)] = upto
                acks[event.epoch] = upto
        for epoch, upto in acks.items():
            client.publish(topic(self.hall, device, Leaf.ACK), Ack(epoch, upto).encode(), qos=1, retain=True)

    def invite(self, device: str, case: str, ttl_ms: int = 60000, item: str | None = None) -> None:
        cmd = {
            "cmd": "invite",
            "case": case,
            "item": item,
            "staff": None,
            "ttl_ms": ttl_ms,
            "sent_ms": int(time.time() * 1000),
        }
        self.client.publish(topic(self.hall, device, Leaf.CMD), json.dumps(cmd).encode(), qos=1)

    def count(self, device: str, epoch: str) -> int:
        with self.lock:
            return len(self.stored.get((device, epoch), {}))

    def seqs(self, device: str, epoch: str) -> list[int]:
        with self.lock:
            return sorted(self.stored.get((device, epoch), {}))

    def events(self, device: str, epoch: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.stored.get((device, epoch), {})
            return [rows[s] for s in sorted(rows)]

    def close(self) -> None:
        self.client.publish(hub_state_topic(self.hall), encode_state(False), qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def firmware_sources(folder: Path) -> Path:
    """The firmware's sources as a board holds them (flat, ``core.py`` beside the rest), and the
    simulated board, in ``folder``; returns it."""
    from terminal.micro_host import FIRMWARE_FILES, firmware_source

    for name in (*FIRMWARE_FILES, "sim_board.py"):
        (folder / name).write_bytes(firmware_source(name).read_bytes())
    return folder


def run_micropython(script: str, timeout_s: float = 60, heap: str = "64k") -> str:
    """Run ``script`` in the real MicroPython interpreter with the firmware folder importable;
    return its stdout (AssertionError with the output when it fails)."""
    from terminal.micro_host import find_micropython

    with tempfile.TemporaryDirectory() as folder:
        code = firmware_sources(Path(folder))
        (code / "run.py").write_text(f"import sys\nsys.path.insert(0, {str(code)!r})\n" + script)
        proc = subprocess.run(
            [find_micropython(), "-X", f"heapsize={heap}", str(code / "run.py")],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    if proc.returncode != 0:
        raise AssertionError(f"micropython failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"


def make_config(
    folder: Path,
    port: int,
    device: str = "M01",
    mode: str = "free",
    hall: str = "H1",
    extra: str = "",
    ca: Path | None = None,
) -> Any:
    """A ``terminal.toml`` of kind micro in ``folder``, loaded (journal: the folder ``journal``);
    over TLS trusting ``ca`` when given."""
    from terminal.config import load

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "terminal.toml"
    tls = f'ca = "{ca}"\n' if ca is not None else ""
    path.write_text(
        f'device = "{device}"\nhall = "{hall}"\nwindow = "W01"\nkey = "{KEY_HEX}"\nkind = "micro"\n'
        f'mode = "{mode}"\njournal = "journal"\nitem = "ITEM-1"\n{extra}\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\nkeepalive_s = 5\n{tls}'
        f"[timing]\nthanks_s = 0.2\n"
    )
    return load(path)


@contextmanager
def board_on(
    folder: Path, firmware: Path, port: int, host: str = "127.0.0.1", ca: Path | None = None, **broker: Any
) -> Iterator[Any]:
    """The firmware (compiled in ``firmware``) with the simulated board, its broker at
    ``host:port`` (over TLS trusting ``ca`` when given), its journal in ``folder/dev``; ``broker``
    overrides keys of config.json's ``broker`` (``keepalive_s``, ``report_s``, ``password``)."""
    from terminal.micro_host import SimBoardProcess, write_sim_config

    config = make_config(folder / "dev", port, ca=ca)
    path = write_sim_config(config, folder)
    cfg = json.loads(path.read_text())
    cfg["broker"].update(broker, host=host)
    path.write_text(json.dumps(cfg))
    with SimBoardProcess(path, code_dir=firmware) as board:
        board.start()
        yield board


def logged(board: Any, start: str) -> list[str]:
    """The board's log lines (without ``log ``) that start with ``start``."""
    return [line[4:] for line in list(board.log) if line.startswith("log " + start)]
