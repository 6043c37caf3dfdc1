"""The board layer on a real ESP32 running MicroPython: keys, lights, buzzer, Wi-Fi and NTP.

Pins come from ``config.json`` ``pins`` (GPIO numbers of the board, not of a Raspberry Pi):
``keys`` level id -> pin, ``reason_keys`` reason id -> pin, ``staff_key``, ``ready_light``,
``thanks_light``, ``buzzer``, ``bounce_ms`` (explicit debounce) and ``pull_up`` (keys close to
ground). Keys are sampled by the main loop (every ~10 ms) and debounced here: a press is a level
held stable for ``bounce_ms``. Wi-Fi connects in the background (``network.WLAN``); the uplink is
told the network is down while it is not connected. ``ntptime`` sets the clock once Wi-Fi is up
(retried every 10 minutes until it succeeds, then hourly); until then events say ``synced: false``
and the hub derives their time from ``age_ms``.
"""

import machine
import network
from time import ticks_add, ticks_diff, ticks_ms

READY, ASK_REASON, THANKS, REFUSED = "ready", "ask_reason", "thanks", "refused"
NTP_RETRY_MS = 600000
NTP_REFRESH_MS = 3600000
BEEP_MS = 120
WIFI_RETRY_MS = 10000
LOW_BEEP_MS = 400


class _Key:
    def __init__(self, key, pin, pull_up, bounce_ms):
        self.key = key
        self.pin = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP if pull_up else machine.Pin.PULL_DOWN)
        self.active = 0 if pull_up else 1
        self.bounce_ms = bounce_ms
        self.raw = self.pin.value()
        self.stable = self.raw
        self.since = ticks_ms()

    def sample(self, now):
        """True once per press: the level went active and stayed so for ``bounce_ms``."""
        v = self.pin.value()
        if v != self.raw:
            self.raw, self.since = v, now
            return False
        if v != self.stable and ticks_diff(now, self.since) >= self.bounce_ms:
            self.stable = v
            return v == self.active
        return False


class Board:
    platform = "esp32"

    def __init__(self, cfg):
        pins = cfg.get("pins", {})
        pull_up = pins.get("pull_up", True)
        bounce = int(pins.get("bounce_ms", 30))
        self.keys = []
        levels = pins.get("keys", {})
        for level in levels:
            self.keys.append(_Key(("level", level), levels[level], pull_up, bounce))
        self.levels = tuple(levels)
        reasons = [r for r in pins.get("reason_keys", {}) if r in cfg.get("reasons", ())]
        for r in reasons:
            self.keys.append(_Key(("reason", r), pins["reason_keys"][r], pull_up, bounce))
        self.reasons = tuple(reasons)
        if pins.get("staff_key") is not None:
            self.keys.append(_Key(("staff", ""), pins["staff_key"], pull_up, bounce))
        self.ready_light = self._out(pins.get("ready_light"))
        self.thanks_light = self._out(pins.get("thanks_light"))
        self.buzzer = self._out(pins.get("buzzer"))
        self.beep_until = None
        self.wifi = cfg.get("wifi", {})
        self.ntp_host = cfg.get("ntp_host") or "pool.ntp.org"
        self.wlan = network.WLAN(network.STA_IF)
        self._synced = False
        self._ntp_at = ticks_ms()
        self._wifi_retry_at = ticks_add(ticks_ms(), WIFI_RETRY_MS)
        wd = cfg.get("watchdog_s")
        try:  # on trial after an update the boot step armed the watchdog (boot_update): it is fed here
            with open("update.json") as f:
                wd = wd or ('"phase": "switched"' in f.read() and 120)
        except OSError:
            pass
        self._wdt = machine.WDT(timeout=int(wd) * 1000) if wd else None
        self._connect_wifi()

    @staticmethod
    def _out(pin):
        if pin is None:
            return None
        p = machine.Pin(pin, machine.Pin.OUT)
        p.value(0)
        return p

    # -- outputs ----------------------------------------------------------------------------
    def show(self, feedback):
        if self.ready_light is not None:
            self.ready_light.value(1 if feedback in (READY, ASK_REASON) else 0)
        if self.thanks_light is not None:
            self.thanks_light.value(1 if feedback == THANKS else 0)
        if self.buzzer is not None and feedback in (THANKS, REFUSED):
            self.buzzer.value(1)
            self.beep_until = ticks_add(ticks_ms(), BEEP_MS if feedback == THANKS else LOW_BEEP_MS)

    def emit(self, line):
        print(line)

    def log(self, text):
        print("log", text)

    # -- inputs -----------------------------------------------------------------------------
    def poll(self):
        now = ticks_ms()
        out = []
        for k in self.keys:
            if k.sample(now):
                out.append(k.key)
        return out

    # -- network and time -------------------------------------------------------------------
    def _connect_wifi(self):
        ssid = self.wifi.get("ssid")
        if not ssid:
            self.log("no wifi.ssid in config.json: offline (presses are journaled)")
            return
        self.wlan.active(True)
        try:
            self.wlan.connect(ssid, self.wifi.get("password", ""))  # returns at once
        except OSError as exc:
            self.log("wifi connect failed: %s" % exc)

    def network_up(self):
        return self.wlan.isconnected()

    def synced(self):
        return self._synced

    def idle(self):
        """Main loop housekeeping: buzzer off, watchdog, NTP when due, Wi-Fi reconnect."""
        now = ticks_ms()
        if self.beep_until is not None and ticks_diff(now, self.beep_until) >= 0:
            self.buzzer.value(0)
            self.beep_until = None
        if self._wdt is not None:
            self._wdt.feed()
        if not self.wlan.isconnected():
            if ticks_diff(now, self._wifi_retry_at) >= 0:
                self._wifi_retry_at = ticks_add(now, WIFI_RETRY_MS)
                if self.wlan.status() != network.STAT_CONNECTING:
                    self._connect_wifi()
            return
        if ticks_diff(now, self._ntp_at) >= 0:
            self._sync_time(now)

    def _sync_time(self, now):
        try:
            import ntptime

            ntptime.host = self.ntp_host
            ntptime.timeout = 1
            ntptime.settime()  # one UDP exchange, bounded by ntptime.timeout
            self._synced = True
            self._ntp_at = ticks_add(now, NTP_REFRESH_MS)
        except Exception as exc:
            self.log("ntp failed: %r" % exc)
            self._ntp_at = ticks_add(now, NTP_RETRY_MS)
