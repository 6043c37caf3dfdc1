"""A fake ``network`` module: a station interface that connects when the test says so."""

STA_IF = 0
STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010


class WLAN:
    last = None

    def __init__(self, interface):
        self.up = False
        self.is_active = False
        self.connects = []
        self._status = STAT_IDLE
        WLAN.last = self

    def active(self, on=None):
        if on is not None:
            self.is_active = on
        return self.is_active

    def connect(self, ssid, password):
        if not self.is_active:
            raise OSError("wifi not active")
        self.connects.append(ssid)
        self._status = STAT_CONNECTING

    def isconnected(self):
        return self.up

    def status(self):
        return STAT_GOT_IP if self.up else self._status
