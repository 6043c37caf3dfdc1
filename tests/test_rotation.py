"""Secrets over time (SPEC section 11): a rotation a running terminal survives without a visit,
key ids and key history, the grace period, a rotation at once for a leaked key, revoked devices
staying revoked, and the hub's HTTP token rotated under a running hub."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from haocha.cli import main
from hub.ingest import Incoming, Ingestor
from hub.store import Store
from hub.store import keys as device_keys
from hub.store import registry as reg
from protocol.frames import Event, encode_batch, encode_state
from simulators.hall import Hall, wait_for

from .invariant import assert_invariant
from .mqtt_peer import RawDevice
from .rig import TerminalRig

TZ = ZoneInfo("Asia/Shanghai")


def terminal_copy(hall: Hall, device: str, tmp_path: Path) -> Path:
    """The device's folder as copied onto its terminal: the hub's copy and the terminal's differ."""
    folder = tmp_path / f"on-{device}"
    shutil.copytree(hall.terminal_config(device).parent, folder)
    return folder / "terminal.toml"


def key_states(hall: Hall, device: str) -> list[tuple[int, str, int]]:
    with hall.store() as store:
        return [(k["kid"], k["state"], k["trusted"]) for k in device_keys.key_history(store, device)]  # type: ignore[misc]


def frame_outcomes(hall: Hall, device: str) -> dict[str, int]:
    with hall.store() as store:
        cur = store.conn.execute("SELECT outcome, n FROM frame_counts WHERE device = ?", (device,))
        return {outcome: n for outcome, n in cur}


def old_key_frame(settings: dict[str, Any], seq: int, kid: int) -> bytes:
    """A frame as the terminal signed it before the rotation (in flight, or queued at the broker)."""
    event = Event(epoch="feedfacecafebeef", seq=seq, kind="rating", window="W01", level="basic", trigger="free",
                  boot="b", mono_ms=seq, wall_ms=1_790_000_000_000, synced=True)  # fmt: skip
    return encode_batch(bytes.fromhex(settings["key"]), "H1", "T01", [event], kid)


def test_a_running_terminal_takes_up_a_rotation_and_loses_nothing(running_hall: Hall, tmp_path: Path) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    old = tomllib.loads(hall.terminal_config("T01").read_text())
    on_terminal = terminal_copy(hall, "T01", tmp_path)
    rig = TerminalRig(hall, "T01", on_terminal)
    try:
        for level in ("satisfied", "basic", "very_satisfied"):  # a rating, then presses in the lockout
            rig.press(level)
        rig.wait_acked()
        result = CliRunner().invoke(main, ["device", "rotate", "T01", "--home", str(hall.home)])
        assert result.exit_code == 0, result.output
        wait_for(lambda: key_states(hall, "T01") == [(1, "retired", 1), (2, "active", 1)], 30, "the rotation to end")
        # The broker's new password file drops the old session; the terminal gets in with the new one.
        mine = wait_for(
            lambda: (t := tomllib.loads(on_terminal.read_text()))["broker"].get("previous_password") is None and t,
            30,
            "the terminal to log in with its new password",
        )
        assert mine["key_id"] == 2 and mine["key"] != old["key"]
        assert mine["broker"]["password"] != old["broker"]["password"]
        assert on_terminal.stat().st_mode & 0o777 == 0o600
        for level in ("dissatisfied", "satisfied"):
            rig.press(level)
        rig.wait_acked()
        # A frame signed with the old key, still in flight: accepted within the grace period.
        raw = RawDevice(hall, "T01", client_id="late")
        try:
            raw.publish("haocha/v1/H1/T01/ev", old_key_frame(old, 1, 1))
        finally:
            raw.close()
        wait_for(lambda: frame_outcomes(hall, "T01").get("stored", 0) >= 6, 20, "the late frame to be stored")
    finally:
        rig.close()
    assert "bad_mac" not in frame_outcomes(hall, "T01") and "unknown_key" not in frame_outcomes(hall, "T01")
    with hall.store() as store:
        kids = {r[0]: r[1] for r in store.conn.execute("SELECT seq, kid FROM events WHERE epoch != 'feedfacecafebeef'")}
    assert sorted(set(kids.values())) == [1, 2]  # stored MACs name the key that made them
    journal = {"T01": tomllib.loads(on_terminal.read_text())}
    assert journal["T01"]["journal"]
    assert_invariant_on(hall, "T01", on_terminal)


def assert_invariant_on(hall: Hall, device: str, config: Path) -> None:
    """SPEC section 9 for a terminal whose journal lives in its own copy of the folder."""
    from terminal.summary import journal_summary

    summary = journal_summary(config)
    with hall.store() as store:
        sql = "SELECT seq FROM events WHERE device = ? AND epoch = ? ORDER BY seq"
        seqs = [s for (s,) in store.conn.execute(sql, (device, summary["epoch"]))]
    assert seqs == list(range(1, summary["last_seq"] + 1))


def test_a_terminal_restarted_mid_rotation_gets_back_in_either_way(running_hall: Hall, tmp_path: Path) -> None:
    """The file holds the new pair and the previous password: whichever the broker takes now works."""
    hall = running_hall
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01")
    result = CliRunner().invoke(main, ["device", "rotate", "T01", "--home", str(hall.home)])
    assert result.exit_code == 0, result.output
    settings = tomllib.loads(hall.terminal_config("T01").read_text())
    assert settings["key_id"] == 2 and settings["broker"]["previous_password"]
    # The terminal was off when the rekey went out; a technician copies the new file anyway.
    proc = hall.sim_terminal("T01", 5)
    assert proc.wait(timeout=120) == 0, hall.log("sim-T01")[-3000:]
    wait_for(lambda: key_states(hall, "T01") == [(1, "retired", 1), (2, "active", 1)], 30, "the rotation to end")
    again = hall.sim_terminal("T01", 3)  # after the broker switched to the new password
    assert again.wait(timeout=120) == 0, hall.log("sim-T01")[-3000:]
    assert_invariant(hall, ["T01"])
    assert "cannot connect" not in hall.log("sim-T01")


def test_a_rotation_at_once_stops_the_old_key_and_password(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    old = tomllib.loads(hall.terminal_config("T01").read_text())
    wait_for(lambda: RawDevice(hall, "T01", client_id="probe").close() is None, 20, "the broker to know T01")
    result = CliRunner().invoke(main, ["device", "rotate", "T01", "--now", "--home", str(hall.home)])
    assert result.exit_code == 0 and "stop now" in result.output
    assert key_states(hall, "T01") == [(1, "retired", 0), (2, "active", 1)]
    new = tomllib.loads(hall.terminal_config("T01").read_text())
    assert "previous_password" not in new["broker"]
    raw = RawDevice(hall, "T01", client_id="new")  # the new password works (after the broker's reload)
    try:
        raw.publish("haocha/v1/H1/T01/ev", old_key_frame(old, 1, 1))
        wait_for(lambda: frame_outcomes(hall, "T01").get("unknown_key") == 1, 20, "the old key to be refused")
    finally:
        raw.close()


def test_a_revoked_device_stays_revoked_until_reinstated(hall: Hall) -> None:
    hall.add_window("W01")
    hall.add_device("T01", "W01")
    runner = CliRunner()
    home = ["--home", str(hall.home)]
    assert runner.invoke(main, ["device", "revoke", "T01", *home]).exit_code == 0
    before = hall.terminal_config("T01").read_bytes()
    refused = runner.invoke(main, ["device", "rotate", "T01", *home])
    assert refused.exit_code == 1 and "revoked" in refused.output and "reinstate" in refused.output
    assert hall.terminal_config("T01").read_bytes() == before
    with hall.store() as store:
        assert reg.get_device(store, "T01").revoked
    assert runner.invoke(main, ["device", "reinstate", "T01", *home]).exit_code == 0
    with hall.store() as store:
        dev = reg.get_device(store, "T01")
        assert not dev.revoked and dev.kid == 2
        actions = [r[0] for r in store.conn.execute("SELECT action FROM audit WHERE subject = 'T01' ORDER BY id")]
    assert actions == ["device.add", "device.revoke", "device.reinstate"]
    assert key_states(hall, "T01") == [(1, "retired", 0), (2, "active", 1)]


def test_a_terminal_on_its_old_key_gets_its_rekey_again(tmp_path: Path) -> None:
    """The broker may lose the rekey command (a restart without persistence): a state still naming
    the old key queues it again, at most once a minute."""
    store = Store(tmp_path / "hub.db", create=True)
    reg.add_window(store, "W01", "一号窗", None)
    reg.insert_device(store, "T01", "W01", "gpio", "free", "00" * 32, "x")
    secrets = device_keys.NewSecrets("11" * 32, "p" * 24, "hash")
    assert device_keys.start_rotation(store, "T01", secrets) == 2
    store.conn.execute("UPDATE commands SET published_ms = 1")  # sent long ago, never taken up

    def state(kid: int) -> Incoming:
        return Incoming("haocha/v1/H1/T01/state", encode_state(True, kid=kid), 1_790_000_000_000)

    def rekeys() -> list[dict[str, Any]]:
        rows = store.conn.execute("SELECT payload FROM commands WHERE published_ms IS NULL").fetchall()
        return [json.loads(r[0]) for r in rows]

    ingestor = Ingestor(store, "H1", TZ)
    ingestor.ingest([state(1)])
    assert rekeys() == [{"cmd": "rekey", "kid": 2, "key": "11" * 32, "password": "p" * 24}]
    ingestor.ingest([state(1)])
    assert len(rekeys()) == 1  # one waiting is enough
    ingestor.ingest([state(2)])  # taken up: the rotation ends
    assert reg.get_device(store, "T01").kid == 2


def test_a_rotation_before_the_last_ended_supersedes_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db", create=True)
    reg.add_window(store, "W01", "一号窗", None)
    reg.insert_device(store, "T01", "W01", "gpio", "free", "00" * 32, "x")
    device_keys.start_rotation(store, "T01", device_keys.NewSecrets("11" * 32, "p" * 24, "h"))
    device_keys.start_rotation(store, "T01", device_keys.NewSecrets("22" * 32, "q" * 24, "h"))
    states = [(k["kid"], k["state"]) for k in device_keys.key_history(store, "T01")]
    assert states == [(1, "active"), (2, "superseded"), (3, "pending")]
    pending = store.conn.execute("SELECT payload FROM commands WHERE published_ms IS NULL").fetchall()
    assert [json.loads(p[0])["kid"] for p in pending] == [3]


def test_the_hub_token_rotates_under_a_running_hub(running_hall: Hall) -> None:
    hall = running_hall
    base = f"http://127.0.0.1:{hall.http_port}/api/v1/stats"

    def status(token: str) -> int:
        request = urllib.request.Request(base, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except urllib.error.URLError:
            return 0  # not listening yet

    old = hall.config.http.token
    wait_for(lambda: status(old) == 200, 30, "the hub's API")
    done = subprocess.run(
        [sys.executable, "-m", "haocha", "hub", "token", "--rotate", "--home", str(hall.home)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    new = done.stdout.strip()
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1 and new != old
    assert status(new) == 200 and status(old) == 401
    assert (hall.home / "hub.toml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("option", [[], ["--now"]])
def test_rotation_writes_no_secret_to_the_audit_log(hall: Hall, option: list[str]) -> None:
    hall.add_window("W01")
    hall.add_device("T01", "W01")
    assert CliRunner().invoke(main, ["device", "rotate", "T01", *option, "--home", str(hall.home)]).exit_code == 0
    settings = tomllib.loads(hall.terminal_config("T01").read_text())
    with hall.store() as store:
        audit = " ".join(str(r) for r in store.conn.execute("SELECT * FROM audit"))
    for secret in (settings["key"], settings["broker"]["password"]):
        assert secret not in audit


@pytest.mark.parametrize("option", [[], ["--now"]])
def test_a_micropython_board_is_rotated_like_the_others_and_keeps_its_wifi(hall: Hall, option: list[str]) -> None:
    """Its firmware takes the rekey (tests/test_micro_rotation.py): the rotation waits for the board
    to use the new key, and the new board files name both passwords; ``--now`` stops the old ones.
    What the technician entered by hand in config.json stays either way."""
    hall.add_window("W01")
    hall.add_device("M01", "W01", kind="micro")
    config_json = hall.terminal_config("M01").parent / "board" / "config.json"
    entered = json.loads(config_json.read_text())  # the technician fills in the hall's Wi-Fi
    assert entered["key_id"] == 1
    entered |= {"wifi": {"ssid": "hall-terminals", "password": "wifi secret"}, "ntp_host": "ntp.hall", "watchdog_s": 30}
    entered["broker"]["report_s"] = 120
    config_json.write_text(json.dumps(entered))
    result = CliRunner().invoke(main, ["device", "rotate", "M01", *option, "--home", str(hall.home)])
    assert result.exit_code == 0
    board = json.loads(config_json.read_text())
    assert board["key"] == tomllib.loads(hall.terminal_config("M01").read_text())["key"] != entered["key"]
    assert board["key_id"] == 2 and board["broker"]["password"] != entered["broker"]["password"]
    if option:
        assert "copy the file" in result.output and "previous_password" not in board["broker"]
        assert key_states(hall, "M01") == [(1, "retired", 0), (2, "active", 1)]
    else:
        assert "takes it up by itself" in result.output
        assert board["broker"]["previous_password"] == entered["broker"]["password"]
        assert key_states(hall, "M01") == [(1, "active", 1), (2, "pending", 1)]
    kept = {k: board[k] for k in ("wifi", "ntp_host", "watchdog_s")} | {"report_s": board["broker"]["report_s"]}
    assert kept == {"wifi": entered["wifi"], "ntp_host": "ntp.hall", "watchdog_s": 30, "report_s": 120}


def test_no_secret_reaches_any_log(running_hall: Hall, tmp_path: Path) -> None:
    """A run with terminals pressing, a rotation, a token rotation and a refused login: no
    password, MAC key or token the hall made appears in any log it wrote."""
    hall = running_hall
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01", kind="serial")
    secrets = {hall.config.broker.password, hall.config.http.token}

    def remember(device: str) -> None:
        settings = tomllib.loads(hall.terminal_config(device).read_text())
        secrets.update({settings["key"], settings["broker"]["password"]})

    for device in ("T01", "T02"):
        remember(device)
    on_terminal = terminal_copy(hall, "T01", tmp_path)
    rig = TerminalRig(hall, "T01", on_terminal)
    try:
        rig.press("satisfied")
        assert CliRunner().invoke(main, ["device", "rotate", "T01", "--home", str(hall.home)]).exit_code == 0
        remember("T01")
        wait_for(lambda: key_states(hall, "T01")[-1] == (2, "active", 1), 30, "the rotation to end")
        assert hall.sim_terminal("T02", 5).wait(timeout=120) == 0
        secrets.add(CliRunner().invoke(main, ["hub", "token", "--rotate", "--home", str(hall.home)]).output.strip())
        rig.press("basic")
        rig.wait_acked()
    finally:
        rig.close()
    logs = {path: path.read_text(errors="replace") for path in hall.logs.glob("*.log")}
    assert set(logs) >= {hall.logs / "broker.log", hall.logs / "hub.log", hall.logs / "sim-T02.log"}
    for path, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"a secret in {path.name}"


def test_the_migration_gives_every_device_key_1(tmp_path: Path) -> None:
    """A hub from before key ids: each device's key becomes its active key 1, and its terminals'
    frames (which name no key) keep being checked against it."""
    path = tmp_path / "hub.db"
    with Store(path, create=True) as store:
        reg.add_window(store, "W01", "一号窗", None)
        reg.insert_device(store, "T01", "W01", "gpio", "free", "ab" * 32, "hash")
        store.conn.execute("DROP TABLE device_keys")
        store.conn.execute("ALTER TABLE devices DROP COLUMN kid")
        store.conn.execute("ALTER TABLE events DROP COLUMN kid")
        for table in ("upstream_days", "console_sessions", "user_tokens", "users"):  # migrations 9 and 8
            store.conn.execute(f"DROP TABLE {table}")
        store.conn.execute("DROP INDEX audit_time")
        store.conn.execute("DROP INDEX audit_subject")
        store.conn.execute("DROP TABLE alert_deliveries")  # migration 10
        store.conn.execute("DROP TABLE alerts")
        for table in ("config_reports", "config_pushes", "config_layers"):  # migration 11
            store.conn.execute(f"DROP TABLE {table}")
        store.conn.execute("DROP TABLE release_devices")  # migration 12
        store.conn.execute("DROP TABLE releases")
        store.conn.execute("PRAGMA user_version = 6")
    with Store(path) as store:
        assert [(k["kid"], k["state"]) for k in device_keys.key_history(store, "T01")] == [(1, "active")]
        event = Event(epoch="0123456789abcdef", seq=1, kind="staff", window="W01", trigger="staff",
                      case="T01-01234567-1", boot="b", wall_ms=1_790_000_000_000, synced=True)  # fmt: skip
        frame = encode_batch(bytes.fromhex("ab" * 32), "H1", "T01", [event])
        result = Ingestor(store, "H1", TZ).ingest([Incoming("haocha/v1/H1/T01/ev", frame, 1_790_000_000_000)])
        assert dict(result.counts) == {"stored": 1}
        assert store.conn.execute("SELECT kid FROM events").fetchone() == (1,)
