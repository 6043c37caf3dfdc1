"""Time as a board without a real-time clock knows it (SPEC section 3, delivery rule 4).

``time.ticks_ms`` wraps (at 2**30 on most ports), so :meth:`Clock.mono_ms` accumulates
``ticks_diff`` steps into an integer that does not; call it at least once per wrap period (the
main loop does, many times a second). Wall time counts from 1970 whatever the port's epoch. A
wall clock outside the range the rules allow a synchronised time counts as not synchronised: the
hub then derives the time of its rows.
"""

import os
import time
from time import ticks_diff, ticks_ms

from wire import wall_ok

try:
    _EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0
except Exception:
    _EPOCH_OFFSET_S = 0


class Clock:
    def __init__(self, policy="auto", synced_probe=None, ticks=ticks_ms):
        self.policy = policy
        self.ticks = ticks
        self.synced_probe = synced_probe  # () -> bool for policy "auto" (NTP done, timesyncd flag)
        self.boot_id = "".join("%02x" % b for b in os.urandom(8))
        self._last_ticks = ticks()
        self._mono = 0

    def mono_ms(self):
        now = self.ticks()
        self._mono += ticks_diff(now, self._last_ticks)
        self._last_ticks = now
        return self._mono

    def wall_ms(self):
        try:
            return time.time_ns() // 1000000 + _EPOCH_OFFSET_S * 1000
        except AttributeError:
            return (int(time.time()) + _EPOCH_OFFSET_S) * 1000

    def synced(self, wall_ms=None):
        """Per the policy, and only for a wall time (``wall_ms``, default now) in the rules' range."""
        if self.policy == "auto":
            ok = bool(self.synced_probe and self.synced_probe())
        else:
            ok = self.policy == "synced"
        return ok and wall_ok(self.wall_ms() if wall_ms is None else wall_ms)

    def age_ms(self, boot, mono_ms):
        """Age of an event stamped (boot, mono_ms), or None if it came from an earlier boot."""
        if boot != self.boot_id:
            return None
        return max(0, self.mono_ms() - mono_ms)
