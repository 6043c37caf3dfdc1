"""Updates of terminals of every kind end to end (SPEC section 13, issue 14): broker, hub, and
terminals installed in two slots by the hub's own install script (GPIO keys, a Modbus panel; a
serial panel's terminal from the hub's folder stays out of every rollout), each run through the
launcher by a stand-in for systemd (``Restart=always``), and a MicroPython board (the unix port
with the simulated board, its resets included), all pressing steadily. A good release rolled out
in stages is confirmed where it was rolled out and nowhere else; a release that fails its
self-test (for the board: a firmware that cannot reach the hub) rolls back by itself and pauses
the rollout; ``kill -9`` mid-download and during the trial boot end on a working slot; every press
reaches the hub once (SPEC section 9) and the versions the terminals report are right."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hub.fleet import _package_sources
from simulators.hall import Hall, wait_for
from simulators.invariant import section9
from terminal import micro_host
from terminal.config import load
from terminal.micro_host import MicroSimError, SimBoardProcess, compile_firmware, write_sim_config
from terminal.summary import journal_summary

REPO = Path(__file__).resolve().parent.parent
STATE = "var/lib/haocha-terminal"
OPT = "opt/haocha"
INSTALL_S = 240  # a venv and pip from the hub's wheelhouse, on a loaded 2-core machine


def haocha(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "haocha", *args, "--home", str(home)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)


def build_wheel(version: str, into: Path, broken: bool = False) -> Path:
    """The haocha wheel of this tree as release ``version``; ``broken``: its self-test never
    passes (and gives up after 3 s), like a release that cannot reach its panel."""
    tree = into / f"src-{version}"
    tree.mkdir(parents=True)
    _package_sources(REPO, tree)
    for name, old, new in (
        ("pyproject.toml", 'version = "0.1.0"', f'version = "{version}"'),
        ("terminal/__init__.py", '__version__ = "0.1.0"', f'__version__ = "{version}"'),
    ):
        text = (tree / name).read_text()
        assert old in text
        (tree / name).write_text(text.replace(old, new))
    if broken:
        with open(tree / "terminal" / "runner.py", "a") as runner:
            runner.write("\n\ndef _fails(self: Terminal) -> list[str]:\n    return ['built to fail its self-test']\n")
            runner.write("\n\nTerminal.self_test = _fails  # type: ignore[method-assign]\n")
        with open(tree / "terminal" / "updater.py", "a") as updater:
            updater.write("\nSELF_TEST_S = 3.0\n")
    wheels = into / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel", "--no-deps"]
    subprocess.run([*pip, "--wheel-dir", str(wheels), str(tree)], check=True, capture_output=True, timeout=300)
    return next(wheels.glob(f"haocha-{version}-*.whl"))


class SlottedTerminal:
    """A Pi below ``root``: installed by the hub's script, run through the launcher, restarted
    whenever it exits (as systemd's Restart=always does), pressing steadily."""

    def __init__(self, hall: Hall, device: str, script: bytes, root: Path) -> None:
        self.hall, self.device, self.root = hall, device, root
        usb = root / "usb" / device
        shutil.copytree(hall.terminal_config(device).parent, usb)
        done = subprocess.run(
            ["sh", "-s", "--", "--root", str(root), str(usb)], input=script, capture_output=True, timeout=INSTALL_S
        )
        assert done.returncode == 0, done.stderr.decode()
        self.config = root / STATE / "terminal.toml"
        self.launcher = root / OPT / "launcher.py"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _command(self, presses: int) -> list[str]:
        sim = ["sim", "terminal", "--config", str(self.config), "--presses", str(presses), "--rate", "3"]
        return ["python3", str(self.launcher), "--root", str(self.root / OPT), "--", *sim]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()
        wait_for(lambda: self.proc is not None, 10, f"{self.device} to start")

    def _supervise(self) -> None:
        with open(self.root / "terminal.log", "ab") as log:
            while not self._stopping.is_set():
                self.proc = subprocess.Popen(
                    self._command(100_000), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root
                )
                self.exits.append(self.proc.wait())

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """Whatever happened: no terminal of this test outlives it (idempotent)."""
        self._stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def stop_and_drain(self) -> dict[str, Any]:
        """Stop pressing, send what the journal holds; the journal's summary."""
        self._stopping.set()
        assert self.proc is not None and self._thread is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        self._thread.join(timeout=30)
        for _ in range(3):  # a Modbus panel may hand over a press it kept only after the first drain
            done = subprocess.run(self._command(0), capture_output=True, timeout=120, cwd=self.root)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            summary = journal_summary(self.config)
            if summary["pending"] == 0:
                break
        return summary

    def boot(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.root / OPT / "slots" / "boot.json").read_text()))
        except (OSError, ValueError):
            return {}

    def log(self) -> str:
        return (self.root / "terminal.log").read_text(errors="replace")[-3000:]


class PressingBoard:
    """A MicroPython board pressing a key every 0.3 s on its own thread, through the resets an
    update makes (a key the firmware read is committed and answered before it resets)."""

    def __init__(self, hall: Hall, device: str, folder: Path) -> None:
        self.journal = load(hall.terminal_config(device)).journal_path
        folder.mkdir(parents=True)
        sim_config = write_sim_config(load(hall.terminal_config(device)), folder, keep_lockout=False)
        settings = json.loads(sim_config.read_text())
        settings["update_trial_s"] = 5  # a firmware that cannot reach the hub gives up soon
        sim_config.write_text(json.dumps(settings))
        self.board = SimBoardProcess(sim_config, code_dir=compile_firmware(folder / "board"))
        self.commits = 0
        self.problems: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._press, daemon=True)

    def start(self) -> None:
        self.board.start()
        self._thread.start()

    def _press(self) -> None:
        board = self.board
        while not self._stopping.wait(0.3):
            try:
                board.send("press satisfied")
                if board.expect("commit |nocommit|started ", 20).startswith("commit "):
                    self.commits += 1
            except MicroSimError:  # resetting: the key was not read, press it again
                try:
                    wait_for(lambda: board.proc is not None and board.proc.poll() is None, 60, "the board back")
                except TimeoutError as exc:
                    self.problems.append(str(exc))
                    return

    def close(self) -> None:
        self._stopping.set()
        self.board.close()

    def stop_and_drain(self) -> dict[str, Any]:
        self._stopping.set()
        self._thread.join(timeout=30)
        wait_for(lambda: micro_host.journal_summary(self.journal)["pending"] == 0, 60, "the board's backlog")
        assert self.board.quit() == 0
        return micro_host.journal_summary(self.journal)


def build_micro_source(version: str, into: Path, unreachable: bool = False) -> Path:
    """This tree's sources; ``unreachable``: a firmware that never hears the hub (so it never
    confirms), the board's counterpart of a failed self-test."""
    tree = into / f"micro-{version}"
    tree.mkdir(parents=True)
    _package_sources(REPO, tree)
    if unreachable:
        uplink = tree / "terminal" / "micro" / "uplink.py"
        text = uplink.read_text()
        assert '"haocha/v1/%s/hub/state"' in text
        uplink.write_text(text.replace('"haocha/v1/%s/hub/state"', '"haocha/v1/%s/nohub/state"'))
    return tree


def state(hall: Hall, device: str) -> dict[str, Any]:
    with hall.store() as store:
        row = store.conn.execute("SELECT state FROM devices WHERE id = ?", (device,)).fetchone()
    return dict(json.loads(row[0])) if row and row[0] else {}


def phase(hall: Hall, release: str, device: str) -> str | None:
    rows = json.loads(haocha(hall.home, "release", "status", release, "--format", "json").stdout)
    return next((r["phase"] for r in rows if r["device"] == device), None)


def running(hall: Hall, device: str, version: str, update: tuple[str, str] | None) -> bool:
    """Does ``device`` say it runs ``version``, online, with that update state (release, phase)?"""
    now = state(hall, device)
    said = now.get("update")
    return (
        bool(now.get("online"))
        and now.get("fw") == version
        and (said is None if update is None else (said["release"], said["phase"]) == update)
    )


@pytest.mark.slow
def test_staged_rollout_good_and_bad_releases_and_kill_9(running_hall: Hall, tmp_path: Path) -> None:
    hall = running_hall
    for device, window, kind in (
        ("T01", "W01", "gpio"), ("T02", "W02", "modbus"), ("T03", "W03", "serial"), ("M04", "W04", "micro"),
    ):  # fmt: skip
        hall.add_device(device, window, kind)
    made = haocha(hall.home, "fleet", "wheelhouse", "--arch", "native")
    assert made.returncode == 0, made.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{hall.http_port}/fleet/install-terminal.sh", timeout=30) as r:
        script = r.read()
    pis = {d: SlottedTerminal(hall, d, script, tmp_path / d) for d in ("T01", "T02")}
    board = PressingBoard(hall, "M04", tmp_path / "M04")
    try:
        journals = _run(hall, pis, board, tmp_path)
    finally:  # a failure must not leave terminals pressing on after the test
        for pi in pis.values():
            pi.close()
        board.close()
    hall.kill("sim-T03", signal.SIGTERM)
    drained = hall.sim_terminal("T03", 0)
    assert drained.wait(timeout=120) == 0
    journals["T03"] = hall.journal("T03")
    for device, journal in journals.items():
        assert journal["last_seq"] > 0 and journal["pending"] == 0, (
            device,
            journal,
            pis.get(device) and pis[device].log(),
        )
    verdict = section9(hall, journals)  # every press of the whole run stored once, none missing
    assert not verdict.problems, verdict.problems
    assert state(hall, "T03").get("fw") == "0.1.0" and "update" not in state(hall, "T03")


def _board_rollouts(hall: Hall, board: PressingBoard) -> None:
    """The board: a good release confirmed; one that cannot reach the hub rolled back by itself."""
    wait_for(lambda: bool(state(hall, "M04").get("online")), 60, "the board online")
    first = state(hall, "M04").get("fw")
    assert haocha(hall.home, "release", "rollout", "micro-0.1.1", "--device", "M04").returncode == 0
    wait_for(lambda: phase(hall, "micro-0.1.1", "M04") == "confirmed", 120, "M04 to confirm micro-0.1.1")
    wait_for(lambda: running(hall, "M04", "micro-0.1.1", ("micro-0.1.1", "confirmed")), 30, "M04's state")
    assert haocha(hall.home, "release", "rollout", "micro-0.1.2", "--all").returncode == 0  # the boards only
    wait_for(lambda: phase(hall, "micro-0.1.2", "M04") == "rolled_back", 120, "M04 to roll micro-0.1.2 back")
    wait_for(lambda: running(hall, "M04", "micro-0.1.1", ("micro-0.1.2", "rolled_back")), 60, "M04 on micro-0.1.1")
    assert first != "micro-0.1.1" and any("switched to release micro-0.1.1" in line for line in board.board.log)
    devices = {d["device"]: d for d in json.loads(haocha(hall.home, "device", "list", "--format", "json").stdout)}
    assert devices["M04"]["firmware"] == "micro-0.1.1" and devices["M04"]["update"] == "micro-0.1.2 rolled_back"
    rows = json.loads(haocha(hall.home, "release", "status", "micro-0.1.2", "--format", "json").stdout)
    assert [r["device"] for r in rows] == ["M04"]  # --all of a board release: boards only


def _run(hall: Hall, pis: dict[str, SlottedTerminal], board: PressingBoard, tmp_path: Path) -> dict[str, Any]:
    """Every terminal pressing through the rollouts; the drained journals of T01, T02 and M04."""
    for pi in pis.values():
        pi.start()
    hall.sim_terminal("T03", 100_000, 3.0)  # from the hub's folder, not in slots: never in a rollout
    board.start()
    good = build_wheel("0.1.1", tmp_path / "good")
    bad = build_wheel("0.1.2", tmp_path / "bad", broken=True)
    for wheel in (good, bad):
        assert haocha(hall.home, "release", "build", "--wheel", str(wheel)).returncode == 0
    for release, unreachable in (("micro-0.1.1", False), ("micro-0.1.2", True)):
        source = build_micro_source(release, tmp_path, unreachable)
        built = haocha(hall.home, "release", "build", "--kind", "micro", "--release", release, "--source", str(source))
        assert built.returncode == 0, built.stderr
    try:
        _rollouts(hall, pis)
        _board_rollouts(hall, board)
    except BaseException:
        print({d: (pi.exits, pi.boot(), pi.log()) for d, pi in pis.items()}, board.board.log[-40:])
        print(hall.tails(("hub",)))
        raise
    journals = {d: pi.stop_and_drain() for d, pi in pis.items()}
    journals["M04"] = board.stop_and_drain()
    assert not board.problems and board.commits > 0, board.problems
    return journals


def _rollouts(hall: Hall, pis: dict[str, SlottedTerminal]) -> None:
    wait_for(lambda: all(running(hall, d, "0.1.0", None) for d in ("T01", "T02", "T03")), 60, "every terminal")
    # 1. a good release to one device: confirmed there, nowhere else
    assert haocha(hall.home, "release", "rollout", "0.1.1", "--device", "T01").returncode == 0
    wait_for(lambda: running(hall, "T01", "0.1.1", ("0.1.1", "confirmed")), INSTALL_S, "T01 to confirm 0.1.1")
    assert phase(hall, "0.1.1", "T01") == "confirmed" and phase(hall, "0.1.1", "T02") is None
    assert running(hall, "T02", "0.1.0", None)
    # 2. widened to a window; kill -9 mid-download: back on its slot, the update starts again
    assert haocha(hall.home, "release", "rollout", "0.1.1", "--window", "W02").returncode == 0
    wait_for(lambda: (pis["T02"].boot().get("pending") or {}).get("release") == "0.1.1", 60, "T02's download")
    pis["T02"].kill9()
    wait_for(lambda: running(hall, "T02", "0.1.1", ("0.1.1", "confirmed")), INSTALL_S, "T02 to confirm 0.1.1")
    # 3. a release that fails its self-test rolls back by itself, and pauses the rollout
    assert haocha(hall.home, "release", "rollout", "0.1.2", "--device", "T01").returncode == 0
    wait_for(lambda: running(hall, "T01", "0.1.1", ("0.1.2", "rolled_back")), INSTALL_S, "T01 to roll 0.1.2 back")
    status = haocha(hall.home, "release", "status", "0.1.2", "--format", "json")
    rows = json.loads(status.stdout)
    assert rows[0]["detail"] == "self-test failed: built to fail its self-test" and rows[0]["running"] == "0.1.1"
    assert status.stderr.startswith("rollout of 0.1.2 paused: T01 rolled back: self-test failed")
    paused = haocha(hall.home, "release", "rollout", "0.1.2", "--device", "T02")
    assert paused.returncode == 1 and "paused: T01 rolled back" in paused.stderr
    # 4. kill -9 during the trial boot: the launcher goes back to the slot that worked
    assert haocha(hall.home, "release", "rollout", "0.1.2", "--device", "T02", "--force").returncode == 0
    wait_for(lambda: (pis["T02"].boot().get("trial") or {}).get("boots") == 1, INSTALL_S, "T02's trial boot")
    pis["T02"].kill9()
    wait_for(lambda: running(hall, "T02", "0.1.1", ("0.1.2", "rolled_back")), 60, "T02 back on 0.1.1")
    assert phase(hall, "0.1.2", "T02") == "rolled_back"
    devices = {d["device"]: d for d in json.loads(haocha(hall.home, "device", "list", "--format", "json").stdout)}
    assert [devices[d]["firmware"] for d in ("T01", "T02", "T03")] == ["0.1.1", "0.1.1", "0.1.0"]
    assert devices["T01"]["update"] == "0.1.2 rolled_back" and devices["T03"]["update"] is None
