"""Fixtures: a hall in a temporary folder with its own Mosquitto on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.hall import Hall


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
    """A hall whose broker and hub are running."""
    hall.add_window("W01")
    hall.start_broker()
    hall.start_hub()
    return hall
