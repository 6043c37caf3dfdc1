"""Operators' mistakes (SPEC section 10): each says what is wrong, in one line, at once.

A terminal pointed at the wrong broker, a second hub on the same home, a hub whose HTTP port is
taken, a demo without Mosquitto, and a Debian package removed but not purged."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w

from simulators.hall import Hall, wait_for

from .invariant import assert_invariant

REPO = Path(__file__).resolve().parent.parent


def haocha(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haocha", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def edit_broker(config: Path, **changes: object) -> None:
    data = tomllib.loads(config.read_text())
    data["broker"].update(changes)
    config.write_text(tomli_w.dumps(data))


# -- a terminal that cannot reach or log in to its broker ----------------------------------------


@pytest.mark.parametrize(
    ("mistake", "reason"),
    [
        ("port", "ConnectionRefusedError"),
        ("host", "gaierror"),
        ("password", "Not authorized"),
    ],
)
def test_a_terminal_says_at_once_and_only_once_a_while_that_it_cannot_reach_its_broker(
    hall: Hall, mistake: str, reason: str
) -> None:
    config = hall.add_device("T01", "W01")
    if mistake == "host":
        edit_broker(config, host="no-such-host.invalid")
    elif mistake == "password":
        edit_broker(config, password="not-the-password")
        hall.start_broker()
    # nothing listens on the port: the broker was not started (except for the password case)
    result = haocha("sim", "terminal", "--config", str(config), "--presses", "1", "--timeout", "8", timeout=60)
    assert result.returncode != 0  # the press was never acked
    reports = [line for line in result.stderr.splitlines() if "cannot connect to the MQTT broker" in line]
    host = "no-such-host.invalid" if mistake == "host" else "127.0.0.1"
    assert len(reports) == 1, result.stderr[-3000:]  # paho retried several times meanwhile
    assert f"at {host}:{hall.broker_port}: " in reports[0] and reason in reports[0]
    assert " ERROR " in reports[0]


def test_a_link_report_repeats_at_its_interval_and_counts_each_attempt_once(caplog: pytest.LogCaptureFixture) -> None:
    from protocol.transport import LinkReport

    now = [0.0]
    report = LinkReport(logging.getLogger("test.link"), "broker:1883", again_s=60, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "test.link")
    for second in range(0, 120, 2):  # a retry every 2 s for two minutes
        now[0] = second
        report._new_attempt()
        report.failed("ConnectionRefusedError: [Errno 111] Connection refused")
        report.failed("the disconnect that follows the same attempt")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all(r.levelno == logging.ERROR for r in caplog.records)
    assert "broker:1883: ConnectionRefusedError" in messages[0] and "31 failed attempts" in messages[1]
    report.connected()
    assert caplog.records[-1].getMessage() == "connected to the MQTT broker at broker:1883 after 60 failed attempts"


# -- the hub ------------------------------------------------------------------------------------


def test_a_second_hub_on_the_same_home_refuses_to_start_and_a_killed_hub_restarts(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    wait_for(lambda: "hub connected to" in hall.log("hub"), 20, "hub A to connect")
    hub_a = hall.procs["hub"]
    second = haocha("hub", "run", "--home", str(hall.home), timeout=30)
    assert second.returncode != 0
    assert error_lines(second.stderr) == [
        f"Error: another hub is running on {hall.home} (pid {hub_a.pid}); not starting"
    ]
    run_terminal(hall, "T01", 5)  # hub A still ingests
    assert hub_a.poll() is None and hall.log("hub").count("hub connected to") == 1  # never pushed off
    os.kill(hub_a.pid, signal.SIGKILL)  # the daemon alone: its writer may outlive it for a moment
    hub_a.wait(10)
    hall.start_hub()
    wait_for(lambda: hall.log("hub").count("hub connected to") == 2, 30, "the new hub to connect")
    run_terminal(hall, "T01", 5)
    assert_invariant(hall, ["T01"])


def run_terminal(hall: Hall, device: str, presses: int) -> None:
    proc = hall.sim_terminal(device, presses, 50)
    assert proc.wait(timeout=120) == 0, hall.log(f"sim-{device}")[-3000:]


def test_a_hub_whose_http_port_is_taken_exits_non_zero_with_one_line(hall: Hall) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", hall.http_port))
        taken.listen()
        result = haocha("hub", "run", "--home", str(hall.home), timeout=30)
    assert result.returncode != 0
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert re.fullmatch(rf"Error: cannot serve the HTTP API on 127\.0\.0\.1:{hall.http_port}: .+", lines[0])


# -- the demo and the Makefile ------------------------------------------------------------------


def test_the_demo_without_mosquitto_says_why(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    Hall(home, hall="DEMO", broker={"mosquitto": "/nonexistent/mosquitto"})
    result = haocha("demo", "--home", str(home), "--presses", "1", timeout=120)
    assert result.returncode != 0
    assert "/nonexistent/mosquitto not found" in result.stderr.splitlines()[-1], result.stderr[-3000:]
    assert "last lines of" in result.stderr and "kept in" in result.stderr


def test_make_counts_a_removed_but_not_purged_package_as_missing() -> None:
    """``dpkg -s`` succeeds for a package in state ``rc``; run as a user who cannot install, ``make``
    must say it is missing (a dpkg database of our own stands in for the system's)."""
    with tempfile.TemporaryDirectory() as folder:
        admin = Path(folder)
        admin.chmod(0o755)
        (admin / "info").mkdir()
        (admin / "updates").mkdir()
        (admin / "available").touch()
        (admin / "status").write_text(
            "Package: mosquitto\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 2.0.11\n"
            "Description: removed, config files left\n\n"
            "Package: socat\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.7\nDescription: s\n\n"
        )
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*as_user, "make", "-s", "-f", str(REPO / "Makefile"), "debs", "DEBS=mosquitto socat"],
            capture_output=True,
            text=True,
            cwd=folder,
            env={**os.environ, "DPKG_ADMINDIR": folder},
            timeout=30,
        )
    assert result.returncode != 0
    assert "missing Debian packages: run 'sudo apt-get install mosquitto' and try again" in result.stderr


def test_a_dead_daemon_thread_stops_the_hub_with_an_error(hall: Hall) -> None:
    """A thread of the daemon that dies (its HTTP server, the command publisher) stops the hub,
    and run() then raises, so `hub run` exits non-zero and systemd's Restart=on-failure acts."""
    from hub.daemon import HubDaemon

    daemon = HubDaemon(hall.config, hall.home)

    def boom() -> None:
        raise RuntimeError("the disk is gone")

    daemon._start_thread("commands", boom)
    daemon._threads[-1].join(5)
    assert daemon.stopping.is_set() and daemon.thread_died == "commands"
