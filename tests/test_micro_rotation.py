"""A MicroPython board survives a rotation without a visit (SPEC section 11): the firmware in
``micropython`` with its simulated board, against a real Mosquitto and a running hub.

The board's ``config.json`` is its flash: the file the firmware rewrites on a rekey, read again
when it restarts (a board killed with SIGKILL is a power cut)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from haocha.cli import main
from simulators.hall import Hall, wait_for
from terminal.config import load
from terminal.micro_host import SimBoardProcess, journal_summary, write_sim_config

from .mqtt_peer import publish_as_hub

try:
    from .micro_harness import make_config, run_micropython
    from .test_rotation import frame_outcomes, key_states  # what the hub made of a device's keys and frames
except ImportError:
    from micro_harness import make_config, run_micropython  # type: ignore[no-redef]
    from test_rotation import frame_outcomes, key_states  # type: ignore[no-redef]

WIFI = {"wifi": {"ssid": "hall-terminals", "password": "wifi secret"}, "ntp_host": "ntp.hall", "watchdog_s": 30}


class Board:
    """A board installed from the device's folder (a copy: the hub's files and the board's differ)."""

    def __init__(self, hall: Hall, device: str, folder: Path) -> None:
        shutil.copytree(hall.terminal_config(device).parent, folder)
        self.config = load(folder / "terminal.toml")
        self.path = write_sim_config(self.config, folder)
        self.edit(lambda cfg: cfg.update(WIFI))  # the technician fills in the hall's Wi-Fi
        self.proc: SimBoardProcess | None = None

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def edit(self, change: Any) -> None:
        cfg = self.json()
        change(cfg)
        self.path.write_text(json.dumps(cfg))

    def start(self) -> SimBoardProcess:
        self.proc = SimBoardProcess(self.path, code_dir=self.path.parent / "firmware" if self.proc else None).start(30)
        return self.proc

    def press(self, *levels: str) -> None:
        assert self.proc is not None
        for level in levels:
            assert self.proc.press(f"press {level}")[0] is not None

    def wait_drained(self) -> dict[str, Any]:
        summary: dict[str, Any] = wait_for(
            lambda: (s := journal_summary(self.config.journal_path))["pending"] == 0 and s, 60, "every event acked"
        )
        return summary

    def logged(self, text: str) -> list[str]:
        assert self.proc is not None
        return [line for line in self.proc.log if text in line]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
            print("\n".join(self.proc.log[-40:]))  # shown when the test failed


@pytest.fixture
def board(running_hall: Hall, tmp_path: Path) -> Iterator[Board]:
    running_hall.add_device("M01", "W01", kind="micro")
    b = Board(running_hall, "M01", tmp_path / "on-M01")
    b.edit(lambda cfg: cfg["timing"].update(lockout_s=0.0))
    try:
        yield b
    finally:
        b.close()


def stored(hall: Hall, device: str, epoch: str) -> list[tuple[int, int]]:
    """(seq, kid) of every event stored for ``device`` in ``epoch``, by seq."""
    with hall.store() as store:
        sql = "SELECT seq, kid FROM events WHERE device = ? AND epoch = ? ORDER BY seq"
        return [(s, k) for s, k in store.conn.execute(sql, (device, epoch))]


def assert_invariant(hall: Hall, board: Board) -> list[tuple[int, int]]:
    """SPEC section 9 for the board: every journaled seq stored exactly once."""
    summary = board.wait_drained()
    rows = wait_for(
        lambda: len(r := stored(hall, "M01", summary["epoch"])) >= summary["last_seq"] and r, 30, "the hub to store all"
    )
    assert [s for s, _kid in rows] == list(range(1, summary["last_seq"] + 1))
    return rows


def login_code(hall: Hall, device: str, password: str) -> int:
    """The CONNACK code the broker gives ``device`` logging in with ``password`` (0: accepted)."""
    codes: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{device}", protocol=mqtt.MQTTv311)
    client.username_pw_set(device, password)
    client.tls_set_context(hall.tls_context())
    client.on_connect = lambda c, u, flags, reason, props: codes.append(reason.value)
    client.connect("127.0.0.1", hall.broker_port)
    client.loop_start()
    try:
        return int(wait_for(lambda: codes and codes[0] + 1, 10, "a CONNACK")) - 1
    finally:
        client.disconnect()
        client.loop_stop()


def rotate(hall: Hall, device: str) -> None:
    result = CliRunner().invoke(main, ["device", "rotate", device, "--home", str(hall.home)])
    assert result.exit_code == 0, result.output
    assert "takes it up by itself" in result.output


def test_a_running_board_takes_up_a_rotation_and_loses_nothing(running_hall: Hall, board: Board) -> None:
    hall = running_hall
    old = board.json()
    board.start()
    board.press("satisfied", "basic", "very_satisfied")
    board.wait_drained()
    failures = len(board.logged("cannot connect"))  # the broker may learn of a new device a moment late
    rotate(hall, "M01")
    new = tomllib.loads(hall.terminal_config("M01").read_text())
    wait_for(lambda: key_states(hall, "M01") == [(1, "retired", 1), (2, "active", 1)], 30, "the rotation to end")
    # The broker's password file changed: its old session dropped, the board got in with the new one.
    mine = wait_for(lambda: "previous_password" not in (c := board.json())["broker"] and c, 30, "the new login")
    assert (mine["key"], mine["key_id"], mine["broker"]["password"]) == (new["key"], 2, new["broker"]["password"])
    assert {k: mine[k] for k in WIFI} == WIFI  # what the technician entered stays
    assert board.path.stat().st_mode & 0o777 == 0o600  # the rewritten file holds secrets
    assert login_code(hall, "M01", old["broker"]["password"]) in (4, 5, 134, 135)  # paho maps 3.1.1's to 5's
    assert login_code(hall, "M01", new["broker"]["password"]) == 0
    board.press("dissatisfied", "satisfied")
    board.wait_drained()
    hall.kill("broker", signal.SIGTERM)  # the board logs in again after a broker restart
    hall.start_broker()
    wait_for(lambda: len(board.logged("log connected to")) >= 3, 30, "the board back after the broker restart")
    board.press("basic")
    rows = assert_invariant(hall, board)
    assert {kid for _seq, kid in rows} == {1, 2}  # the stored MACs name the key that made them
    assert [kid for _seq, kid in rows][-1] == 2
    outcomes = frame_outcomes(hall, "M01")
    assert "bad_mac" not in outcomes and "unknown_key" not in outcomes, outcomes
    assert len(board.logged("cannot connect")) == failures and not board.logged("refused new secrets")
    assert board.logged("took up MAC key 2")
    assert not [line for line in board.proc.log if new["key"] in line or new["broker"]["password"] in line]  # type: ignore[union-attr]


def test_a_board_killed_right_after_persisting_gets_back_in(running_hall: Hall, board: Board) -> None:
    hall = running_hall
    board.start()
    board.press("satisfied", "basic")
    board.wait_drained()
    rotate(hall, "M01")
    wait_for(lambda: board.json()["key_id"] == 2, 30, "the board to store its new key")
    assert board.proc is not None
    board.proc.kill()  # a power cut right after the rename: which password the broker takes is open
    write_sim_config(board.config, board.path.parent, keep_lockout=False)  # as `sim terminal` restarts it
    assert board.json()["key_id"] == 2  # its terminal.toml names key 1: the board's own file wins
    board.start()
    board.press("very_satisfied", "dissatisfied")
    wait_for(lambda: key_states(hall, "M01")[-1] == (2, "active", 1), 30, "the rotation to end")
    wait_for(lambda: "previous_password" not in board.json()["broker"], 30, "the board on its new password")
    board.press("basic")
    rows = assert_invariant(hall, board)
    assert rows[-1][1] == 2
    assert "bad_mac" not in frame_outcomes(hall, "M01")


@pytest.mark.parametrize("right", ["password", "previous_password"])
def test_a_board_tries_the_other_password_when_the_broker_refuses_one(
    running_hall: Hall, board: Board, right: str
) -> None:
    """A board restarted mid-rotation holds both passwords; the broker takes one of them."""
    real = board.json()["broker"]["password"]
    other = "not-yet-known-" + "x" * 10
    board.edit(lambda cfg: cfg["broker"].update(password=real if right == "password" else other))
    board.edit(lambda cfg: cfg["broker"].update(previous_password=other if right == "password" else real))
    board.start()
    board.press("satisfied")
    assert_invariant(running_hall, board)
    if right == "password":  # in with the new one: the previous one is forgotten
        wait_for(lambda: "previous_password" not in board.json()["broker"], 10, "the previous password forgotten")
    else:  # in with the previous one: the broker has not switched yet, both stay
        assert board.json()["broker"] == {**board.json()["broker"], "password": other, "previous_password": real}


def test_a_bad_rekey_is_refused_with_one_line_and_changes_nothing(running_hall: Hall, board: Board) -> None:
    board.start()
    board.press("satisfied")
    board.wait_drained()
    before = board.path.read_bytes()
    good = {"cmd": "rekey", "kid": 2, "key": "ab" * 32, "password": "p" * 24}
    bad = [
        {**good, "kid": 1},  # not newer than the key in use
        {**good, "kid": "2"},
        {**good, "key": "AB" * 32},  # not lowercase
        {**good, "key": "ab" * 31},
        {**good, "key": "zz" * 32},
        {**good, "password": "p" * 15},
        {**good, "password": "p" * 65},
        {**good, "password": "p" * 20 + "\n"},
        {**good, "password": None},
    ]
    publish_as_hub(running_hall, ["M01"], bad)
    wait_for(lambda: len(board.logged("refused new secrets from the hub")) == len(bad), 30, "every rekey refused")
    assert board.path.read_bytes() == before
    assert not board.logged("took up")
    board.press("basic")
    rows = assert_invariant(running_hall, board)
    assert {kid for _seq, kid in rows} == {1}
    assert not [line for line in board.proc.log if "p" * 15 in line]  # type: ignore[union-attr]


def test_the_simulated_flash_keeps_a_rekey_unless_newer_files_are_copied(tmp_path: Path) -> None:
    """``write_sim_config`` on a board's existing config.json (a restart): the secrets the firmware
    took up stay; a terminal.toml naming a newer key (the files copied onto it again) wins."""
    config = make_config(tmp_path / "dev", 1883)
    path = write_sim_config(config, tmp_path)
    cfg = json.loads(path.read_text())
    cfg["key"], cfg["key_id"] = "cd" * 32, config.key_id + 1  # what the firmware wrote after a rekey
    cfg["broker"] |= {"password": "n" * 24, "previous_password": cfg["broker"]["password"]}
    path.write_text(json.dumps(cfg))
    again = json.loads(write_sim_config(config, tmp_path).read_text())
    assert {k: again[k] for k in ("key", "key_id", "broker")} == {k: cfg[k] for k in ("key", "key_id", "broker")}
    assert path.stat().st_mode & 0o777 == 0o600
    newer = dataclasses.replace(config, key_id=config.key_id + 2)
    copied = json.loads(write_sim_config(newer, tmp_path).read_text())
    assert (copied["key"], copied["key_id"]) == (config.key, config.key_id + 2)
    assert "previous_password" not in copied["broker"]


def test_frames_name_the_key_they_are_maced_with(tmp_path: Path) -> None:
    """In the interpreter, no broker: the uplink's frames and state name key 1, then, after a rekey,
    key 2 (each verifies with its own key: a frame queued at the broker before the rotation is
    checked against the old key during the grace period); config.json holds the new secrets."""
    from protocol.frames import parse_batch, verify_event

    old, new = "ab" * 32, "cd" * 32
    config = tmp_path / "config.json"
    cfg = {"device": "M01", "hall": "H1", "window": "W01", "key": old, "key_id": 1, "wifi": WIFI["wifi"],
           "broker": {"password": "p" * 24}}  # fmt: skip
    config.write_text(json.dumps(cfg))
    out = run_micropython(
        f"""
import json, journal, uplink, clock
cfg = json.load(open({str(config)!r}))
cfg["file"] = {str(config)!r}
j = journal.Journal({str(tmp_path / "journal")!r}, "M01")
frames = []
class Fake:
    password, connected = "p" * 24, True
    def publish(self, topic, payload, retain=False):
        frames.append(payload if isinstance(payload, str) else bytes(payload).decode())
up = uplink.Uplink(cfg, j, clock.Clock(), bytearray(3584), None, print)
up.client = Fake()
def press():
    j.append({{"kind": "rating", "level": "basic", "trigger": "free", "window": "W01", "boot": "b",
               "mono_ms": 1, "wall_ms": 0, "synced": False}})
    up.w.rewind(j.acked, 10 ** 9)
    up._send_window()
press()
up.publish_state(True)
up.rekey({{"cmd": "rekey", "kid": 2, "key": {new!r}, "password": "n" * 24}})
press()
up.publish_state(True)
for f in frames:
    print("FRAME " + f)
""",
        heap="256k",
    )  # from source: compiling needs room
    frames = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("FRAME ")]
    assert [f.get("kid") for f in frames] == [1, 1, 2, 2]  # ev, state, ev (seq 1 again and seq 2), state
    for frame in (frames[0], frames[2]):
        batch = parse_batch(json.dumps(frame).encode())
        key = bytes.fromhex(old if frame["kid"] == 1 else new)
        for event, mac in batch:
            verify_event(key, "H1", "M01", event, mac)
    assert "took up MAC key 2 from the hub" in out
    stored = json.loads(config.read_text())
    assert (stored["key"], stored["key_id"], stored["wifi"]) == (new, 2, WIFI["wifi"])
    assert stored["broker"] == {"password": "n" * 24, "previous_password": "p" * 24}
