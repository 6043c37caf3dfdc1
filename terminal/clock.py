"""Time as a terminal without a real-time clock knows it (SPEC section 3, delivery rule 4).

Each event records the boot id, the monotonic time and the wall-clock time, and whether the wall
clock was synchronised. Within one boot the monotonic clock gives an event's exact age at sending,
so the hub can derive its time from its own receive time even when the wall clock is wrong.

A wall clock outside the range :mod:`protocol.rules` allows a synchronised time (a Pi that booted
at 1970, an RTC set to 2150) counts as not synchronised, whatever the policy says: its rows stay
valid and the hub derives their time.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from protocol.rules import WALL_MAX_MS, WALL_MIN_MS

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def read_boot_id() -> str:
    """The kernel's boot id (shared by every process of this boot), else a random one."""
    try:
        return BOOT_ID_FILE.read_text().strip().replace("-", "")[:32]
    except OSError:
        return uuid.uuid4().hex


class Clock:
    """Monotonic and wall time plus the synchronised flag; ``policy`` is the config's ``clock``."""

    def __init__(self, policy: str = "auto", boot_id: str | None = None, wall_offset_s: float = 0.0) -> None:
        self.policy = policy
        self.boot_id = boot_id or read_boot_id()
        #: Added to the wall clock; lets tests make a terminal's clock jump.
        self.wall_offset_s = wall_offset_s

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def wall_ms(self) -> int:
        """Milliseconds since 1970; never negative (a clock set before 1970 reads 0)."""
        return max(0, int((time.time() + self.wall_offset_s) * 1000))

    def synced(self, wall_ms: int | None = None) -> bool:
        """Is the wall clock, read as ``wall_ms`` (default: now), a synchronised time? The policy
        says so, and the time lies in the rules' range for one."""
        if not (TIMESYNC_FLAG.exists() if self.policy == "auto" else self.policy == "synced"):
            return False
        wall = self.wall_ms() if wall_ms is None else wall_ms
        return WALL_MIN_MS <= wall < WALL_MAX_MS

    def age_ms(self, boot: str, mono_ms: int) -> int | None:
        """Age of an event stamped (boot, mono_ms), or None if it came from an earlier boot."""
        if boot != self.boot_id:
            return None
        return max(0, self.mono_ms() - mono_ms)
