"""What every long-running command does the same way (SPEC section 7): its own process group,
SIGTERM and SIGINT as a stop request, log lines on stderr. Used by the terminal, the hub and the
simulators alike, so it sits in the bottom layer."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


def own_process_group() -> None:
    """Long-running commands keep their children in their own process group."""
    with contextlib.suppress(OSError):
        if os.getpgrp() != os.getpid():
            os.setpgid(0, 0)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], Any]) -> Iterator[threading.Event]:
    """Call ``stop`` on SIGTERM or SIGINT; yields an Event set at the same time."""
    event = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        event.set()
        stop()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def setup_logging(verbose: bool = False) -> None:
    """Entry points only: log lines to stderr (journald under systemd)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
