"""The console's Today, windows, staff, devices and upstream pages in Debian's Chromium through
Playwright, served over real HTTP by the hub's app: log in through the form, open each page at
1366×768 and 1920×1080, check that nothing overflows sideways, and keep a screenshot of each in
``artefacts/console/`` for people to look at."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from hub import auth_store
from hub.config import DB_NAME, HubConfig, UpstreamSettings
from hub.http.app import create_app
from hub.store import now_ms
from hub.upstream import outbox
from simulators.hall import free_port, port_open, wait_for
from tests.console_hall import build

playwright = pytest.importorskip("playwright.sync_api")

ARTEFACTS = Path(__file__).parent.parent / "artefacts" / "console"
SIZES = ((1366, 768), (1920, 1080))
PAGES = {
    "today": "/console/today",
    "windows": "/console/windows?from=2026-10-01&to=2026-12-31&grain=week&window=W01",
    "staff": "/console/staff?from=2026-10-15&to=2026-12-10&grain=day&staff=S1",
    "devices": "/console/devices",
    "upstream": "/console/upstream",
}


@pytest.fixture
def hub_url(tmp_path: Path) -> Iterator[str]:
    home = tmp_path / "home"
    home.mkdir()
    with build(home / DB_NAME, now_ms()) as store:
        auth_store.add_user(store, "zhang", "supervisor", None, "correct horse battery")
        with store.transaction() as conn:
            outbox.park(conn, 1, "HTTP 400: taskCode 未在省平台登记")
            today = conn.execute("SELECT max(day) FROM events").fetchone()[0]
            sql = "SELECT o.id FROM outbox o JOIN events e ON e.id = o.event_id WHERE e.day = ? ORDER BY o.id LIMIT 5"
            outbox.mark_sent(conn, [i for (i,) in conn.execute(sql, (today,))])
    port = free_port()
    config = HubConfig(hall="H1", upstream=UpstreamSettings(url="https://hcp.example.gov.cn/"))
    server = uvicorn.Server(uvicorn.Config(create_app(home, config), "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: port_open(port), 20, "the console's HTTP server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_pages_render_in_chromium_at_both_sizes(hub_url: str) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (Debian package chromium)")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"{hub_url}/console/login")
            page.fill("#username", "zhang")
            page.fill("#password", "correct horse battery")
            page.click("button[type=submit]")
            page.wait_for_url(f"{hub_url}/console/")
            for width, height in SIZES:
                page.set_viewport_size({"width": width, "height": height})
                for name, path in PAGES.items():
                    answer = page.goto(hub_url + path)
                    assert answer is not None and answer.status == 200, (name, answer and answer.status)
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"{name} at {width}×{height} is {overflow} px too wide"
                    page.screenshot(path=str(ARTEFACTS / f"{name}-{width}x{height}.png"), full_page=True)
            page.goto(hub_url + PAGES["today"])
            assert page.locator(".card.silent").count() == 2
            assert page.locator("text=一号窗").count() >= 1
        finally:
            browser.close()
