"""A whole hall on one machine: a hub home, its broker and hub processes, simulated terminals.

Used by ``haocha demo`` and by the test suite. Every process is the real program started as
``python -m haocha …`` in its own session, so tests can kill it (or its whole group) with SIGKILL.
Ports are free loopback ports chosen at start; nothing binds a fixed port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub import certs, provision
from hub import config as hub_config
from hub.stats import stats as hub_stats
from hub.store import Store
from hub.store import registry as reg
from protocol.errors import HaochaError
from protocol.transport import client_tls
from terminal.micro_host import board_files


class HallError(HaochaError, RuntimeError):
    """A process of the hall did not start, or exited; the message ends with its log's last line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` that are still there (Linux ``/proc``), e.g. the hub's writer."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Hall:
    def __init__(
        self,
        home: Path,
        hall: str = "H1",
        broker_port: int | None = None,
        http_port: int | None = None,
        **overrides: Any,
    ) -> None:
        self.home = home
        self.hall = hall
        self.broker_port = broker_port or free_port()
        self.http_port = http_port or free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = home / "logs"
        if not (home / hub_config.CONFIG_NAME).exists():
            self._init(overrides)
        self.config = hub_config.load(home)

    def _init(self, overrides: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        hub_config.write_new(self.home, self.hall, f"127.0.0.1:{self.broker_port}", f"127.0.0.1:{self.http_port}", "")
        if overrides:
            _merge_toml(self.home / hub_config.CONFIG_NAME, overrides)
        Store(self.home / hub_config.DB_NAME, create=True).close()
        certs.init_hall(self.home, hub_config.load(self.home))

    @property
    def ca(self) -> Path:
        """The hall CA's certificate: what a client trusts to talk to this hall's broker or HTTPS API."""
        return certs.paths(self.home).ca_cert

    def tls_context(self) -> ssl.SSLContext:
        """A TLS context for a test or bench client of this hall's broker (the hub's own trust)."""
        return client_tls(self.ca)

    def store(self) -> Store:
        return Store(self.home / hub_config.DB_NAME)

    # -- registry ---------------------------------------------------------------------------
    def add_window(self, window: str, name: str | None = None) -> None:
        with self.store() as store:
            reg.add_window(store, window, name or window, None)

    def add_device(self, device: str, window: str, kind: str = "gpio", mode: str = "free") -> Path:
        with self.store() as store:
            if not reg.window_exists(store, window):
                reg.add_window(store, window, window, None)
            return provision.add_device(store, self.config, self.home, device, window, kind, mode, board_files)

    def terminal_config(self, device: str) -> Path:
        return provision.device_dir(self.home, device) / "terminal.toml"

    # -- processes --------------------------------------------------------------------------
    def spawn(self, name: str, *args: str, module: str = "haocha") -> subprocess.Popen[bytes]:
        """Start ``python -m module args…`` (default: the ``haocha`` command line) as process ``name``
        in its own session, its output appended to ``logs/name.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_broker(self, fresh: bool = False) -> None:
        """Start ``broker run``; ``fresh`` deletes Mosquitto's persistence file first."""
        if fresh:
            (self.home / "mosquitto.db").unlink(missing_ok=True)
        self.spawn("broker", "broker", "run", "--home", str(self.home))
        self.wait_listening("broker", self.broker_port, 15)

    def start_hub(self) -> None:
        self.spawn("hub", "hub", "run", "--home", str(self.home))

    def wait_listening(self, name: str, port: int, timeout: float) -> None:
        """Wait until process ``name`` accepts connections on ``port``; HallError with the last
        line of its log as soon as it exits instead."""

        def up() -> bool:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                last = self.last_line(name).removeprefix("Error: ")
                raise HallError(f"the {name} process exited with code {proc.returncode}: {last}")
            return port_open(port)

        wait_for(up, timeout, f"{name} to listen on port {port}")

    def last_line(self, name: str) -> str:
        lines = self.log(name).strip().splitlines()
        return lines[-1][:300] if lines else "(nothing logged)"

    def tails(self, names: tuple[str, ...] = ("broker", "hub"), lines: int = 10) -> str:
        """The last lines of these processes' logs, for a person to see why a run failed."""
        parts = []
        for name in names:
            text = self.log(name).strip().splitlines()[-lines:]
            if text:
                parts.append(f"--- last lines of {self.logs / (name + '.log')}:\n" + "\n".join(t[:300] for t in text))
        return "\n".join(parts)

    def sim_terminal(
        self, device: str, presses: int, rate: float = 50.0, seed: int = 1, *extra: str
    ) -> subprocess.Popen[bytes]:
        return self.spawn(
            f"sim-{device}",
            "sim",
            "terminal",
            "--config",
            str(self.terminal_config(device)),
            "--presses",
            str(presses),
            "--rate",
            str(rate),
            "--seed",
            str(seed),
            *extra,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the process group of ``name`` (its children too) and reap it."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n.startswith("sim-")] + ["hub", "broker"]:
            self.kill(name, signal.SIGTERM)
        for name in list(self.procs):
            self.kill(name, signal.SIGKILL)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- reading results --------------------------------------------------------------------
    def stats(self, by: tuple[str, ...] = ("device",)) -> dict[str, Any]:
        with self.store() as store:
            return hub_stats(store, list(by), None, None, self.config.satisfaction_threshold)

    def journal(self, device: str) -> dict[str, Any]:
        from terminal.summary import journal_summary

        return journal_summary(self.terminal_config(device))

    def stored_seqs(self, device: str) -> list[tuple[str, int]]:
        with self.store() as store:
            return [
                (e, s)
                for e, s in store.conn.execute(
                    "SELECT epoch, seq FROM events WHERE device = ? ORDER BY epoch, seq", (device,)
                )
            ]

    def __enter__(self) -> Hall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _merge_toml(path: Path, overrides: dict[str, Any]) -> None:
    import tomllib

    import tomli_w

    data = tomllib.loads(path.read_text())
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path.write_text(tomli_w.dumps(data))


def json_line(text: str) -> Any:
    """The last JSON line of a command's output."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in {text!r}")
