"""Hub ingest against a bare paho QoS 1 subscriber that only counts (SPEC section 8).

Both consume the same frames from the same publishers in the same run: several publisher
processes, each authenticated as its own terminal, publish pre-signed ``ev`` frames as fast as
the broker takes them; the hub stores, counts and acks them (durable commit), the bare subscriber
only counts. Prints both rates in events/s and their ratio (target ≥ 0.8, and ≥ 3,000 events/s).

Every party is a process in a session of its own, as the hub and the broker are: Linux groups
CPU time by session (autogroup), so a bare subscriber sharing the bench's session with the
publishers, or the progress sampler's thread, would be measured on other terms than the hub.

    python bench/ingest.py [--publishers 3] [--events 60000] [--batch 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.secrets import mosquitto_hash
from protocol.frames import Event, encode_batch
from protocol.transport import client_tls
from simulators.hall import Hall, child_pids, wait_for
from terminal.config import load as load_config

BARE_USER = "bench-bare"


def frames_for(settings: dict[str, object], events: int, batch: int) -> list[bytes]:
    key = bytes.fromhex(str(settings["key"]))
    epoch = secrets.token_hex(16)
    out = []
    for start in range(1, events + 1, batch):
        chunk = [
            Event(
                epoch=epoch,
                seq=s,
                kind="rating",
                window=str(settings["window"]),
                level="satisfied",
                trigger="free",
                boot="bench",
                mono_ms=s,
                wall_ms=int(time.time() * 1000),
                synced=True,
                age_ms=1,
            )
            for s in range(start, min(start + batch, events + 1))
        ]
        out.append(encode_batch(key, str(settings["hall"]), str(settings["device"]), chunk))
    return out


def publish(config_path: str, events: int, batch: int, go: mp.Event) -> None:  # type: ignore[valid-type]
    """One publisher process: a terminal's credentials, its frames, QoS 1 as fast as allowed."""
    os.setsid()
    settings = tomllib.loads(Path(config_path).read_text())
    frames = frames_for(settings, events, batch)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{settings['device']}")
    client.username_pw_set(settings["device"], settings["broker"]["password"])
    client.tls_set_context(load_config(Path(config_path)).broker_tls())
    client.max_inflight_messages_set(100)
    client.connect(settings["broker"]["host"], settings["broker"]["port"])
    client.loop_start()
    go.wait()  # type: ignore[attr-defined]
    topic = f"haocha/v1/{settings['hall']}/{settings['device']}/ev"
    infos = [client.publish(topic, f, qos=1) for f in frames]
    for info in infos:
        info.wait_for_publish(timeout=120)
    client.disconnect()
    client.loop_stop()


class BareCounter:
    """A paho QoS 1 subscriber on the same topics that only counts events."""

    def __init__(self, user: str, password: str, port: int, hall: str, ca: Path) -> None:
        self.count = 0
        self.first = self.last = 0.0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.tls_set_context(client_tls(ca))  # TLS like the hub: the same cost per message
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"haocha/v1/{hall}/+/ev", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.count += msg.payload.count(b'"seq":')


def bare_process(
    user: str, password: str, port: int, hall: str, ca: Path, total: int, ready: Any, out: Any
) -> None:  # ready: mp.Event, out: mp.Queue
    """The bare subscriber as its own process and session; sends (count, seconds) when done."""
    os.setsid()
    bare = BareCounter(user, password, port, hall, ca)
    ready.set()
    while bare.count < total:
        time.sleep(0.01)
    bare.client.disconnect()
    out.put((bare.count, bare.last - bare.first))


def add_bare_user(hall: Hall) -> str:
    """A broker user of the bench's own for the bare subscriber, reading what the hub reads. The
    broker ties a connection to its user (``use_username_as_clientid``): with the hub's login the
    bare subscriber would push the hub off. Appended to the files ``broker run`` wrote, which
    Mosquitto then reloads (SIGHUP). Returns the password."""
    password = secrets.token_urlsafe(16)
    folder = hall.home / "broker"
    with open(folder / "passwd", "a") as f:
        f.write(f"{BARE_USER}:{mosquitto_hash(password)}\n")
    with open(folder / "acl", "a") as f:
        f.write(f"\nuser {BARE_USER}\ntopic read haocha/v1/{hall.hall}/+/ev\n")
    for pid in child_pids(hall.procs["broker"].pid):
        os.kill(pid, signal.SIGHUP)
    wait_for(lambda: logs_in(hall, BARE_USER, password), 10, "the broker to know the bare subscriber")
    return password


def logs_in(hall: Hall, user: str, password: str) -> bool:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    client.username_pw_set(user, password)
    client.tls_set_context(hall.tls_context())
    answers: list[bool] = []
    client.on_connect = lambda c, u, flags, reason, props: answers.append(not reason.is_failure)
    client.connect("127.0.0.1", hall.broker_port)
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    return bool(answers and answers[0])


def hub_progress(hall: Hall) -> int:
    with hall.store() as store:
        return int(
            store.conn.execute("SELECT coalesce(sum(n), 0) FROM frame_counts WHERE outcome = 'stored'").fetchone()[0]
        )


def run(publishers: int, events: int, batch: int) -> dict[str, float]:
    with Hall(Path(tempfile.mkdtemp(prefix="haocha-bench-")) / "hall") as hall:
        configs = [str(hall.add_device(f"B{i:02d}", "W01")) for i in range(publishers)]
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "hub connected to" in hall.log("hub"), 20, "the hub to connect")
        total = publishers * events
        password = add_bare_user(hall)
        ready = mp.Event()
        answer: mp.Queue[tuple[int, float]] = mp.Queue()
        bare = mp.Process(
            target=bare_process, args=(BARE_USER, password, hall.broker_port, hall.hall, hall.ca, total, ready, answer)
        )
        bare.start()
        ready.wait(20)
        go = mp.Event()
        procs = [mp.Process(target=publish, args=(c, events, batch, go)) for c in configs]
        for p in procs:
            p.start()
        time.sleep(2)  # let every publisher pre-sign its frames and connect before the clock starts
        hub_times: list[tuple[float, int]] = []

        def sample() -> None:
            while not hub_times or hub_times[-1][1] < total:
                hub_times.append((time.perf_counter(), hub_progress(hall)))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        go.set()
        bare_count, bare_seconds = answer.get(timeout=600)
        wait_for(lambda: hub_progress(hall) >= total, 600, "the hub")
        sampler.join()
        for p in [*procs, bare]:
            p.join()
        start = next(t for t, n in hub_times if n > 0)
        end = next(t for t, n in hub_times if n >= total)
        return {"hub": total / (end - start), "bare": bare_count / bare_seconds, "events": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--events", type=int, default=15000, help="events per publisher")
    parser.add_argument("--batch", type=int, default=1, help="events per frame (terminals send one per press)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [run(args.publishers, args.events, args.batch) for _ in range(args.runs)]
    for i, r in enumerate(results, 1):
        print(
            f"run {i}: {r['events']:.0f} events  hub {r['hub']:8.0f} ev/s  bare {r['bare']:8.0f} ev/s  "
            f"ratio {r['hub'] / r['bare']:.2f}"
        )
    ratio = statistics.median(r["hub"] / r["bare"] for r in results)
    hub = statistics.median(r["hub"] for r in results)
    print(
        f"median: hub {hub:.0f} events/s (target ≥ 3000), hub/bare ratio {ratio:.2f} (target ≥ 0.8); "
        f"{args.publishers} publishers, {args.batch} events per frame"
    )


if __name__ == "__main__":
    main()
