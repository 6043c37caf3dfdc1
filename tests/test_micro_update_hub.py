"""A firmware update from the real hub (SPEC section 13): ``release build --kind micro`` from this
source tree, ``release rollout`` to a board, the hub's command and its ``/fleet/releases/`` files,
the board (the unix port with the simulated board) staging, switching and confirming, the hub's
``release status`` following it, and every press at the hub once (SPEC section 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from simulators.hall import Hall, wait_for

    from .invariant import assert_invariant
except ImportError as exc:  # this branch alone: the hub lives on main
    pytest.skip(f"the real hub is not available: {exc}", allow_module_level=True)

from terminal.config import load
from terminal.micro_host import MicroSimError, SimBoardProcess, compile_firmware, journal_summary, write_sim_config

REPO = Path(__file__).resolve().parent.parent


def haocha(home: Path, *args: str) -> str:
    command = [sys.executable, "-m", "haocha", *args, "--home", str(home)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def press(board: SimBoardProcess, n: int) -> None:
    """``n`` ratings, each pressed again when the board restarted before it read the key."""
    done = 0
    while done < n:
        while not board.lines.empty():
            board.lines.get_nowait()
        try:
            board.send("press satisfied")
            if board.expect("commit |nocommit|started ", 20).startswith("commit "):
                done += 1
        except MicroSimError:
            wait_for(lambda: board.proc is not None and board.proc.poll() is None, 20, "the board back")


def test_a_release_from_the_hub_is_confirmed_on_a_board(running_hall: Hall, tmp_path: Path) -> None:
    hall = running_hall
    hall.add_device("M01", "W01", kind="micro")
    config = load(hall.terminal_config("M01"))
    sim_config = write_sim_config(config, tmp_path, keep_lockout=False)
    with SimBoardProcess(sim_config, code_dir=compile_firmware(tmp_path / "board")) as board:
        board.start()
        wait_for(lambda: board.status()["connected"], 20, "the board's link")
        press(board, 3)
        haocha(hall.home, "release", "build", "--kind", "micro", "--release", "micro-9.0")
        haocha(hall.home, "release", "rollout", "micro-9.0", "--device", "M01")

        def phase() -> str:
            rows = [r for r in haocha_json(hall.home) if r["device"] == "M01"]
            return str(rows[0]["phase"]) if rows else ""

        press(board, 3)  # while the hub's command is on its way and the board stages it
        try:
            wait_for(lambda: phase() == "confirmed", 90, "the hub to see the release confirmed")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {phase()}; {board.log[-20:]}") from None
        press(board, 3)
        assert board.resets == 4  # took the command, staged, switching, switched
        assert any("switched to release micro-9.0" in line for line in board.log)
        assert board.status()["connected"]
        wait_for(lambda: journal_summary(config.journal_path)["pending"] == 0, 30, "every event acked")
        assert board.quit() == 0
    assert journal_summary(config.journal_path)["last_seq"] == 9
    assert_invariant(hall, ["M01"])


def haocha_json(home: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(haocha(home, "release", "status", "micro-9.0", "--format", "json"))
    return rows
