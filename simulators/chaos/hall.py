"""The chaos hall: a whole hall on this machine whose processes faults kill and a supervisor
restarts, with every terminal reaching the broker through its own route of a fault proxy.

Layout of the run folder::

    hubfs/hall/    the hub's home (hub.toml, hub.db, mosquitto.db, devices/): a small tmpfs as
                   root, so that its disk can fill up; a plain folder otherwise
    terminals/DEV/ what a technician copied onto each terminal (terminal.toml with the proxy's
                   port), and what the terminal keeps there: journal, panel memory, control, ledger
    logs/          every process's log

The supervisor plays systemd's ``Restart=always``: a process that should run and exited by itself
is restarted a second later, and the exit is recorded (the bench reports them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from hub.config import DB_NAME
from hub.secrets import write_private
from hub.store.registry import add_item
from protocol.retry import Backoff
from terminal.config import load as load_terminal_config
from terminal.errors import JournalError
from terminal.journal import read_summary
from terminal.micro_host import journal_summary as micro_journal_summary

from ..business import BusinessSystem
from ..faultproxy import FaultProxy
from ..hall import Hall, free_port, port_open, wait_for
from .terminal import CONTROL_NAME, Control, Ledger, Orders

KINDS = ("gpio", "modbus", "serial", "micro")
ITEMS = ("11010000-XK-001", "11010000-SB-002", "11010000-GJ-003")
#: systemd's RestartSec for a process that exited by itself; doubled while it keeps failing.
RESTART_S = 1.0
RESTART_MAX_S = 8.0
#: Upstream sender settings: quick retries, so a drain after minutes down takes seconds.
#: Mosquitto's own default queue per offline client (haocha's is 100,000): a long hub outage
#: overflows it, and the broker drops messages it already PUBACKed (SPEC section 9).
BROKER = {"max_queued_messages": 1000}
UPSTREAM = {"poll_s": 0.5, "backoff_initial_s": 0.5, "backoff_max_s": 10.0, "timeout_s": 5.0, "totals_interval_s": 60}


@dataclasses.dataclass
class Exit:
    """A process that exited without being told to."""

    name: str
    code: int
    at_s: float
    last_line: str


@dataclasses.dataclass
class Seat:
    """One window's terminal as installed on its own device."""

    device: str
    window: str
    kind: str
    mode: str
    folder: Path
    orders: Orders = dataclasses.field(default_factory=Orders)
    journal_path: Path | None = None  #: read from the installed terminal.toml

    @property
    def config_path(self) -> Path:
        return self.folder / "terminal.toml"

    @property
    def process(self) -> str:
        return f"term-{self.device}"

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.folder)

    def order(self, **change: Any) -> None:
        self.orders = dataclasses.replace(self.orders, **change)
        Control(self.folder).write(self.orders)

    def journal(self) -> dict[str, Any] | None:
        """The journal summary on the terminal's disk, None before the terminal made one."""
        if self.journal_path is None:
            return None
        try:
            if self.kind == "micro":
                return micro_journal_summary(self.journal_path)
            return read_summary(self.journal_path)
        except (JournalError, OSError, ValueError):
            return None


class HubDisk:
    """The folder of the hub's home: a tmpfs of ``size_mb`` as root, so :meth:`fill` can fill it
    to the last block; without root a plain folder that cannot fill (``can_fill`` is False)."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.can_fill = os.geteuid() == 0
        if self.can_fill:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True)
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write until the file system is full (unbuffered: nothing left to fail at close)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 65536, 512, 1):
                block = b"\0" * size
                try:
                    while True:
                        os.write(fd, block)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def used_mb(self) -> float:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize / 2**20

    def close(self, keep: Path | None = None) -> None:
        """Unmount the tmpfs; copy what it holds (the hub's home) to ``keep`` first."""
        if self.can_fill:
            self.free()
            if keep is not None:
                shutil.copytree(self.path, keep, dirs_exist_ok=True)
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.can_fill = False


class ChaosHall:
    """Broker, hub, regional simulator, business system and terminals, kept running by a
    supervisor; a context manager that stops and removes everything it started."""

    def __init__(
        self,
        folder: Path,
        terminals: int,
        rate: float,
        seed: int,
        fail_rate: float,
        disk_mb: int,
        echo: Callable[[str], None],
    ) -> None:
        self.folder, self.rate, self.seed, self.echo = folder, rate, seed, echo
        self.t0 = time.monotonic()
        self.fail_rate = fail_rate
        self.business: BusinessSystem | None = None
        self.exits: list[Exit] = []
        self._wanted: set[str] = set()
        self._next_start: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self.disk = HubDisk(folder / "hubfs", disk_mb)
        try:
            self.regional_url = f"http://127.0.0.1:{free_port()}"
            upstream = {**UPSTREAM, "url": self.regional_url}
            self.hall = Hall(self.disk.path / "hall", hall="CHAOS", upstream=upstream, broker=BROKER)
            self.hall.logs = folder / "logs"
            self.proxy = FaultProxy("127.0.0.1", self.hall.broker_port).start()
            self.seats = self._provision(terminals)
        except BaseException:
            self.disk.close()
            raise

    # -- provisioning -------------------------------------------------------------------------
    def _provision(self, n: int) -> dict[str, Seat]:
        """One terminal per window; kinds in turn, each kind free and invited."""
        with self.hall.store() as store:
            for code in ITEMS:
                add_item(store, code, f"item {code}")
        seats = {}
        for i in range(n):
            device, window = f"T{i + 1:02d}", f"W{i + 1:02d}"
            kind, mode = KINDS[i % len(KINDS)], "invited" if (i // len(KINDS)) % 2 else "free"
            self.hall.add_device(device, window, kind=kind, mode=mode)
            seats[device] = Seat(device, window, kind, mode, self.folder / "terminals" / device)
            self.proxy.add_route(device)
            self.install(seats[device])
        return seats

    def install(self, seat: Seat) -> None:
        """A technician copies the device's folder from the hub onto the terminal: the files
        ``device add`` wrote (the CA certificate too, once there is one), with the broker port
        pointing at the terminal's route through the fault proxy. The terminal's own files
        (journal, panel memory, ledger) stay."""
        source = self.hall.terminal_config(seat.device).parent
        seat.folder.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.is_file() and path.name != "terminal.toml":
                shutil.copy2(path, seat.folder / path.name)
        data = tomllib.loads(self.hall.terminal_config(seat.device).read_text())
        data["broker"]["port"] = self.proxy.port(seat.device)
        if seat.kind != "micro":
            data["clock"] = "synced"  # a jumped clock then moves the days events count on
        write_private(seat.config_path, tomli_w.dumps(data).encode())
        seat.journal_path = load_terminal_config(seat.config_path).journal_path
        if not (seat.folder / CONTROL_NAME).exists():
            seat.order()

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str) -> None:
        home = str(self.hall.home)
        if name == "broker":
            self.hall.spawn(name, "broker", "run", "--home", home)
        elif name == "hub":
            self.hall.spawn(name, "hub", "run", "--home", home)
        elif name == "regional":
            listen = self.regional_url.removeprefix("http://")
            fail = ("--fail-rate", str(self.fail_rate), "--seed", str(self.seed))
            self.hall.spawn(name, "sim", "regional", "--listen", listen, *fail)
        else:
            seat = self.seats[name.removeprefix("term-")]
            args = ["--config", str(seat.config_path), "--rate", str(self.rate), "--seed", str(self.seed)]
            self.hall.spawn(name, *args, module="simulators.chaos.terminal")

    def start(self, name: str) -> None:
        """Run ``name`` from now on (the supervisor keeps it running)."""
        with self._lock:
            self._wanted.add(name)
            proc = self.hall.procs.get(name)
            if proc is None or proc.poll() is not None:
                self._spawn(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal ``name``'s process group and reap it; it stays down until :meth:`start`."""
        with self._lock:
            self._wanted.discard(name)
            self.hall.kill(name, sig)

    def unwatch(self, name: str) -> None:
        """Stop keeping ``name`` running, and do not count its exit: a fault is about to end it."""
        with self._lock:
            self._wanted.discard(name)

    def running(self, name: str) -> bool:
        proc = self.hall.procs.get(name)
        return proc is not None and proc.poll() is None

    def _supervise(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                for name in sorted(self._wanted):
                    self._keep(name)

    def _keep(self, name: str) -> None:
        proc = self.hall.procs.get(name)
        if proc is not None and proc.poll() is None:
            return
        now = time.monotonic()
        if proc is not None:  # it exited by itself
            self.hall.procs.pop(name)
            self.exits.append(Exit(name, proc.returncode, now - self.t0, self.hall.last_line(name)))
            self.echo(f"  {name} exited with code {proc.returncode}: {self.hall.last_line(name)}")
            backoff = self._backoff.setdefault(name, Backoff(RESTART_S, RESTART_MAX_S))
            self._next_start[name] = now + backoff.failed()
        if now >= self._next_start.get(name, 0.0):
            self._spawn(name)

    def start_all(self) -> None:
        """Regional simulator, broker, hub, business system, terminals; the supervisor."""
        for name in ("regional", "broker", "hub"):
            self.start(name)
        self.hall.wait_listening("broker", self.hall.broker_port, 30)
        self.hall.wait_listening("hub", self.hall.http_port, 60)
        wait_for(lambda: port_open(int(self.regional_url.rsplit(":", 1)[1])), 30, "the regional simulator")
        for seat in self.seats.values():
            self.start(seat.process)
        self._supervisor.start()
        invited = [s.window for s in self.seats.values() if s.mode == "invited"]
        if invited:
            url = f"http://127.0.0.1:{self.hall.http_port}"
            self.business = BusinessSystem(url, self.hall.config.http.token, invited, list(ITEMS), 1 / self.rate)
            self.business.start()

    def stop_business(self) -> None:
        if self.business is not None:
            self.business.stop()

    # -- the regional system ------------------------------------------------------------------
    def regional(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET ``path`` of the regional simulator, or POST ``body`` to it; the decoded answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.regional_url + path, data=data, method="GET" if body is None else "POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    # -- reading the hall ---------------------------------------------------------------------
    @contextmanager
    def hub_db(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to hub.db (works while its disk is full)."""
        conn = sqlite3.connect(f"file:{self.hall.home / DB_NAME}?mode=ro", uri=True, timeout=10)
        try:
            yield conn
        finally:
            conn.close()

    def journals(self) -> dict[str, dict[str, Any] | None]:
        return {device: seat.journal() for device, seat in self.seats.items()}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- life cycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        self.stop_business()
        with self._lock:
            self._wanted.clear()
            for seat in self.seats.values():
                self.hall.kill(seat.process, signal.SIGTERM)
            self.hall.kill("regional", signal.SIGTERM)
            self.hall.stop_all()
        self.proxy.close()
        self.disk.close(keep=self.folder / "hub-disk")

    def __enter__(self) -> ChaosHall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
