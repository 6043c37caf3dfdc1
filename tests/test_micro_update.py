"""Firmware updates of MicroPython boards (SPEC section 13), in the unix port with the simulated
board, a real Mosquitto, the stand-in hub and a real HTTP server holding the release: staged and
checked against a manifest signed for that board, switched at boot, confirmed once the new firmware
reached the hub, reverted at the next boot when it did not; refused and reported for every way a
release can be wrong; whole across kill -9; never started during an invitation. Presses before,
during and after reach the hub, each once (SPEC section 9)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal.micro_host import MicroSimError, SimBoardProcess, compile_firmware, journal_summary, write_sim_config

from .micro_harness import KEY_HEX, Broker, StandInHub, make_config, wait_for
from .micro_release import (
    ReleaseServer,
    StateWatcher,
    build_release,
    folder_digest,
    source,
    update_command,
)

KEY = bytes.fromhex(KEY_HEX)
OLD_FW = "micro-0.1.0"  # uplink.FW of the firmware as provisioned


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as b:
        yield b


@pytest.fixture
def hub(broker: Broker) -> Iterator[StandInHub]:
    with StandInHub("H1", broker.port, {"M01": KEY}, broker.ca) as h:
        yield h


@pytest.fixture
def watcher(broker: Broker) -> Iterator[StateWatcher]:
    with StateWatcher(broker.port, broker.ca) as w:
        yield w


@pytest.fixture
def releases(tmp_path: Path) -> Iterator[ReleaseServer]:
    with ReleaseServer(tmp_path / "releases") as server:
        yield server


def start_board(tmp_path: Path, broker: Broker, mode: str = "free", **cfg: Any) -> SimBoardProcess:
    """A board with its firmware compiled in ``tmp_path/board`` (its flash) and ``cfg`` set in
    config.json."""
    config = make_config(tmp_path / "dev", broker.port, mode=mode, ca=broker.ca)
    path = write_sim_config(config, tmp_path, keep_lockout=False)
    settings = json.loads(path.read_text())
    settings.update(cfg)
    path.write_text(json.dumps(settings))
    board = SimBoardProcess(path, code_dir=compile_firmware(tmp_path / "board"))
    return board.start()


def connected(board: SimBoardProcess) -> None:
    wait_for(lambda: board.status()["connected"], 15, "the board's MQTT link")


def press_all(board: SimBoardProcess, n: int, timeout: float = 30) -> list[int]:
    """``n`` ratings, each pressed again if the board restarted before it read the key (a key
    read is committed and answered before the firmware resets); their seqs."""
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while len(seqs) < n:
        assert time.monotonic() < deadline, f"presses not taken: {board.log[-20:]}"
        while not board.lines.empty():  # a "started" line seen now is of a later run than this press
            board.lines.get_nowait()
        try:
            board.send("press satisfied")
            reply = board.expect("commit |nocommit|started ", 20)
        except MicroSimError:  # between two runs of the interpreter
            time.sleep(0.05)
            continue
        if reply.startswith("commit "):
            _word, seq, kind = reply.split()
            assert kind == "rating"
            seqs.append(int(seq))
    return seqs


def reported(board: SimBoardProcess, watcher: StateWatcher, release: str, phase: str, timeout: float = 60) -> Any:
    """The board's state once it reports ``release`` at ``phase`` (its log and states if never)."""
    try:
        return watcher.wait_phase(release, phase, timeout)
    except TimeoutError as exc:
        states = [s.get("update") for s in watcher.states]
        raise AssertionError(f"{exc}\nlog: {board.log[-30:]}\nupdate states: {states}") from None


def assert_once(hub: StandInHub, journal: Path) -> dict[str, Any]:
    """Every journaled event is at the hub, once (SPEC section 9)."""
    wait_for(lambda: journal_summary(journal)["pending"] == 0, 30, "every event acked")
    summary = journal_summary(journal)
    assert hub.seqs("M01", summary["epoch"]) == list(range(1, summary["last_seq"] + 1))
    assert hub.rejected == 0
    return summary


def test_a_good_release_is_staged_switched_at_boot_and_confirmed(
    tmp_path: Path, broker: Broker, hub: StandInHub, watcher: StateWatcher, releases: ReleaseServer
) -> None:
    files = build_release(tmp_path, "micro-0.2.0")
    m = releases.publish("micro-0.2.0", files)
    with start_board(tmp_path, broker) as board:
        connected(board)
        before = press_all(board, 5)
        config_before = board.config_path.read_bytes()
        watcher.send(update_command(m, KEY, releases.url("micro-0.2.0")))
        during = press_all(board, 5)  # the download goes on in pieces between the keys
        state = reported(board, watcher, "micro-0.2.0", "confirmed")
        assert state["fw"] == "micro-0.2.0"
        # took the command; staged at boot; switching when no rating is under way; switched at boot
        assert board.resets == 4
        after = press_all(board, 5)
        assert before + during + after == list(range(1, 16))
        summary = assert_once(hub, tmp_path / "dev" / "journal")
        assert summary["last_seq"] == 15
        phases = watcher.phases("micro-0.2.0")
        assert phases.index("downloading") < phases.index("verified") < phases.index("confirmed")
        assert board.config_path.read_bytes() == config_before  # never touched
        flash = tmp_path / "board"
        assert folder_digest(flash, lambda n: not n.startswith(("boot", "sim_board"))) == folder_digest(
            releases.root / "micro-0.2.0"
        ) | {"release.txt": folder_digest(flash)["release.txt"]}
        assert (flash / "release.txt").read_text() == "micro-0.2.0"
        assert board.quit() == 0
        assert not board.loop_errors
