"""The one retry helper: exponential backoff, capped, with optional jitter.

The n-th failure in a row waits ``initial_s * 2 ** (n - 1)``, at most ``max_s``; with jitter, a
random time between half that and all of it (peers that failed together do not retry together).
The upstream sender, the hub's writer (a disk that refuses commits) and the chaos run's
supervisor (a process that keeps exiting) all back off this way.
"""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass
class Backoff:
    initial_s: float
    max_s: float
    jitter: bool = False
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    #: Failures since the last success.
    failures: int = 0

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self.failures += 1
        step = min(self.max_s, self.initial_s * 2 ** min(self.failures - 1, 60))
        return self.rng.uniform(step / 2, step) if self.jitter else step

    def succeeded(self) -> None:
        self.failures = 0
