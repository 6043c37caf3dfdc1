"""The ESP32 board layer (``terminal/micro/board.py``) in the real MicroPython interpreter, on fake
``machine``, ``network`` and ``ntptime`` modules (``tests/micro_fakes``) that keep pin levels and
Wi-Fi state like the real ones."""

from __future__ import annotations

import json
from pathlib import Path

try:
    from .micro_harness import run_micropython
except ImportError:
    from micro_harness import run_micropython

FAKES = Path(__file__).resolve().parent / "micro_fakes"

SCRIPT = """
import json, sys
sys.path.insert(0, %r)
from time import ticks_ms, ticks_diff
import machine, network, ntptime, board
P = machine.PINS
cfg = {"pins": {"keys": {"satisfied": 33, "basic": 25, "dissatisfied": 26}, "reason_keys": {"cold": 4, "gone": 13},
                "staff_key": 14, "ready_light": 21, "thanks_light": 22, "buzzer": 23, "bounce_ms": 20, "pull_up": True},
       "reasons": ["cold", "lazy"], "wifi": {"ssid": "hall", "password": "pw"}, "watchdog_s": 30}
b = board.Board(cfg)
out = {"levels": list(b.levels), "reasons": list(b.reasons), "connects": list(network.WLAN.last.connects)}

def wait_keys(ms=2000):
    t = ticks_ms()
    while ticks_diff(ticks_ms(), t) < ms:
        keys = b.poll()
        if keys:
            return keys
    return []

P[33].level = 0                      # press satisfied (closes to ground)
first = b.poll()                     # not yet: debounce
out["pressed"] = [list(k) for k in wait_keys()]
out["first_sample"] = first
out["held"] = b.poll()               # held down: no repeat
P[33].level = 1
out["released"] = wait_keys(300)     # release is not a press
P[33].level = 0; P[33].level = 1     # a glitch shorter than bounce_ms
out["glitch"] = wait_keys(300)
P[14].level = 0
out["staff"] = [list(k) for k in wait_keys()]
b.show("thanks")
out["thanks"] = [P[21].level, P[22].level, P[23].level]
t = ticks_ms()
while P[23].level and ticks_diff(ticks_ms(), t) < 2000:
    b.idle()
out["buzzer_off"] = P[23].level
b.show("ready")
out["ready"] = [P[21].level, P[22].level]
out["net"] = b.network_up()
network.WLAN.last.up = True
ntptime.reachable = True
b._ntp_at = ticks_ms()
b.idle()
out["net_after"] = b.network_up()
out["synced"] = b.synced()
out["ntp_calls"] = ntptime.calls
out["wdt_fed"] = b._wdt.fed > 0
print(json.dumps(out))
"""


def test_board_keys_lights_wifi_and_ntp() -> None:
    out = json.loads(run_micropython(SCRIPT % str(FAKES), heap="256k").strip().splitlines()[-1])
    assert sorted(out["levels"]) == ["basic", "dissatisfied", "satisfied"]  # MicroPython dicts keep no order
    assert out["reasons"] == ["cold"]  # a reason key whose reason the hall does not offer is left out
    assert out["connects"] == ["hall"]
    assert out["first_sample"] == [] and out["pressed"] == [["level", "satisfied"]]
    assert out["held"] == [] and out["released"] == [] and out["glitch"] == []
    assert out["staff"] == [["staff", ""]]
    assert out["thanks"] == [0, 1, 1] and out["buzzer_off"] == 0
    assert out["ready"] == [1, 0]
    assert (out["net"], out["net_after"], out["synced"], out["ntp_calls"]) == (False, True, True, 1)
    assert out["wdt_fed"] is True
