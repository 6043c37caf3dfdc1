"""The backbone end to end: real Mosquitto, real hub process, real terminal program."""

from __future__ import annotations

from pathlib import Path

from hub.store.registry import list_devices
from protocol.frames import Event, encode_batch
from simulators.hall import Hall, json_line, wait_for

from .invariant import assert_invariant
from .mqtt_peer import RawDevice


def finish(hall: Hall, device: str, timeout: float = 120) -> dict[str, object]:
    proc = hall.procs[f"sim-{device}"]
    assert proc.wait(timeout=timeout) == 0, hall.log(f"sim-{device}")
    result: dict[str, object] = json_line(hall.log(f"sim-{device}"))
    return result


def test_presses_from_several_terminals_arrive_exactly_once(running_hall: Hall) -> None:
    devices = ["T01", "T02", "T03"]
    for i, device in enumerate(devices):
        running_hall.add_device(device, f"W0{i + 1}")
    for i, device in enumerate(devices):
        running_hall.sim_terminal(device, 120, 100, i + 1)
    for device in devices:
        summary = finish(running_hall, device)
        assert summary["last_seq"] == summary["acked"] == 120 and summary["pending"] == 0
    assert_invariant(running_hall, devices)
    rows = {r["device"]: r for r in running_hall.stats(("device",))["rows"]}
    assert all(sum(rows[d]["levels"].values()) == rows[d]["evaluations"] == 120 for d in devices)


def test_same_seed_gives_the_same_levels(running_hall: Hall) -> None:
    for device in ("T01", "T02"):
        running_hall.add_device(device, "W01")
        running_hall.sim_terminal(device, 40, 100, 9)
        finish(running_hall, device)
    rows = running_hall.stats(("device",))["rows"]
    assert rows[0]["levels"] == rows[1]["levels"]


def test_forged_malformed_oversize_and_foreign_frames_are_rejected(running_hall: Hall, tmp_path: Path) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01")
    wait_for(lambda: "T02" in hall.log("broker") or _broker_reloaded(hall), 10, "the broker to reload")
    raw = RawDevice(hall, "T01")
    ev = Event(epoch="ab" * 8, seq=1, kind="rating", level="very_dissatisfied", trigger="free", boot="x")
    own, other = "haocha/v1/H1/T01/ev", "haocha/v1/H1/T02/ev"
    try:
        assert not raw.publish(own, encode_batch(b"wrong key" * 4, "H1", "T01", [ev])).is_failure
        assert not raw.publish(own, b'{"v":1,"ev":[{"v":1}]}').is_failure
        assert not raw.publish(own, b"[" * 66_000).is_failure  # over 64 KiB, under the broker's max packet
        key = bytes.fromhex(raw.settings["key"])
        denied = raw.publish(other, encode_batch(key, "H1", "T02", [ev]))
        assert denied.is_failure and denied.value == 135  # Not authorized: the ACL ties topics to users
    finally:
        raw.close()
    wanted = {("bad_mac", "T01"), ("malformed", "T01"), ("oversize", "T01")}
    wait_for(lambda: wanted <= set(_frame_counts(hall)), 20, "the hub to count the rejects")
    assert hall.stored_seqs("T01") == [] and hall.stored_seqs("T02") == []
    hall.sim_terminal("T01", 5, 50)  # the hub kept running
    finish(hall, "T01")
    assert_invariant(hall, ["T01"])


def _frame_counts(hall: Hall) -> dict[tuple[str, str], int]:
    with hall.store() as store:
        return {(o, d): n for o, d, n in store.conn.execute("SELECT outcome, device, n FROM frame_counts")}


def _broker_reloaded(hall: Hall) -> bool:
    passwd = (hall.home / "broker" / "passwd").read_text()
    return "T02:" in passwd


def test_terminal_state_reaches_the_hub(running_hall: Hall) -> None:
    running_hall.add_device("T01", "W01")
    running_hall.sim_terminal("T01", 3, 20)
    finish(running_hall, "T01")

    def state_seen() -> bool:
        with running_hall.store() as store:
            return any(d["state"] for d in list_devices(store))

    wait_for(state_seen, 20, "a retained state from T01")
    assert _frame_counts(running_hall).get(("bad_topic", ""), 0) == 0  # the hub's own state is no reject
