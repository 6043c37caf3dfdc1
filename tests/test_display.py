"""The hall display and the printed rankings in a real browser (Playwright driving Debian's
Chromium) against the hub's HTTP API served over real HTTP from a real hub database.

At 1920×1080, with 1, 12 and 40 windows: every text at least 28 px, every window card inside the
viewport with nothing cut off, no scrolling, each window's terminal status shown, no staff id.
The live test drives real terminals through a real broker and hub. Screenshots (and the printed
report as PDF) are kept in ``artefacts/console/`` for people to look at.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from hub import config as hub_config
from hub.http.app import create_app
from hub.store import Store
from hub.store import registry as reg
from protocol.frames import Event
from simulators.hall import Hall, free_port, port_open, wait_for

from .people import add_person
from .upstream_helpers import EPOCH, KEY, ingest, make_home

ARTEFACTS = Path(__file__).parent.parent / "artefacts" / "console"
CHROMIUM = "/usr/bin/chromium"
NAMES = ["不动产登记", "社保医保", "公积金", "税务综合", "公安户政", "出入境", "市场登记", "工程审批", "交通运输",
         "婚姻登记", "卫生健康", "人才服务", "残联事务", "退役军人", "水电气", "公证", "法律援助", "综合受理",
         "企业开办", "帮办代办"]  # fmt: skip
LEVELS = ["very_satisfied", "satisfied", "very_satisfied", "basic", "satisfied", "dissatisfied", "very_satisfied"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: the tests use Debian's chromium package")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def window_name(i: int) -> str:
    return NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else "二")


def populate(home: Path, n: int) -> None:
    """``n`` windows rated today: every 7th terminal offline, every 10th window without one."""
    make_home(home, ())[1].close()
    now_ms = int(time.time() * 1000)
    with Store(home / hub_config.DB_NAME) as store:
        for i in range(n):
            window, device = f"W{i + 1:02d}", f"T{i + 1:02d}"
            reg.add_window(store, window, window_name(i), "政务服务局")
            if i % 10 == 9:
                continue
            reg.insert_device(store, device, window, "gpio", "free", KEY.hex(), "x")
            presses = [
                _rating(k + 1, LEVELS[(i + k) % len(LEVELS)], now_ms, staff=f"STAFF-{i}") for k in range(i % 9 + 3)
            ]
            ingest(store, presses, device)
            with store.transaction():
                reg.set_device_state(store, device, {"online": i % 7 != 6}, now_ms)


def _rating(seq: int, level: str, t_ms: int, staff: str) -> Event:
    return Event(epoch=EPOCH, seq=seq, kind="rating", level=level, trigger="free", staff=staff, boot="b",
                 wall_ms=t_ms, synced=True, age_ms=1)  # fmt: skip


class Served(NamedTuple):
    url: str
    token: str


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[int], Served]]:
    """Serves a hall of n windows over HTTP (uvicorn, as the hub does)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(n: int) -> Served:
        home = tmp_path / f"hall{n}"
        home.mkdir()
        populate(home, n)
        port = free_port()
        config = hub_config.load(home)
        app = create_app(home, config)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_for(lambda: server.started, 20, "the HTTP server")
        return Served(f"http://127.0.0.1:{port}", add_person(home, "主管", "supervisor"))  # reports: people's

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


#: Every element that shows text, its computed font size, and each card's box against the viewport.
MEASURE = """() => {
  const small = [];
  for (const e of document.body.querySelectorAll("*")) {
    const own = [...e.childNodes].some(c => c.nodeType === 3 && c.textContent.trim());
    const size = parseFloat(getComputedStyle(e).fontSize);
    if (own && e.offsetParent !== null && size < 28) small.push(`${e.tagName}.${e.className} ${size}px`);
  }
  const cards = [...document.querySelectorAll(".card")].map(c => {
    const r = c.getBoundingClientRect();
    const cut = [...c.children].filter(x => x.getBoundingClientRect().bottom > r.bottom + 0.5).length;
    const wide = [...c.children].filter(x => x.scrollWidth > x.clientWidth + 1).length;
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, cut, wide,
            font: parseFloat(getComputedStyle(c).fontSize), clipped: c.scrollHeight > c.clientHeight + 1};
  });
  const root = document.documentElement;
  return {small, cards, body: parseFloat(getComputedStyle(document.body).fontSize),
          scroll: root.scrollHeight > innerHeight || root.scrollWidth > innerWidth,
          text: document.body.innerText};
}"""


def open_display(browser: Browser, url: str, n: int) -> Page:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(url + "/")
    page.wait_for_function(f"document.querySelectorAll('.card').length === {n}", timeout=20_000)
    page.wait_for_function("document.getElementById('stamp').textContent.startsWith('更新于')", timeout=20_000)
    return page


@pytest.mark.parametrize("n", [1, 12, 40])
def test_display_fits_a_wall_tv_with_1_to_40_windows(browser: Browser, serve: Callable[[int], Served], n: int) -> None:
    page = open_display(browser, serve(n).url, n)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"display-{n:02d}-windows-1920x1080.png"))
    got: dict[str, Any] = page.evaluate(MEASURE)
    page.close()
    assert got["body"] >= 28 and got["small"] == [], got["small"]
    assert not got["scroll"], "the display scrolls"
    for i, box in enumerate(got["cards"]):
        inside = box["left"] >= 0 and box["top"] >= 0 and box["right"] <= 1920 and box["bottom"] <= 1080
        assert inside and not box["clipped"] and box["cut"] == box["wide"] == 0, (i, box)
    text = got["text"]
    assert "好差评实时看板" in text and window_name(n - 1) in text and "STAFF-" not in text
    assert ("终端离线" in text) == (n >= 7) and ("未接入终端" in text) == (n >= 10) and "在线" in text
    if n == 1:
        assert got["cards"][0]["font"] >= 100  # one window: large, readable from across the hall


def test_more_windows_than_fit_at_28_px_get_smaller_text_not_cut_off(
    browser: Browser, serve: Callable[[int], Served]
) -> None:
    page = open_display(browser, serve(60).url, 60)
    page.screenshot(path=str(ARTEFACTS / "display-60-windows-1920x1080.png"))
    got: dict[str, Any] = page.evaluate(MEASURE)
    page.close()
    assert not got["scroll"] and len(got["cards"]) == 60
    for i, box in enumerate(got["cards"]):
        assert box["bottom"] <= 1080 and box["right"] <= 1920 and box["cut"] == 0 and not box["clipped"], (i, box)


def test_printed_rankings(browser: Browser, serve: Callable[[int], Served]) -> None:
    hall = serve(40)  # more rows than an A4 page holds: the heading row repeats on the next page
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    month = dt.datetime.now(hub_config.ZoneInfo("Asia/Shanghai")).date().isoformat()[:7]
    page.set_extra_http_headers({"Authorization": f"Bearer {hall.token}"})
    page.goto(f"{hall.url}/api/v1/reports/monthly?month={month}")
    assert "窗口月度排名" in page.inner_text("h1")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "report-monthly-1366x768.png"))
    overflow = page.evaluate("document.documentElement.scrollWidth > innerWidth")
    page.emulate_media(media="print")
    page.screenshot(path=str(ARTEFACTS / "report-monthly-print.png"), full_page=True)
    pdf = page.pdf(format="A4", landscape=True, print_background=True)
    (ARTEFACTS / "report-monthly.pdf").write_bytes(pdf)
    page.emulate_media(media="screen")
    page.goto(f"{hall.url}/api/v1/reports/difficult?min_ratings=5")
    assert "最难办窗口" in page.inner_text("h1") and "差评率" in page.inner_text("table")
    page.screenshot(path=str(ARTEFACTS / "report-difficult-1366x768.png"), full_page=True)
    page.close()
    assert not overflow, "the report is wider than a 1366 px screen"
    pages = re.findall(rb"/Type\s*/Page(?!s)", pdf)
    assert pdf.startswith(b"%PDF") and len(pages) >= 3  # the table over two pages, then the chart


def test_display_follows_real_terminals_through_the_broker(running_hall: Hall, browser: Browser) -> None:
    """Terminals press through a real broker into a running hub: the display counts their ratings
    and shows each terminal online while it runs and offline once it has stopped."""
    hall = running_hall
    hall.add_window("W02", "社保医保")
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W02")
    wait_for(lambda: port_open(hall.http_port), 20, "the hub's HTTP API")
    page = open_display(browser, f"http://127.0.0.1:{hall.http_port}", 2)
    hall.sim_terminal("T01", 25, 2.5, 7)  # about ten seconds of pressing: long enough to be seen online
    hall.sim_terminal("T02", 12, 50, 3)
    card = "document.querySelectorAll('.card')[0]"
    page.wait_for_function(f"{card}.classList.contains('online') && {card}.innerText.includes('在线')", timeout=30_000)
    for device in ("T01", "T02"):
        assert hall.procs[f"sim-{device}"].wait(timeout=60) == 0
    done = "t => t.includes('评价 25') && t.includes('评价 12') && t.split('终端离线').length - 1 === 2"
    page.wait_for_function(f"({done})(document.body.innerText)", timeout=30_000)
    assert page.inner_text("#k-evals") == "37" and "社保医保" in page.inner_text("main")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "display-live-1920x1080.png"))
    page.close()
