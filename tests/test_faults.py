"""SPEC section 9: kill -9 of the hub, a terminal and the broker; the broker dropping messages it
had PUBACKed. After each: nothing lost, nothing counted twice."""

from __future__ import annotations

import random

from simulators.hall import Hall, wait_for

from .invariant import assert_invariant, events_by_device


def start_terminals(hall: Hall, devices: list[str], presses: int, rate: float) -> None:
    for i, device in enumerate(devices):
        hall.sim_terminal(device, presses, rate, i + 1)


def wait_terminals(hall: Hall, devices: list[str], timeout: float = 180) -> None:
    for device in devices:
        proc = hall.procs[f"sim-{device}"]
        assert proc.wait(timeout=timeout) == 0, hall.log(f"sim-{device}")[-3000:]


def stored_total(hall: Hall) -> int:
    return sum(events_by_device(hall).values())


def test_kill_9_of_the_hub_mid_ingest_repeatedly(hall: Hall) -> None:
    devices = ["T01", "T02"]
    for device in devices:
        hall.add_device(device, "W01")
    hall.start_broker()
    hall.start_hub()
    start_terminals(hall, devices, 500, 150)
    rng = random.Random(3)
    for _ in range(4):
        target = stored_total(hall) + rng.randrange(30, 120)
        wait_for(lambda t=target: stored_total(hall) >= t, 60, "the hub to store more events")
        hall.kill("hub")
        hall.start_hub()
    wait_terminals(hall, devices)
    assert_invariant(hall, devices)


def test_kill_9_of_a_terminal_during_a_burst(hall: Hall) -> None:
    hall.add_device("T01", "W01")
    hall.start_broker()
    hall.start_hub()
    hall.sim_terminal("T01", 2000, 400)
    wait_for(lambda: _journal_last_seq(hall) >= 300, 60, "a burst of commits")
    hall.kill("sim-T01")
    killed_at = hall.journal("T01")["last_seq"]
    hall.sim_terminal("T01", 5, 50)  # restart: drains the backlog, then presses five more
    wait_terminals(hall, ["T01"])
    assert hall.journal("T01")["last_seq"] == killed_at + 5
    assert_invariant(hall, ["T01"])


def _journal_last_seq(hall: Hall) -> int:
    try:
        return int(hall.journal("T01")["last_seq"])
    except Exception:
        return 0  # the journal does not exist yet


def test_kill_9_of_the_broker_and_restart_without_its_persistence(hall: Hall) -> None:
    devices = ["T01", "T02"]
    for device in devices:
        hall.add_device(device, "W01")
    hall.start_broker()
    hall.start_hub()
    start_terminals(hall, devices, 600, 150)
    for _ in range(2):
        target = stored_total(hall) + 150
        wait_for(lambda t=target: stored_total(hall) >= t, 60, "the hub to store more events")
        hall.kill("broker")
        hall.start_broker(fresh=True)  # queued messages, retained acks and sessions are gone
    wait_terminals(hall, devices)
    assert_invariant(hall, devices)


def test_broker_queue_overflow_while_the_hub_is_down(tmp_path_factory: object) -> None:
    """Mosquitto's default queue of 1,000 messages for the offline hub PUBACKs and drops the
    rest; the terminals must send them again when the hub is back."""
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp()) / "hall"
    with Hall(home, broker={"max_queued_messages": 1000}) as hall:
        devices = ["T01", "T02"]
        for device in devices:
            path = hall.add_device(device, "W01")
            path.write_text(path.read_text() + "\n[uplink]\nbatch = 1\n")  # one event per message
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "haocha-hub-H1" in hall.log("broker"), 20, "the hub's persistent session")
        hall.kill("hub")
        start_terminals(hall, devices, 800, 400)
        wait_for(lambda: all(_pending(hall, d) >= 800 for d in devices), 60, "1,600 events journaled")
        hall.start_hub()
        wait_terminals(hall, devices)
        assert "dropped" in hall.log("broker").lower(), "the broker never dropped: the test did not overflow"
        assert_invariant(hall, devices)


def _pending(hall: Hall, device: str) -> int:
    try:
        return int(hall.journal(device)["last_seq"])
    except Exception:
        return 0
