"""The console in Debian's Chromium, driven by Playwright (SPEC section 12): each role logs in and
sees its own navigation; a ticket walks 登记 → 转办 → 核实 → 反馈 through the forms (a handler of
the department and a supervisor), and another one through an appeal; a 403 page, the CSRF
refusal and the lockout. Every console page this module covers is kept as a screenshot in
``artefacts/console/`` at 1366×768 and 1920×1080. One browser for the module, served by the
hub's real HTTP app under uvicorn."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from hub import config as hub_config
from hub.http.app import create_app
from hub.store import registry as reg
from simulators.hall import free_port, port_open, wait_for

from .people import PASSWORD, add_person
from .upstream_helpers import TZ, ingest, make_home, rating, reason

ARTEFACTS = Path(__file__).parent.parent / "artefacts" / "console"
SIZES = ((1366, 768), (1920, 1080))
OLD = int(dt.datetime(2026, 1, 5, 10, 0, tzinfo=TZ).timestamp() * 1000)
PEOPLE = {
    "王主管": ("supervisor", None),
    "李四": ("handler", "市场监管局"),
    "孙技术": ("technician", None),
    "周审计": ("auditor", None),
    "吴锁定": ("handler", "市场监管局"),
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("console")
    _cfg, store = make_home(home, windows=("W01", "W02"))
    with store:
        reg.add_window(store, "W03", "税务综合窗", "税务局")
        ingest(store, [rating(1, "dissatisfied"), reason(2, 1, ("cold", "lazy")), rating(3, "very_dissatisfied")])
        ingest(store, [rating(4, "dissatisfied", t_ms=OLD)])  # overdue
    for name, (role, dept) in PEOPLE.items():
        add_person(home, name, role, dept)
    port = free_port()
    config = uvicorn.Config(create_app(home, hub_config.load(home)), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: port_open(port), 20, "the console's HTTP server")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(browser: Browser, base_url: str) -> Iterator[list[Page]]:
    """Two pages in two contexts (two people side by side), made once: a context costs seconds."""
    contexts = [
        browser.new_context(base_url=base_url, viewport={"width": 1366, "height": 768}, locale="zh-CN")
        for _ in range(2)
    ]
    yield [context.new_page() for context in contexts]
    for context in contexts:
        context.close()


@pytest.fixture
def new_page(pages: list[Page]) -> Callable[[], Page]:
    """The module's pages one after another, logged out (cookies cleared) for this test."""
    for page in pages:
        page.context.clear_cookies()
    handed = iter(pages)
    return lambda: next(handed)


def shoot(page: Page, name: str) -> None:
    """Full-page screenshots at both sizes, then back to 1366×768."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTEFACTS / f"{name}-{width}x{height}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})


def log_in(page: Page, name: str, password: str = PASSWORD) -> None:
    page.goto("/console/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")


def nav(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("nav a").all_inner_texts()]


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_each_role_logs_in_and_sees_only_its_pages(new_page: Callable[[], Page]) -> None:
    figures, machinery = ["今日概况", "窗口分析", "工作人员"], ["终端状态", "上报队列"]
    reports = ["月度排名", "最难办窗口"]
    expected = {
        "王主管": ["首页", *figures, "差评工单", *reports, *machinery, "告警", "人员账号"],
        "李四": ["首页", "差评工单"],
        "孙技术": ["首页", *machinery, "告警"],
        "周审计": ["首页", *figures, "差评工单", *reports, *machinery, "告警", "人员账号", "审计日志"],
    }
    page = new_page()
    page.goto("/console/tickets")
    assert "/console/login" in page.url and page.locator("h2").inner_text() == "登录"
    shoot(page, "login")
    for name, links in expected.items():
        log_in(page, name)
        page.wait_for_url("**/console/")
        assert nav(page) == links, name
        assert name in page.locator("header .who").inner_text()
        assert no_horizontal_scroll(page)
        if name == "王主管":
            shoot(page, "home-supervisor")
        if name != "周审计":
            page.click("header button")  # 退出登录
            page.wait_for_url("**/console/login")
    page.goto("/console/audit")
    assert page.locator("main h2").inner_text() == "审计日志" and page.locator("td", has_text="登录").count() >= 4
    assert page.locator("td", has_text="退出登录").count() >= 3
    shoot(page, "audit")
    page.goto("/console/people")  # the auditor reads who has an account, with role and department
    assert page.locator("main h2").inner_text() == "人员账号" and page.locator("td", has_text="承办人").count() >= 1
    shoot(page, "people")


def test_a_ticket_from_registration_to_feedback_through_the_forms(new_page: Page) -> None:
    handler, supervisor = new_page(), new_page()
    log_in(handler, "李四")
    handler.goto("/console/tickets")
    rows = handler.locator("tbody tr")
    assert rows.count() == 3
    overdue = handler.locator("tr.overdue")
    assert overdue.count() == 1 and "已超期" in overdue.inner_text()
    assert overdue.locator("td").first.evaluate("e => getComputedStyle(e).color") == "rgb(198, 40, 40)"
    assert no_horizontal_scroll(handler)
    shoot(handler, "tickets-handler")
    handler.click("text=H1-T01-0123456789abcdef-1")
    assert "剩余" in handler.locator("table.facts").inner_text() and "冷（态度冷漠）" in handler.inner_text("main")
    assert handler.locator("form[action$='/verify']").count() == 0  # verifying is the supervisor's
    handler.fill("input[name=to]", "窗口一组 张三")
    handler.click("form[action$='/assign'] button")
    assert handler.locator(".flash.ok").inner_text() == "已转办。"
    ticket_url = handler.url.split("?")[0]

    log_in(supervisor, "王主管")
    supervisor.goto(ticket_url)
    assert "已转办" in supervisor.locator("table.facts").inner_text()
    supervisor.click("form[action$='/verify'] button[value='1']")
    assert supervisor.locator(".flash.ok").inner_text() == "已核实。"

    handler.goto(ticket_url)
    handler.fill("#feedback-text", "已约谈窗口人员，完成整改。")
    handler.click("form[action$='/feedback'] button")
    facts = handler.locator("table.facts").inner_text()
    assert "已反馈（有效）" in facts and "已约谈窗口人员" in facts and "已办结" in facts
    history = handler.locator("main section").last.inner_text()
    assert [w for w in ("登记", "转办", "核实", "反馈") if w in history] == ["登记", "转办", "核实", "反馈"]
    assert "李四" in history and "王主管" in history
    shoot(handler, "ticket-done")


def test_an_appeal_found_valid_closes_the_ticket_as_invalid(new_page: Page) -> None:
    handler, supervisor = new_page(), new_page()
    log_in(handler, "李四")
    handler.goto("/console/tickets?state=registered")
    handler.click("text=H1-T01-0123456789abcdef-3")
    handler.fill("input[name=to]", "李四")
    handler.click("form[action$='/assign'] button")
    handler.fill("#appeal-reason", "监控显示评价人未在本窗口办事。")
    handler.click("form[action$='/appeal'] button")
    assert handler.locator(".flash.ok").inner_text() == "已申诉。"
    log_in(supervisor, "王主管")
    supervisor.goto(handler.url.split("?")[0])
    shoot(supervisor, "ticket-appealed")
    supervisor.click("form[action$='/verify'] button[value='0']")
    assert "已核实（无效）" in supervisor.locator("table.facts").inner_text()


def test_a_role_outside_its_rights_sees_the_403_page(new_page: Page) -> None:
    page = new_page()
    log_in(page, "孙技术")
    page.wait_for_url("**/console/")
    answer = page.goto("/console/tickets")
    assert answer.status == 403 and "无权" in page.inner_text("main")
    shoot(page, "forbidden")


def test_a_form_without_its_csrf_token_is_refused(new_page: Page) -> None:
    page = new_page()
    log_in(page, "王主管")
    page.goto("/console/tickets?state=registered")
    page.locator("tbody a").first.click()
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.value = 'forged')")
    page.fill("input[name=to]", "x")
    with page.expect_navigation() as done:
        page.click("form[action$='/assign'] button")
    assert done.value.status == 403 and "CSRF" in page.inner_text("main")
    shoot(page, "csrf-refused")
    page.go_back()
    page.reload()
    assert "已登记" in page.locator("table.facts").inner_text()  # nothing changed


def test_repeated_failed_logins_lock_the_account(new_page: Callable[[], Page]) -> None:
    page = new_page()
    wrong = {"username": "吴锁定", "password": "wrong password"}
    for _ in range(3):  # through the browser's own HTTP stack, without drawing the page
        assert page.request.post("/console/login", form=wrong, max_redirects=0).status == 401
    log_in(page, "吴锁定", "wrong password")
    assert page.locator(".flash").inner_text() == "用户名或密码错误。"
    log_in(page, "吴锁定", "wrong password")  # the fifth
    assert "已锁定" in page.locator(".flash").inner_text()
    log_in(page, "吴锁定")  # the right password, too late
    assert "已锁定" in page.locator(".flash").inner_text() and "/console/login" in page.url
    shoot(page, "locked")
