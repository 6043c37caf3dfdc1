"""The firmware's wire encoding and MQTT packet ids, run in the real MicroPython interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terminal.micro_host import FIRMWARE_FILES, board_files, firmware_config, firmware_source

try:
    from .micro_harness import make_config, run_micropython
except ImportError:
    from micro_harness import make_config, run_micropython  # type: ignore[no-redef]

VECTORS = Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "events.json"


def test_golden_vectors_identical_in_micropython() -> None:
    vectors = json.loads(VECTORS.read_text())
    out = run_micropython(f"""
import json, binascii, wire
d = json.load(open({str(VECTORS)!r}))
mac = wire.Mac(binascii.unhexlify(d["key_hex"]))
by = {{}}
for v in d["vectors"]:
    ev = v["event"]
    by[v["name"]] = ev
    c = bytearray()
    wire.put_canonical(c.extend, d["hall"], d["device"], ev)
    print(json.dumps([v["name"], binascii.hexlify(c).decode(), mac.hex(d["hall"], d["device"], ev).decode()]))
b = bytearray(b'{{"v":1,"ev":[')  # the uplink's frame: events put one after the other
for i, n in enumerate(d["batch"]["events"]):
    b.extend(b"," if i else b"")
    wire.put_event(b, mac, d["hall"], d["device"], by[n])
b.extend(b"]}}")
print(json.dumps(["batch", binascii.hexlify(b).decode(), ""]))
""")
    got = {name: (canon, mac) for name, canon, mac in map(json.loads, out.splitlines())}
    assert len(vectors["vectors"]) >= 5
    for v in vectors["vectors"]:
        assert got[v["name"]] == (v["canonical_hex"], v["mac"]), v["name"]
    assert got["batch"][0] == vectors["batch"]["payload_hex"]


def test_json_strings_escape_like_cpython() -> None:
    texts = ['a"b', "back\\slash", "tab\there", "办件", "ctl\x01"]
    out = run_micropython(f"""
import wire
for t in {texts!r}:
    out = bytearray()
    wire._json(out, t)
    print(out.decode())
""")
    assert out.splitlines() == [json.dumps(t, ensure_ascii=False) for t in texts]


def test_packet_ids_wrap_skipping_zero_and_inflight() -> None:
    out = run_micropython(
        """
import mqtt
c = mqtt.Client("x", "127.0.0.1", 1, None, None, 15, ("t", b"x"))
c.pid = 65533
ids = [c.next_pid() for _ in range(4)]
c.inflight[0] = 2
c.inflight[5] = 3
ids.append(c.next_pid())
c.pid = 0
ids.append(c.next_pid())
print(ids)
print([bytes(mqtt._varint(n)) for n in (0, 127, 128, 16383, 16384, 2097151, 2097152)])
""",
        heap="256k",
    )  # compiled from source here: the scratch heap a board's .mpy files never need
    ids, varints = out.splitlines()
    assert ids == "[65534, 65535, 1, 2, 4, 1]"
    assert varints == str(
        [b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01", b"\xff\xff\x7f", b"\x80\x80\x80\x01"]
    )


def test_board_files_hold_the_firmware_and_its_config(tmp_path: Path) -> None:
    config = make_config(tmp_path, 18830, device="M07", mode="invited")
    files = board_files(config, wifi_ssid="hall-wifi", wifi_password="pw")
    assert set(files) == {*FIRMWARE_FILES, "config.json"}
    assert "sim_board.py" not in files
    cfg = json.loads(files["config.json"])
    assert cfg == firmware_config(config, wifi_ssid="hall-wifi", wifi_password="pw")
    assert (cfg["device"], cfg["mode"], cfg["key"], cfg["journal"]) == ("M07", "invited", config.key, "journal")
    assert cfg["broker"] == {"host": "127.0.0.1", "port": 18830, "user": "M07", "password": "", "keepalive_s": 5}
    assert cfg["wifi"] == {"ssid": "hall-wifi", "password": "pw"}


@pytest.mark.parametrize("name", FIRMWARE_FILES)
def test_every_board_file_compiles_in_micropython(name: str) -> None:
    # main.py runs at import on a board; compile only, do not import (no machine/network here).
    src = firmware_source(name).read_text()
    out = run_micropython(f"compile({src!r}, {name!r}, 'exec')\nprint('ok')\n", heap="256k")
    assert out.strip() == "ok"


def test_board_pins_avoid_esp32_flash_pins_unless_configured(tmp_path: Path) -> None:
    default = json.loads(board_files(make_config(tmp_path / "a", 1883))["config.json"])["pins"]
    assert set(default["keys"].values()).isdisjoint({6, 7, 8, 9, 10, 11, 12})
    assert default["keys"]["very_satisfied"] == 32 and default["ready_light"] == 21
    custom = make_config(
        tmp_path / "b", 1883, extra="[gpio]\nkeys = {satisfied = 4, basic = 5, dissatisfied = 18}\nready_light = 2\n"
    )
    pins = json.loads(board_files(custom)["config.json"])["pins"]
    assert pins["keys"] == {"satisfied": 4, "basic": 5, "dissatisfied": 18} and pins["ready_light"] == 2


def test_monotonic_clock_does_not_wrap_with_ticks_ms() -> None:
    out = run_micropython("""
import clock
from time import ticks_add
t = [ticks_add(0, -25)]  # 25 ms before ticks_ms wraps
c = clock.Clock("unsynced", ticks=lambda: t[0])
seen = []
for step in (10, 10, 10, 10, 1000):
    t[0] = ticks_add(t[0], step)
    seen.append(c.mono_ms())
print(seen, c.age_ms(c.boot_id, 20), c.age_ms("other-boot", 20), c.synced())
""")
    assert out.strip() == "[10, 20, 30, 40, 1040] 1020 None False"
