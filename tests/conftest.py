"""Fixtures: a hall in a temporary folder with its own Mosquitto on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.hall import Hall, wait_for

from .webhook_receiver import Receiver


@pytest.fixture
def hall(tmp_path: Path) -> Iterator[Hall]:
    """A provisioned-but-not-running hall; every process it started is stopped afterwards."""
    h = Hall(tmp_path / "hall")
    try:
        yield h
    finally:
        h.stop_all()


@pytest.fixture
def running_hall(hall: Hall) -> Hall:
    """A hall whose broker and hub are running, the hub subscribed: a frame a test publishes then has
    the hub's session to wait in (before the hub's first connection it would go nowhere, and the
    TLS handshake makes that first connection a little later than it was)."""
    hall.add_window("W01")
    hall.start_broker()
    hall.start_hub()
    wait_for(lambda: "hub connected to" in hall.log("hub"), 30, "the hub's first session")
    return hall


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver (tests/webhook_receiver.py) on a free port."""
    r = Receiver()
    yield r
    r.close()
