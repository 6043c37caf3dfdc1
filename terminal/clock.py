"""Time as a terminal without a real-time clock knows it (SPEC section 3, delivery rule 4).

Each event records the boot id, the monotonic time and the wall-clock time, and whether the wall
clock was synchronised. Within one boot the monotonic clock gives an event's exact age at sending,
so the hub can derive its time from its own receive time even when the wall clock is wrong.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

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
        return int((time.time() + self.wall_offset_s) * 1000)

    def synced(self) -> bool:
        if self.policy == "auto":
            return TIMESYNC_FLAG.exists()
        return self.policy == "synced"

    def age_ms(self, boot: str, mono_ms: int) -> int | None:
        """Age of an event stamped (boot, mono_ms), or None if it came from an earlier boot."""
        if boot != self.boot_id:
            return None
        return max(0, self.mono_ms() - mono_ms)
