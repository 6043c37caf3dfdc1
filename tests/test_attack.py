"""The attack test (SPEC section 10): a running hall — broker, hub, three terminals — tried with
one terminal's stolen credentials and key, and with the mistakes a technician makes, while the
terminals keep serving citizens. Afterwards the section 9 invariant holds for every terminal and
the hub is the very process the test started (its writer too): no input stopped it.

Each numbered step is an item of the issue "Nothing a terminal, a panel, a client or an
operator's mistake does can stop, stall or fool the hall". The MicroPython client's own hostile
broker (item 10) cannot be reached with a terminal's credentials; it is tried in
tests/test_micro_mqtt_hostile.py and tests/test_micro_mqtt_mosquitto.py.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from hub.store import Store
from protocol.frames import compute_mac, dumps, parse_event
from simulators.hall import Hall, child_pids, peak_rss_mb, wait_for

from .invariant import assert_invariant
from .mqtt_peer import RawDevice
from .rig import HubApi, TerminalRig

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent
THIEF_EPOCH = "feedfacecafebeef"


def haocha(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "haocha", *args], capture_output=True, text=True, timeout=timeout)


class Thief:
    """T09's credentials and MAC key, pulled from its SD card."""

    def __init__(self, hall: Hall) -> None:
        self.hall = hall
        self.raw = RawDevice(hall, "T09")
        self.key = bytes.fromhex(self.raw.settings["key"])
        self.seq = 0

    def reconnect(self) -> None:
        """The broker knows T09 by its user name alone: each new T09 connection replaces the last."""
        self.raw.close()
        self.raw = RawDevice(self.hall, "T09")

    def signed(self, **fields: Any) -> dict[str, Any]:
        """A wire event with a valid MAC, whatever its fields say."""
        self.seq += 1
        wire = {"v": 1, "epoch": THIEF_EPOCH, "seq": self.seq, "kind": "rating", "level": "very_satisfied",
                "trigger": "free", "window": "W09", "boot": "b", "mono_ms": 1, "wall_ms": 1_790_000_000_000,
                "synced": True, **fields}  # fmt: skip
        parsed, _ = parse_event({**wire, "mac": "0" * 64})
        return {**wire, "mac": compute_mac(self.key, self.hall.hall, "T09", parsed)}

    def send(self, *events: dict[str, Any]) -> None:
        self.publish("ev", dumps({"v": 1, "ev": list(events)}))

    def publish(self, leaf: str, payload: bytes, retain: bool = False) -> None:
        info = self.raw.client.publish(f"haocha/v1/{self.hall.hall}/T09/{leaf}", payload, qos=1, retain=retain)
        wait_for(lambda: self.raw.acks.get(info.mid) is not None, 10, "the broker's PUBACK")


def thief_rows(hall: Hall) -> list[tuple[int, str, str | None]]:
    with hall.store() as store:
        sql = "SELECT seq, status, status_reason FROM events WHERE device = 'T09' ORDER BY seq"
        return [tuple(r) for r in store.conn.execute(sql)]  # type: ignore[misc]


def case_status(hall: Hall, case: str) -> str | None:
    with Store(hall.home / "hub.db") as store:
        row = store.conn.execute("SELECT status FROM cases WHERE case_no = ?", (case,)).fetchone()
    return None if row is None else str(row[0])


def metrics(hall: Hall) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{hall.http_port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        return str(answer.read().decode())


def metric(text: str, name: str) -> float:
    line = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
    return 0.0 if line is None else float(line.split()[-1])


def poison_frames(thief: Thief) -> None:
    """Item 1: each of these stopped the hub for good; MAC-valid rule breakers block nothing."""
    thief.publish("ev", b"[" * 60_000)
    thief.publish("ev", b'{"v":1,"ev":[{"v":1,"epoch":"feedfacecafebeef","seq":' + b"9" * 5_000 + b"}]}")
    thief.publish("state", b'{"online":true,"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}", retain=True)
    thief.send(thief.signed(wall_ms=2**62), thief.signed(synced=False, age_ms=2**62), thief.signed())
    wait_for(lambda: len(thief_rows(thief.hall)) == 3, 20, "the thief's three events to be stored")
    assert [status for _seq, status, _why in thief_rows(thief.hall)] == ["invalid", "invalid", "accepted"]


def huge_frame(hall: Hall) -> None:
    """Item 2: 100 MiB on the thief's own topic took Mosquitto to 316 MB and the hub to 365 MB."""
    big = RawDevice(hall, "T09", client_id="big")
    try:
        big.client.publish("haocha/v1/H1/T09/ev", b"[" * (100 * MiB), qos=1)
        wait_for(lambda: big.disconnects, 60, "the broker to disconnect the sender")
    finally:
        big.close()
    (mosquitto,) = child_pids(hall.procs["broker"].pid)
    assert peak_rss_mb(mosquitto) < 40 and peak_rss_mb(hall.procs["hub"].pid) < 100


def takeover(hall: Hall) -> None:
    """Item 3: the thief's credentials connecting with the hub's and T02's client ids."""
    for client_id in ("hub", "T02", f"haocha-hub-{hall.hall}", f"haocha-{hall.hall}-T02") * 3:
        RawDevice(hall, "T09", client_id=client_id).close()


def cases_across_windows(hall: Hall, thief: Thief, api: HubApi, t02: TerminalRig) -> None:
    """Item 4: the thief rates W02's open case, and a case number not opened yet."""
    api.open_case("C-W02", "W02")
    t02.wait_invited("C-W02")
    thief.send(thief.signed(trigger="invite", case="C-W02"), thief.signed(trigger="invite", case="C-LATER"))
    wait_for(lambda: len(thief_rows(hall)) == 5, 20, "the thief's case ratings to be stored")
    assert thief_rows(hall)[-2:] == [(4, "flagged", "wrong_window"), (5, "flagged", "unknown_case")]
    assert case_status(hall, "C-W02") == "open" and case_status(hall, "C-LATER") is None
    t02.press("satisfied")  # the citizen at W02
    wait_for(lambda: case_status(hall, "C-W02") == "rated", 20, "W02's genuine rating to rate its case")
    api.open_case("C-LATER", "W02")  # 201, not 409
    t02.wait_invited("C-LATER")
    t02.press("basic")
    wait_for(lambda: case_status(hall, "C-LATER") == "rated", 20, "the later case to be rated")


def bad_states(hall: Hall, thief: Thief) -> None:
    """Item 5: /metrics answered 500 while a retained state said "backlog": "x" (or Infinity)."""
    for payload in (b'{"online":true,"backlog":"x"}', b'{"online":true,"backlog":Infinity}'):
        thief.publish("state", payload, retain=True)
        text = metrics(hall)
        assert "haocha_devices_online" in text


def http_attacks(hall: Hall) -> None:
    """Item 6 against the running hub."""
    base = f"http://127.0.0.1:{hall.http_port}"
    token = {"Authorization": f"Bearer {hall.config.http.token}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/api/v1/cases", content=b"{" + b" " * MiB + b"}", headers=token).status_code == 413
        chunks = (b" " * 65_536 for _ in range(16))
        assert client.post("/api/v1/cases", content=chunks, headers=token).status_code == 413
        nested = b'{"case":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
        assert client.post("/api/v1/cases", content=nested, headers=token).status_code == 422
        wrong = {"Authorization": "Bearer 令牌".encode()}
        assert client.post("/api/v1/tickets/1/assign", json={"to": "x"}, headers=wrong).status_code == 401
        for path in ("/api/v1/stats?by=staff", "/api/v1/tickets", "/api/v1/cases/C-W02"):
            assert client.get(path).status_code == 401, path
        assert "S01" not in client.get("/display.json").text


def poisoned_config(hall: Hall, tmp_path: Path) -> None:
    """Item 7: a terminal.toml whose rows the hub would refuse must not start."""
    folder = tmp_path / "poisoned"
    folder.mkdir()
    data = tomllib.loads(hall.terminal_config("T01").read_text())
    for change in ({"staff": ""}, {"item": "x" * 65}):
        (folder / "terminal.toml").write_text(tomli_w.dumps({**data, **change}))
        done = haocha("terminal", "run", "--config", str(folder / "terminal.toml"))
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert not (folder / "journal.db").exists()


def journaled(hall: Hall, device: str) -> int:
    try:
        return int(hall.journal(device)["last_seq"])
    except Exception:  # no journal file yet
        return 0


def panel_restarted(hall: Hall) -> None:
    """Item 8: kill -9 of a serial-panel terminal mid-run, then a run like the first."""
    first = hall.sim_terminal("T03", 200, 20.0)
    wait_for(lambda: journaled(hall, "T03") >= 5, 60, "T03's first presses")
    hall.kill("sim-T03", signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    again = hall.sim_terminal("T03", 40, 50.0)
    assert again.wait(timeout=120) == 0, hall.log("sim-T03")[-3000:]


def operators_mistakes(hall: Hall, tmp_path: Path) -> None:
    """Item 9: a second hub on the same home; a terminal pointed at the wrong port."""
    second = haocha("hub", "run", "--home", str(hall.home), timeout=30)
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode != 0 and len(lines) == 1, second.stderr
    folder = tmp_path / "wrong-port"
    folder.mkdir()
    data = tomllib.loads(hall.terminal_config("T09").read_text())
    data["broker"]["port"] = 1  # nothing listens there
    (folder / "terminal.toml").write_text(tomli_w.dumps(data))
    shutil.copy(hall.terminal_config("T09").parent / "ca.crt", folder)  # the folder as copied onto a terminal
    lost = haocha("sim", "terminal", "--config", str(folder / "terminal.toml"), "--presses", "1", "--timeout", "6")
    reports = [line for line in lost.stderr.splitlines() if "cannot connect to the MQTT broker" in line]
    assert lost.returncode != 0 and len(reports) == 1 and "127.0.0.1:1: " in reports[0], lost.stderr[-2000:]
    on_a_pc = haocha("terminal", "run", "--config", str(folder / "terminal.toml"))  # GPIO keys, no GPIO here
    lines = [line for line in on_a_pc.stderr.splitlines() if line.strip()]
    assert on_a_pc.returncode == 1 and len(lines) == 1 and "GPIO" in lines[0], on_a_pc.stderr[-2000:]


def test_a_hall_under_attack_keeps_counting(tmp_path: Path) -> None:
    with Hall(tmp_path / "hall") as hall:
        for window in ("W01", "W02", "W03", "W09"):
            hall.add_window(window)
        hall.add_device("T01", "W01")
        hall.add_device("T02", "W02", mode="invited")
        hall.add_device("T03", "W03", kind="serial")
        hall.add_device("T09", "W09")  # the terminal whose card was stolen
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "hub connected to" in hall.log("hub"), 30, "the hub to connect")
        hub = hall.procs["hub"]
        (writer,) = child_pids(hub.pid)
        citizens = hall.sim_terminal("T01", 60, 5.0)  # presses go on during the whole attack
        t02 = TerminalRig(hall, "T02")
        api = HubApi(hall)
        thief = Thief(hall)
        try:
            poison_frames(thief)
            thief.raw.close()
            huge_frame(hall)
            takeover(hall)
            thief.reconnect()
            cases_across_windows(hall, thief, api, t02)
            bad_states(hall, thief)
            http_attacks(hall)
            poisoned_config(hall, tmp_path)
            panel_restarted(hall)
            operators_mistakes(hall, tmp_path)
            assert citizens.wait(timeout=120) == 0, hall.log("sim-T01")[-3000:]
            t02.wait_acked()
        finally:
            thief.raw.close()
            t02.close()
            api.close()
        text = metrics(hall)
        assert metric(text, 'haocha_frames_total{outcome="malformed"}') >= 5
        assert metric(text, 'haocha_frames_total{outcome="invalid"}') == 2
        assert hub.poll() is None and child_pids(hub.pid) == [writer], "the hub or its writer was restarted"
        assert "Traceback" not in hall.log("hub")
        assert "hub lost the broker" not in hall.log("hub")
        assert_invariant(hall, ["T01", "T02", "T03"])
        w02 = next(row for row in hall.stats(("window",))["rows"] if row["window"] == "W02")
        assert (w02["cases"], w02["evaluations"], w02["refused"], w02["evaluation_rate"]) == (2, 2, 0, 1.0)
