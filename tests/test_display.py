"""The hall display at ``GET /`` in real headless Chromium: the page's script fetches the live
figures and renders them; a screenshot is kept in ``artefacts/`` for people to look at."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from simulators.hall import Hall, port_open, wait_for

ARTEFACTS = Path(__file__).parent.parent / "artefacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,760", "--virtual-time-budget=4000"]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return path


def browse(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def test_hall_display_renders_live_figures(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_window("W02")
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W02")
    for device, presses in (("T01", 25), ("T02", 12)):
        hall.sim_terminal(device, presses, 50, seed=len(device) + presses)
    for device in ("T01", "T02"):
        assert hall.procs[f"sim-{device}"].wait(timeout=60) == 0
    wait_for(lambda: port_open(hall.http_port), 20, "the hub's HTTP API")
    url = f"http://127.0.0.1:{hall.http_port}/"
    dom = browse(url, "--dump-dom").stdout
    assert "好差评实时看板" in dom and "Hall evaluation" in dom
    rows = {cells[0]: cells for cells in _table_rows(dom)}
    assert rows["W01"][3] == "25" and rows["W02"][3] == "12" and rows["合计"][3] == "37"
    assert "updated" in dom  # the script ran and fetched /display.json, with no token
    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "hall-display.png"
    browse(url, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


def _table_rows(dom: str) -> list[list[str]]:
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.in_td = False

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag == "tr":
                self.rows.append([])
            self.in_td = tag == "td"

        def handle_endtag(self, tag: str) -> None:
            self.in_td = False if tag == "td" else self.in_td

        def handle_data(self, data: str) -> None:
            if self.in_td and self.rows:
                self.rows[-1].append(data.strip())

    parser = Rows()
    parser.feed(dom)
    return [r for r in parser.rows if r]
