"""SPEC section 9: kill -9 of the hub, a terminal and the broker; the broker dropping messages it
had PUBACKed. After each: nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from simulators.hall import Hall, wait_for
from terminal.errors import JournalError

from .invariant import assert_invariant, events_by_device


def start_terminals(hall: Hall, devices: list[str], presses: int, rate: float) -> None:
    for i, device in enumerate(devices):
        hall.sim_terminal(device, presses, rate, i + 1)


def wait_terminals(hall: Hall, devices: list[str], timeout: float = 180) -> None:
    for device in devices:
        proc = hall.procs[f"sim-{device}"]
        assert proc.wait(timeout=timeout) == 0, hall.log(f"sim-{device}")[-3000:]


def last_seq(hall: Hall, device: str) -> int:
    """The journal's last_seq, 0 until the terminal has created its journal."""
    try:
        return int(hall.journal(device)["last_seq"])
    except JournalError:
        return 0


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
    wait_for(lambda: last_seq(hall, "T01") >= 300, 60, "a burst of commits")
    hall.kill("sim-T01")
    killed_at = hall.journal("T01")["last_seq"]
    hall.sim_terminal("T01", 5, 50)  # restart: drains the backlog, then presses five more
    wait_terminals(hall, ["T01"])
    assert hall.journal("T01")["last_seq"] == killed_at + 5
    assert_invariant(hall, ["T01"])


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


def test_broker_queue_overflow_while_the_hub_is_down(tmp_path: Path) -> None:
    """Mosquitto's default queue of 1,000 messages for the offline hub PUBACKs and drops the
    rest; the terminals must send them again when the hub is back."""
    home = tmp_path / "hall"
    with Hall(home, broker={"max_queued_messages": 1000}) as hall:
        devices = ["T01", "T02"]
        for device in devices:
            path = hall.add_device(device, "W01")
            path.write_text(path.read_text() + "\n[uplink]\nbatch = 1\n")  # one event per message
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "hub connected to" in hall.log("hub"), 20, "the hub's persistent session")
        hall.kill("hub")
        start_terminals(hall, devices, 800, 400)
        wait_for(lambda: all(last_seq(hall, d) >= 800 for d in devices), 60, "1,600 events journaled")
        hall.start_hub()
        wait_terminals(hall, devices)
        assert "dropped" in hall.log("broker").lower(), "the broker never dropped: the test did not overflow"
        assert_invariant(hall, devices)


def test_terminal_clock_jumping_backwards_and_forwards(running_hall: Hall) -> None:
    """Order is by seq: a wall clock that jumps a month back and a year ahead changes the days
    the events count on (the terminal said its clock was synchronised), never what is stored."""
    from .rig import TerminalRig

    running_hall.add_device("T01", "W01")
    rig = TerminalRig(running_hall, "T01")
    clock = rig.term.clock
    clock.policy = "synced"
    try:
        for offset_days in (0, -30, 365, 0):
            clock.wall_offset_s = offset_days * 86400
            for _ in range(5):
                rig.press("satisfied")
        rig.wait_acked()
    finally:
        rig.close()
    assert_invariant(running_hall, ["T01"])
    days = {row["day"]: row["events"] for row in running_hall.stats(("day",))["rows"]}
    assert len(days) == 3 and sorted(days.values()) == [5, 5, 10]


def test_hub_disk_full_stops_acks_loses_nothing_and_resumes(tmp_path: Path) -> None:
    """The hub's folder on a small tmpfs is filled up: the hub cannot commit, so it acks nothing
    and the terminal keeps its journal; when space is freed the hub stores everything once."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "hubfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        with Hall(mount / "hall") as hall:
            hall.logs = tmp_path / "logs"  # the logs and the terminal's journal stay on the big disk
            config = hall.add_device("T01", "W01")
            config.write_text(config.read_text().replace('journal = "journal.db"', f'journal = "{tmp_path}/j.db"'))
            hall.start_broker()
            hall.start_hub()
            hall.sim_terminal("T01", 20, 50)
            wait_terminals(hall, ["T01"])
            filler = _fill(mount)
            hall.sim_terminal("T01", 300, 100)
            wait_for(lambda: "cannot commit" in hall.log("hub"), 60, "the hub to hit the full disk")
            first = hall.journal("T01")["last_seq"]
            wait_for(lambda: hall.journal("T01")["last_seq"] >= first + 100, 60, "presses while the disk is full")
            stored, journal = events_by_device(hall)["T01"], hall.journal("T01")
            wait_for(lambda: hall.journal("T01")["last_seq"] >= journal["last_seq"] + 50, 60, "more presses")
            assert events_by_device(hall)["T01"] == stored, "the hub stored nothing while its disk was full"
            assert hall.journal("T01")["acked"] == journal["acked"] < journal["last_seq"], "and acked nothing"
            assert _metric(hall, "haocha_ingest_commit_failures_total") >= 1  # operators see it
            filler.unlink()
            wait_terminals(hall, ["T01"])
            assert_invariant(hall, ["T01"])
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    """Fill the file system up to the last block (unbuffered: nothing left to fail at close)."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _metric(hall: Hall, name: str) -> float:
    """One sample of the running hub's /metrics."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{hall.http_port}/metrics", timeout=10).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))
