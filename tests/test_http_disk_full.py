"""The hub's disk full (a real tmpfs filled to the last block, as root): the API answers 503 with
Retry-After and one log line, never a 500, and works again once space is freed (SPEC section 10:
a full disk gets a clear error and loses nothing)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from hub.http.app import create_app
from simulators.chaos.hall import HubDisk
from simulators.hall import Hall


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[HubDisk]:
    if os.geteuid() != 0:
        pytest.skip("filling a tmpfs needs root (make test runs as root in CI)")
    disk = HubDisk(tmp_path / "disk", 8)
    try:
        yield disk
    finally:
        disk.close()


def test_a_full_disk_gets_503_with_retry_after_and_passes(disk: HubDisk, caplog: pytest.LogCaptureFixture) -> None:
    hall = Hall(disk.path / "hall")
    hall.add_device("T01", "W01")
    headers = {"Authorization": f"Bearer {hall.config.http.token}"}
    with TestClient(create_app(hall.home, hall.config), raise_server_exceptions=False) as client:
        assert client.post("/api/v1/cases", json={"case": "C1", "window": "W01"}, headers=headers).status_code == 201
        disk.fill()
        with caplog.at_level(logging.WARNING, logger="hub.http.app"):
            refused = client.post("/api/v1/cases", json={"case": "C2", "window": "W01"}, headers=headers)
            read = client.get("/api/v1/stats", headers=headers)
        for response in (refused, read):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert "try again" in response.json()["error"]
        assert any("cannot be used now" in r.getMessage() for r in caplog.records)
        assert all(r.exc_info is None for r in caplog.records)  # one line, no traceback
        disk.free()
        assert client.post("/api/v1/cases", json={"case": "C2", "window": "W01"}, headers=headers).status_code == 201
        assert client.get("/api/v1/cases/C1", headers=headers).status_code == 200  # nothing lost
