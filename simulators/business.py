"""The business system (一窗受理 / queue system): finishes cases at windows and tells the hub.

It calls ``POST /api/v1/cases`` as the real one would, with its own case numbers, service items
and staff, at a steady pace per window until it is stopped.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import ssl
import threading
import urllib.error
import urllib.request
from collections import Counter

_LOG = logging.getLogger(__name__)


class BusinessSystem:
    def __init__(
        self,
        base_url: str,
        token: str,
        windows: list[str],
        items: list[str],
        interval_s: float = 0.5,
        seed: int = 1,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tls = tls  # for an https:// hub: the context trusting the hall CA
        self.token = token
        self.windows = windows
        self.items = items
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()  # HTTP status → count
        self._numbers = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="business-system", daemon=True)

    def open_case(self, window: str) -> int:
        """One case finished at ``window``; returns the HTTP status."""
        body = {
            "case": f"YC{next(self._numbers):08d}",
            "window": window,
            "item": self.rng.choice(self.items),
            "staff": f"S{window}-{self.rng.randint(1, 2)}",
        }
        request = urllib.request.Request(
            f"{self.base_url}/api/v1/cases",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            _LOG.warning("the hub did not answer: %s", exc)
            status = 0
        self.counts[str(status)] += 1
        return status

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for window in self.windows:
                self.open_case(window)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
