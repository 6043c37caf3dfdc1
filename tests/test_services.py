"""Services (SPEC section 11): the systemd units, the notify protocol and the broker's files.

Without systemd here, the tests play its part: a datagram socket receives what the hub and the
terminal send to ``$NOTIFY_SOCKET``, and a watchdog like systemd's (no ``WATCHDOG=1`` for
``$WATCHDOG_USEC``: the process hangs) watches them while a test stops them with SIGSTOP.
``systemd-analyze`` rates and verifies the unit files offline.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import broker
from hub.daemon import WRITER_SILENT_S
from hub.secrets import write_private
from protocol.sdnotify import Notifier
from simulators.hall import Hall, child_pids, port_open, wait_for
from simulators.serial_panel import SerialPanelSim
from terminal.config import load as load_terminal_config
from terminal.panels.buttons import button_map
from tests.helpers_panels import write_config

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "systemd").glob("*.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
#: What systemd-analyze says about a line of a unit it cannot use (``FILE:LINE: Unknown key …``):
#: it still exits 0, and the option is silently missing from the sandbox.
UNIT_LINE_WARNING = re.compile(r"\.(service|path):\d+: ")


# -- the units ------------------------------------------------------------------------------


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_every_unit_rates_ok_or_better(unit: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr[-500:]
    assert float(found[1]) < 5.0, f"{unit.name}: {found[1]} {found[2]}"
    assert not UNIT_LINE_WARNING.search(done.stderr), done.stderr


@needs_systemd_analyze
def test_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` in a root of our own: the units, the systemd units they name, and
    a stand-in for every program they run (it checks that each one is there and executable)."""
    assert SYSTEMD_ANALYZE is not None
    root = tmp_path / "root"
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/systemd").symlink_to("/usr/lib/systemd")
    files = sorted(f for f in (ROOT / "systemd").iterdir() if f.suffix in (".service", ".path", ".timer"))
    for unit in files:
        shutil.copy(unit, units)
        for program in re.findall(r"^Exec\w+=[-+!@:]*(/\S+)", unit.read_text(), re.MULTILINE):
            stand_in = root / program.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
    for unit in files:
        done = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", f"--root={root}", str(units / unit.name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        about_ours = [line for line in done.stderr.splitlines() if "haocha" in line]
        assert done.returncode == 0 and not about_ours, f"{unit.name}:\n{done.stderr[-2000:]}"


HALL_UNITS = ("haocha-hub.service", "haocha-broker.service")


def test_hub_and_terminal_units_use_notify_and_watchdog() -> None:
    for name in ("haocha-hub.service", "haocha-terminal.service"):
        text = (ROOT / "systemd" / name).read_text()
        assert "Type=notify" in text and re.search(r"^WatchdogSec=\d+", text, re.MULTILINE), name
    broker_unit = (ROOT / "systemd/haocha-broker.service").read_text()
    assert "MemoryMax=" in broker_unit
    users = [re.findall(r"^User=(\S+)", (ROOT / "systemd" / n).read_text(), re.MULTILINE) for n in HALL_UNITS]
    assert users[0] != users[1], "the hub and the broker run as different users"


# -- the notify protocol --------------------------------------------------------------------


class NotifyListener:
    """systemd's side of sd_notify: records every datagram's fields with the time it came."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def env(self, watchdog_s: float) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.address, "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}

    def times(self, key: str, value: str = "1") -> list[float]:
        with self._lock:
            return [at for at, fields in self.messages if fields.get(key) == value]

    def last_status(self) -> str:
        with self._lock:
            return next((f["STATUS"] for _, f in reversed(self.messages) if "STATUS" in f), "")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    sock = NotifyListener(f"@haocha-test-{uuid.uuid4().hex}")  # the abstract namespace, as systemd uses
    try:
        yield sock
    finally:
        sock.close()


def hang_detected_after(listener: NotifyListener, interval: float, since: float, limit: float) -> float:
    """A watchdog as systemd's: the process hangs once no WATCHDOG=1 came for ``interval`` seconds.
    Returns the seconds from ``since`` until it saw the hang; AssertionError after ``limit``."""
    while True:
        now = time.monotonic()
        pings = listener.times("WATCHDOG")
        if pings and now - pings[-1] > interval:
            return now - since
        assert now - since < limit, f"the pings went on for {limit:.0f}s"
        time.sleep(0.02)


def watch_healthy(listener: NotifyListener, interval: float, seconds: float) -> None:
    """For ``seconds``, the pings must keep coming: no gap of ``interval`` (systemd would kill)."""
    start = time.monotonic()
    wait_for(lambda: time.monotonic() - start > seconds, seconds + 1, "a healthy stretch")
    pings = [t for t in listener.times("WATCHDOG") if t >= start - interval]
    assert len(pings) >= 2, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)] + [time.monotonic() - pings[-1]]
    assert max(gaps) < interval, gaps


def test_notifier_outside_systemd_does_nothing() -> None:
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready("x") and not quiet.watchdog()
    assert Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled is False


def test_notifier_path_socket_and_watchdog_pacing(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    got = NotifyListener(path)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        assert notifier.watchdog_s == pytest.approx(0.4)
        assert notifier.ready("up\nand running")
        sent = sum(notifier.watchdog(lambda: "fine") for _ in range(1000))  # a hot loop: one ping
        assert sent == 1
        wait_for(lambda: notifier.watchdog(), 2, "half the watchdog interval to pass")
        notifier.stopping()
        wait_for(lambda: len(got.messages) == 4, 5, "four datagrams")
        fields = [f for _, f in got.messages]
        assert fields[0] == {"READY": "1", "STATUS": "up and running"}
        assert fields[1] == {"WATCHDOG": "1", "STATUS": "fine"} and fields[2] == {"WATCHDOG": "1"}
        assert fields[3]["STOPPING"] == "1"
        notifier.close()
    finally:
        got.close()


def test_watchdog_of_another_process_is_not_ours() -> None:
    """A child that inherited the variables (the hub's writer, Mosquitto under `broker run`)."""
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(env).watchdog_s is None
    assert Notifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 1.0


# -- the hub under a watchdog -----------------------------------------------------------------

HUB_WATCHDOG_S = 3.0  # the hub pings at least every half of it plus its 0.5 s loop


def start_hub(hall: Hall, env: dict[str, str]) -> subprocess.Popen[bytes]:
    hall.logs.mkdir(exist_ok=True)
    with open(hall.logs / "hub.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "haocha", "hub", "run", "--home", str(hall.home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )


@pytest.fixture
def hub_under_watchdog(hall: Hall, listener: NotifyListener) -> Iterator[subprocess.Popen[bytes]]:
    """``hub run`` with $NOTIFY_SOCKET and $WATCHDOG_USEC, and no broker: it writes the broker's
    files itself, and is ready without a broker (its MQTT loop keeps trying)."""
    proc = start_hub(hall, listener.env(HUB_WATCHDOG_S))
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_hub_ready_watchdog_and_a_hang(
    hall: Hall, listener: NotifyListener, hub_under_watchdog: subprocess.Popen[bytes]
) -> None:
    hub = hub_under_watchdog
    wait_for(lambda: listener.times("READY"), 60, "READY=1 from the hub")
    assert port_open(hall.http_port), "READY=1 before the HTTP API serves"
    assert (broker.broker_dir(hall.home) / "mosquitto.conf").exists(), "READY=1 before the broker's files"
    assert "waiting for the broker" in listener.last_status()
    watch_healthy(listener, HUB_WATCHDOG_S, 2 * HUB_WATCHDOG_S)

    os.kill(hub.pid, signal.SIGSTOP)  # the daemon hangs; its writer runs on
    assert hang_detected_after(listener, HUB_WATCHDOG_S, time.monotonic(), 4 * HUB_WATCHDOG_S) <= 2 * HUB_WATCHDOG_S
    resumed = time.monotonic()
    os.kill(hub.pid, signal.SIGCONT)
    wait_for(lambda: listener.times("WATCHDOG")[-1] > resumed, HUB_WATCHDOG_S, "the pings to resume")

    hub.send_signal(signal.SIGTERM)
    assert hub.wait(30) == 0
    assert listener.times("STOPPING")


def test_hub_with_a_stuck_writer_stops_pinging(
    hall: Hall, listener: NotifyListener, hub_under_watchdog: subprocess.Popen[bytes]
) -> None:
    """Wedged but alive: every thread of the daemon runs, the writer is stopped (SIGSTOP)."""
    hub = hub_under_watchdog
    wait_for(lambda: listener.times("READY"), 60, "READY=1 from the hub")
    watch_healthy(listener, HUB_WATCHDOG_S, HUB_WATCHDOG_S)
    (writer,) = child_pids(hub.pid)
    os.kill(writer, signal.SIGSTOP)
    limit = WRITER_SILENT_S + 2 * HUB_WATCHDOG_S
    assert hang_detected_after(listener, HUB_WATCHDOG_S, time.monotonic(), limit + HUB_WATCHDOG_S) <= limit
    assert hub.poll() is None and port_open(hall.http_port), "the daemon itself is alive"
    resumed = time.monotonic()
    os.kill(writer, signal.SIGCONT)  # it answers the heartbeats waiting in its pipe
    wait_for(lambda: listener.times("WATCHDOG")[-1] > resumed, HUB_WATCHDOG_S, "the pings to resume")
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(30) == 0


# -- the terminal under a watchdog ------------------------------------------------------------

TERMINAL_WATCHDOG_S = 2.0  # the terminal pings from its 0.1 s tick


def test_terminal_ready_watchdog_and_a_hang(tmp_path: Path) -> None:
    listener = NotifyListener(str(tmp_path / "notify"))  # a path socket, as some containers use
    config_path = write_config(tmp_path, "serial", "socket://127.0.0.1:1")
    config = load_terminal_config(config_path)
    panel = SerialPanelSim(button_map(config.serial, config.reasons), repeat_s=0.05)
    panel.start()
    config_path = write_config(tmp_path, "serial", panel.url)
    cmd = [sys.executable, "-m", "haocha", "terminal", "run", "--config", str(config_path)]
    env = {**listener.env(TERMINAL_WATCHDOG_S), "PYTHONPATH": str(ROOT)}
    term = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listener.times("READY"), 30, "READY=1 from the terminal")
        assert (tmp_path / "journal.db").exists(), "READY=1 before the journal is open"
        watch_healthy(listener, TERMINAL_WATCHDOG_S, 2 * TERMINAL_WATCHDOG_S)

        os.kill(term.pid, signal.SIGSTOP)
        hang = hang_detected_after(listener, TERMINAL_WATCHDOG_S, time.monotonic(), 4 * TERMINAL_WATCHDOG_S)
        assert hang <= 2 * TERMINAL_WATCHDOG_S
        resumed = time.monotonic()
        os.kill(term.pid, signal.SIGCONT)
        wait_for(lambda: listener.times("WATCHDOG")[-1] > resumed, TERMINAL_WATCHDOG_S, "the pings to resume")

        term.send_signal(signal.SIGTERM)
        assert term.wait(15) == 0
        assert listener.times("STOPPING")
    finally:
        if term.poll() is None:
            term.send_signal(signal.SIGCONT)
            term.kill()
            term.wait()
        panel.stop()
        listener.close()


# -- who writes what --------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hub_writes_the_broker_files_group_readable_and_keeps_them_current(
    hall: Hall, listener: NotifyListener, hub_under_watchdog: subprocess.Popen[bytes]
) -> None:
    """Under systemd no `broker run` writes the broker's files: the hub does, at start and after
    every registry change; they are readable through the group, everything else stays 0600."""
    folder = broker.broker_dir(hall.home)
    wait_for(lambda: listener.times("READY"), 60, "READY=1 from the hub")
    assert mode(folder) == broker.SHARED_DIR_MODE
    for name in ("mosquitto.conf", "passwd", "acl"):
        assert mode(folder / name) == broker.SHARED_FILE_MODE, name
        assert (folder / name).stat().st_gid == os.getgid(), name
    assert "persistence_location" not in (folder / "mosquitto.conf").read_text()  # the broker's own folder

    hall.add_device("T02", "W01")  # as `device add` does, while the hub runs
    wait_for(lambda: "\nT02:" in (folder / "passwd").read_text(), 10, "the hub to rewrite the password file")
    for path in (hall.home / "hub.toml", hall.home / "hub.db", hall.terminal_config("T02")):
        assert mode(path) == 0o600, path
    assert not list(folder.glob("*.tmp"))
    if os.geteuid() == 0:
        assert_only_broker_files_readable_through_the_group(hall.home)


def assert_only_broker_files_readable_through_the_group(home: Path) -> None:
    """Read as another user (``nobody``) in the hub's group, as the broker's user is: from inside the
    home, opened to the group for the look (under systemd the broker's folder is bound into its
    view and the rest of the home is hidden; here the files' own modes must keep the secrets)."""
    home.chmod(0o710)
    paths = ["broker/passwd", "broker/acl", "broker/mosquitto.conf"]
    secrets = ["hub.toml", "hub.db", "hub.db-wal", "devices/T02/terminal.toml"]
    script = 'for p; do if cat "$p" > /dev/null 2>&1; then echo "$p read"; else echo "$p refused"; fi; done'
    done = subprocess.run(
        ["/bin/sh", "-c", script, "sh", *paths, *secrets],
        cwd=home,  # entered before the user changes: the folders above the home stay closed
        user=65534,
        group=65534,
        extra_groups=[os.getgid()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    expected = [f"{p} read" for p in paths] + [f"{p} refused" for p in secrets]
    assert done.stdout.splitlines() == expected, done.stdout + done.stderr


def test_broker_run_keeps_mosquittos_persistence_in_its_working_directory(hall: Hall) -> None:
    """`broker run` starts Mosquitto in the home: mosquitto.db is where it always was."""
    hall.start_broker()
    hall.kill("broker", signal.SIGTERM)
    assert (hall.home / "mosquitto.db").exists()


def test_two_writers_of_one_file_do_not_trip_over_each_other(tmp_path: Path) -> None:
    """`broker run` and `hub run` both write the broker's files (one home, one user)."""
    target = tmp_path / "passwd"
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(300):
                write_private(target, text.encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c * 100,)) for c in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert target.read_text() in ("a" * 100, "b" * 100)
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_private(tmp_path / "passwd", b"x")
    assert list(tmp_path.iterdir()) == []
