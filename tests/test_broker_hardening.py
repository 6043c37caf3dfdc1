"""The hall's broker against a terminal's stolen credentials (SPEC section 10): huge packets,
another party's client id, bad logins. A real Mosquitto through ``broker run`` and a real hub."""

from __future__ import annotations

import io
import re
import time
import tomllib
import urllib.request

import paho.mqtt.client as mqtt

from hub.config import BrokerSettings
from protocol.frames import Event, encode_batch
from simulators.hall import Hall, child_pids, peak_rss_mb, wait_for

from .invariant import assert_invariant
from .mqtt_peer import RawDevice

MiB = 1024 * 1024


def mosquitto_pid(hall: Hall) -> int:
    (pid,) = child_pids(hall.procs["broker"].pid)
    return pid


def wait_hub_connected(hall: Hall) -> None:
    wait_for(lambda: "hub connected to" in hall.log("hub"), 20, "the hub to connect")


def run_terminal(hall: Hall, device: str, presses: int, rate: float = 50.0) -> None:
    proc = hall.sim_terminal(device, presses, rate)
    assert proc.wait(timeout=120) == 0, hall.log(f"sim-{device}")[-3000:]


def client_id_of(hall: Hall, user: str) -> str:
    """The client id the broker logged for ``user``'s connection (whatever the version in use)."""
    pattern = re.compile(rf"New client connected from \S+ as (\S+) \(p\d, c\d, k\d+, u'{re.escape(user)}'\)")
    match = wait_for(lambda: pattern.search(hall.log("broker")), 20, f"{user} to connect")
    return str(match.group(1))


def test_default_byte_cap_still_holds_max_queued_messages_single_event_frames() -> None:
    """``max_queued_bytes`` must not shrink the offline hub's queue that SPEC section 3 sizes in
    messages: the default holds that many frames of one event with every field at its longest."""
    from protocol.transport import MAX_PACKET_BYTES

    event = Event(
        epoch="ab" * 16, seq=2**40, kind="rating", level="very_dissatisfied", trigger="invite", boot="b" * 36,
        case="C" * 32, item="I" * 64, staff="S" * 32, window="W" * 32, reasons=("cold", "lazy", "shirk"),
        mono_ms=10**12, wall_ms=2 * 10**12, synced=True, age_ms=10**9,
    )  # fmt: skip
    frame = encode_batch(b"k" * 32, "H" * 32, "T" * 32, [event])
    broker = BrokerSettings()
    assert broker.max_queued_messages * len(frame) <= broker.max_queued_bytes
    assert len(encode_batch(b"k" * 32, "H" * 32, "T" * 32, [event] * 100)) < MAX_PACKET_BYTES


def test_a_100_mib_frame_disconnects_its_sender_and_leaves_broker_and_hub_small(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    wait_hub_connected(hall)
    hub_pid, broker_pid = hall.procs["hub"].pid, mosquitto_pid(hall)
    raw = RawDevice(hall, "T01")
    try:
        raw.client.publish("haocha/v1/H1/T01/ev", b"[" * (100 * MiB), qos=1)
        wait_for(lambda: raw.disconnects, 60, "the broker to disconnect the sender")
    finally:
        raw.close()
    assert "oversize packet" in hall.log("broker")
    assert peak_rss_mb(broker_pid) < 40, f"mosquitto peaked at {peak_rss_mb(broker_pid):.0f} MB"
    assert peak_rss_mb(hub_pid) < 100, f"the hub peaked at {peak_rss_mb(hub_pid):.0f} MB"
    run_terminal(hall, "T01", 5)  # the hub still ingests
    assert hall.procs["hub"].pid == hub_pid and hall.procs["hub"].poll() is None
    assert_invariant(hall, ["T01"])


def test_another_partys_client_id_takes_over_nothing(running_hall: Hall) -> None:
    """T01's credentials connect again and again with the client ids the hub and T02 use; the hub
    and T02 keep their connections and every frame of T02 arrives."""
    hall = running_hall
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01")
    wait_hub_connected(hall)
    hub_pid = hall.procs["hub"].pid
    t02 = hall.sim_terminal("T02", 60, 10.0)
    victims = [client_id_of(hall, "hub"), client_id_of(hall, "T02")]
    deadline = time.monotonic() + 5
    attempts = 0
    while time.monotonic() < deadline:
        for client_id in victims:
            attacker = RawDevice(hall, "T01", client_id=client_id)
            attacker.close()
            attempts += 1
    assert t02.wait(timeout=120) == 0, hall.log("sim-T02")[-3000:]
    assert attempts >= 4
    assert "hub lost the broker" not in hall.log("hub")
    assert "disconnected from broker" not in hall.log("sim-T02")
    for client_id in victims:
        assert f"Client {client_id} already connected, closing old connection" not in hall.log("broker")
    assert hall.procs["hub"].pid == hub_pid and hall.procs["hub"].poll() is None
    assert_invariant(hall, ["T02"])


def refused_logins_metric(hall: Hall) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{hall.http_port}/metrics", timeout=10).read().decode()
    found = [line for line in text.splitlines() if line.startswith("haocha_broker_logins_refused_total ")]
    return float(found[0].split()[-1]) if found else None


def try_login(hall: Hall, user: str | None, password: str, client_id: str) -> str:
    """One MQTT 3.1.1 login over TLS; returns the CONNACK's reason."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.tls_set_context(hall.tls_context())
    if user is not None:
        client.username_pw_set(user, password)
    reasons: list[str] = []
    client.on_connect = lambda c, u, flags, reason, props: reasons.append(str(reason))
    client.connect("127.0.0.1", hall.broker_port)
    deadline = time.monotonic() + 10
    while not reasons and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    assert reasons, "no CONNACK"
    return reasons[0]


def test_refused_broker_logins_are_counted_in_metrics(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    wait_hub_connected(hall)
    good = broker_password(hall, "T01")
    wait_for(lambda: try_login(hall, "T01", good, "d") == "Success", 20, "the broker to know T01")
    logged = lambda: hall.log("broker").count(" disconnected, not authorised.\n")  # noqa: E731
    wait_for(lambda: refused_logins_metric(hall) == logged(), 20, "/metrics to count the logins refused so far")
    before = logged()
    # One refusal, however its log line reads. (Mosquitto cuts its log lines at 1,000 bytes: the
    # refusal of a client without user name whose id is longer than that is not seen.)
    hostile_id = "x" * 500 + " disconnected, not authorised."
    logins = [("T01", "wrong password", "a"), ("T01", "again wrong", "b"), ("nobody", "x", "c"), (None, "", hostile_id)]
    for user, password, client_id in logins:
        assert try_login(hall, user, password, client_id) == "Not authorized"
    total = before + len(logins)
    wait_for(lambda: refused_logins_metric(hall) == total, 20, "/metrics to count the refused logins")
    assert hall.procs["broker"].poll() is None
    assert max(len(line) for line in hall.log("broker").splitlines()) <= 1100  # hostile ids are cut short


def broker_password(hall: Hall, device: str) -> str:
    return str(tomllib.loads(hall.terminal_config(device).read_text())["broker"]["password"])


def test_log_watch_counts_refusals_and_cuts_long_lines() -> None:
    from hub.broker import LogWatch

    refused = b"1700000000: Client <unknown> disconnected, not authorised.\n"
    log = (
        b"1700000000: New connection from 127.0.0.1:5 on port 1883.\n"
        + refused
        + b"1700000000: Client " + b"y" * 1000 + b" disconnected, not authorised.\n"  # split across chunks
        + b"1700000000: Client " + b"y" * 5000 + b" disconnected, not authorised.\n"
        + b"1700000000: Client T01 disconnected.\n"
        + b"1700000000: Error: Address already in use\n"
    )  # fmt: skip
    out = io.BytesIO()
    watch = LogWatch(io.BytesIO(log), out).start()
    watch.thread.join(5)
    assert watch.take_refused() == 3 and watch.take_refused() == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and max(len(line) for line in lines) <= 1024 + len(b" [cut]")
    assert lines[1] + b"\n" == refused
    assert watch.last_error == "Error: Address already in use"
