"""The console's alerts page: a supervisor acknowledges with a comment and closes, an auditor and
a technician read, a handler gets 403; forms need the session's CSRF token. Functional checks run
in-process (Starlette TestClient); a Playwright run in Debian's Chromium clicks through the page
on a real server and keeps screenshots in ``artefacts/console/``."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from hub.alerts import lifecycle
from hub.alerts.lifecycle import Finding
from hub.http.app import create_app
from hub.store import now_ms
from simulators.hall import Hall, free_port, port_open, wait_for

from .people import PASSWORD, add_person

ARTEFACTS = Path(__file__).parent.parent / "artefacts" / "console"
HOOKS = [
    {"name": "值班群", "kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRETKEY"},
    {
        "name": "督查组",
        "kind": "dingtalk",
        "url": "https://oapi.dingtalk.com/robot/send?access_token=t",
        "secret": "SECx",
    },
]
FINDINGS = [
    Finding("bad_share", "W01", "窗口 综合受理一号窗（W01）15 分钟内差评 3/4（75%）", {"ratings": 4, "bad": 3}),
    Finding("silent", "T07", "终端 T07（窗口 不动产登记窗）营业时间内 60 分钟无消息，离线", {"online": False}),
    Finding("backlog", "T03", "终端 T03 积压 420 条未确认（5 分钟前 180 条），没有减少", {"backlog": 420}),
    Finding("upstream_parked", "outbox", "上报省平台被拒的记录 2 条（haocha upstream parked 查看原因）", {"parked": 2}),
]


@pytest.fixture
def hall(tmp_path: Path) -> Hall:
    h = Hall(tmp_path / "hall", alerts={"webhooks": HOOKS})
    h.add_window("W01", "综合受理一号窗")
    for name, role in (("王主管", "supervisor"), ("赵审计", "auditor"), ("孙技术", "technician")):
        add_person(h.home, name, role)
    add_person(h.home, "李承办", "handler", dept="市场监管局")
    with h.store() as store:
        for f in FINDINGS:
            lifecycle.sync(store, f.rule, [f], [], now_ms())
    return h


def ids(hall: Hall) -> dict[str, int]:
    with hall.store() as store:
        return {a["rule"]: a["id"] for a in lifecycle.list_alerts(store)}


def alert(hall: Hall, alert_id: int) -> dict[str, Any]:
    with hall.store() as store:
        return lifecycle.get(store, alert_id)


def login(client: TestClient, name: str) -> None:
    response = client.post("/console/login", data={"username": name, "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 303, response.text


def csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def test_a_supervisor_acknowledges_and_closes(hall: Hall) -> None:
    client = TestClient(create_app(hall.home, hall.config))
    login(client, "王主管")
    page = client.get("/console/alerts")
    assert page.status_code == 200
    for f in FINDINGS:
        assert f.summary in page.text
    assert "值班群" in page.text and "钉钉群机器人" in page.text and "SECRETKEY" not in page.text
    assert "至少 4 个评价且差评占比 ≥ 50%" in page.text
    token, alert_ids = csrf(page.text), ids(hall)
    bad = alert_ids["bad_share"]
    done = client.post(f"/console/alerts/{bad}/ack", data={"csrf": token, "comment": "已约谈窗口负责人"},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/console/alerts?done=ack"
    acked = alert(hall, bad)
    assert (acked["state"], acked["acked_by"], acked["comment"]) == ("acknowledged", "王主管", "已约谈窗口负责人")
    again = client.post(f"/console/alerts/{bad}/ack", data={"csrf": token, "comment": "x"})
    assert again.status_code == 409 and "已被确认或关闭" in again.text
    empty = client.post(f"/console/alerts/{alert_ids['backlog']}/ack", data={"csrf": token, "comment": " "})
    assert empty.status_code == 422 and "请填写处理意见" in empty.text
    silent = alert_ids["silent"]
    assert (
        client.post(f"/console/alerts/{silent}/close", data={"csrf": token}, follow_redirects=False).status_code == 303
    )
    closed = alert(hall, silent)
    assert (closed["state"], closed["closed_by"], closed["close_reason"]) == ("closed", "王主管", "manual")
    assert client.post("/console/alerts/999/close", data={"csrf": token}).status_code == 404
    with hall.store() as store:
        actions = list(
            store.conn.execute("SELECT actor, action FROM audit WHERE action LIKE 'alert.%' AND actor != 'system'")
        )
    assert actions == [("王主管", "alert.ack"), ("王主管", "alert.close")]
    page = client.get("/console/alerts").text
    assert "最近关闭" in page and "手动关闭（王主管）" in page


def test_a_post_without_the_sessions_csrf_token_is_refused(hall: Hall) -> None:
    client = TestClient(create_app(hall.home, hall.config))
    login(client, "王主管")
    bad = ids(hall)["bad_share"]
    for data in ({"comment": "x"}, {"comment": "x", "csrf": "forged"}):
        assert client.post(f"/console/alerts/{bad}/ack", data=data).status_code == 403
    assert alert(hall, bad)["state"] == "open"


@pytest.mark.parametrize("name", ["赵审计", "孙技术"])
def test_readers_see_the_alerts_without_forms_and_cannot_act(hall: Hall, name: str) -> None:
    client = TestClient(create_app(hall.home, hall.config))
    login(client, name)
    page = client.get("/console/alerts")
    assert page.status_code == 200 and FINDINGS[0].summary in page.text
    assert "/ack" not in page.text and "/close" not in page.text
    bad = ids(hall)["bad_share"]
    refused = client.post(f"/console/alerts/{bad}/ack", data={"csrf": csrf(page.text), "comment": "x"})
    assert refused.status_code == 403 and alert(hall, bad)["state"] == "open"


def test_a_handler_may_not_open_the_alerts(hall: Hall) -> None:
    client = TestClient(create_app(hall.home, hall.config))
    login(client, "李承办")
    assert client.get("/console/alerts").status_code == 403
    assert 'href="/console/alerts"' not in client.get("/console/tickets").text


# -- in a browser ---------------------------------------------------------------------------------
@pytest.fixture
def served(hall: Hall) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hall.home, hall.config), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: port_open(port), 20, "the console to serve")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def assert_fits(page: Any) -> None:
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"the page is {scroll} px wide in a {inner} px window"


def test_in_chromium_a_supervisor_acknowledges_with_a_comment(served: str, hall: Hall) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"{served}/console/alerts")
            page.fill("#username", "王主管")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/alerts")
            page.screenshot(path=str(ARTEFACTS / "alerts-1366.png"), full_page=True)
            bad = ids(hall)["bad_share"]
            page.fill(f"#alert-{bad} input[name=comment]", "已约谈窗口负责人，正在回访")
            page.click(f"#alert-{bad} form[action$='/ack'] button")
            page.wait_for_url("**/console/alerts?done=ack")
            assert "已确认告警" in page.inner_text(".flash")
            assert "王主管：已约谈窗口负责人，正在回访" in page.inner_text(f"#alert-{bad}")
            page.click(f"#alert-{ids(hall)['backlog']} form[action$='/close'] button")
            page.wait_for_url("**/console/alerts?done=close")
            assert_fits(page)
            page.set_viewport_size({"width": 1920, "height": 1080})
            page.screenshot(path=str(ARTEFACTS / "alerts-1920.png"), full_page=True)
            assert_fits(page)
            auditor = browser.new_page(viewport={"width": 1366, "height": 768})
            auditor.goto(f"{served}/console/login")
            auditor.fill("#username", "赵审计")
            auditor.fill("#password", PASSWORD)
            auditor.click("button[type=submit]")
            auditor.goto(f"{served}/console/alerts")
            auditor.screenshot(path=str(ARTEFACTS / "alerts-auditor-1366.png"), full_page=True)
            assert "已约谈窗口负责人" in auditor.inner_text("main") and auditor.locator("main form").count() == 0
            assert_fits(auditor)
        finally:
            browser.close()
    assert alert(hall, ids(hall)["bad_share"])["acked_by"] == "王主管"
    assert alert(hall, ids(hall)["backlog"])["state"] == "closed"


# -- the API: the same rights ---------------------------------------------------------------------
def tokens(hall: Hall) -> dict[str, str]:
    made = {role: add_person(hall.home, f"api-{role}", role) for role in ("supervisor", "auditor")}
    return {**made, "handler": add_person(hall.home, "api-handler", "handler", dept="市场监管局")}


def test_the_api_gives_the_same_rights(hall: Hall) -> None:
    client, people = TestClient(create_app(hall.home, hall.config)), tokens(hall)
    bad = ids(hall)["bad_share"]

    def call(role: str | None, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {people[role] if role else hall.config.http.token}"}
        return client.post(path, json=body, headers=headers) if body is not None else client.get(path, headers=headers)

    assert client.get("/api/v1/alerts").status_code == 401
    assert call(None, "/api/v1/alerts").status_code == 403  # the machine token: cases and stats only
    assert call("handler", "/api/v1/alerts").status_code == 403
    rows = call("auditor", "/api/v1/alerts").json()["rows"]
    assert {r["summary"] for r in rows} == {f.summary for f in FINDINGS}
    assert call("auditor", "/api/v1/alerts?state=x").status_code == 422
    assert call("auditor", f"/api/v1/alerts/{bad}/ack", {"comment": "x"}).status_code == 403
    assert call("supervisor", f"/api/v1/alerts/{bad}/ack", {"comment": " "}).status_code == 422
    assert call("supervisor", f"/api/v1/alerts/{bad}/ack", {"comment": 5}).status_code == 422
    done = call("supervisor", f"/api/v1/alerts/{bad}/ack", {"comment": "已处理", "actor": "someone else"})
    assert done.status_code == 200 and (done.json()["state"], done.json()["acked_by"]) == (
        "acknowledged",
        "api-supervisor",
    )
    assert call("supervisor", f"/api/v1/alerts/{bad}/ack", {"comment": "again"}).status_code == 409
    assert call("supervisor", f"/api/v1/alerts/{bad}/close", {}).json()["closed_by"] == "api-supervisor"
    assert call("supervisor", f"/api/v1/alerts/{bad}/close", {}).status_code == 409
    for path in ("/api/v1/alerts/999/close", "/api/v1/alerts/x1/close", f"/api/v1/alerts/{bad}/delete"):
        assert call("supervisor", path, {}).status_code == 404, path
    assert [r["state"] for r in call("auditor", "/api/v1/alerts?state=closed").json()["rows"]] == ["closed"]
    with hall.store() as store:
        assert ("api-supervisor", "alert.ack") in set(store.conn.execute("SELECT actor, action FROM audit"))
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/alerts", "/api/v1/alerts/{alert}/ack", "/api/v1/alerts/{alert}/close"} <= set(paths)
