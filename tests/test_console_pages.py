"""The console's Today, windows, staff, devices and upstream pages through HTTP, per role (SPEC
section 12): each role gets its pages (200) and the others' refused (403); the figures of the
small hall (tests/console_hall.py) appear on them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from hub import auth_store
from hub.config import DB_NAME, HubConfig
from hub.http.app import create_app
from hub.store import Store, now_ms
from hub.upstream import outbox
from tests.console_hall import build

ROLES = {
    "zhang": ("supervisor", None),
    "li": ("handler", "民政"),
    "wang": ("technician", None),
    "zhao": ("auditor", None),
}
PASSWORD = "correct horse battery"
PAGES = ("/console/today", "/console/windows", "/console/staff", "/console/devices", "/console/upstream")
#: Which role may open which page (SPEC section 12).
ALLOWED = {
    "supervisor": set(PAGES),
    "auditor": set(PAGES),
    "technician": {"/console/devices", "/console/upstream"},
    "handler": set(),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("console")
    with build(home / DB_NAME, now_ms()) as store:
        for name, (role, dept) in ROLES.items():
            auth_store.add_user(store, name, role, dept, PASSWORD)
        with store.transaction() as conn:
            outbox.park(conn, 1, "HTTP 400: taskCode 未登记")
    return home


@pytest.fixture(scope="module")
def clients(home: Path) -> Iterator[dict[str, TestClient]]:
    app = create_app(home, HubConfig(hall="H1", upstream=_upstream()))
    out = {}
    for name, (role, _dept) in ROLES.items():
        client = TestClient(app, follow_redirects=False)
        answer = client.post("/console/login", data={"username": name, "password": PASSWORD})
        assert answer.status_code == 303, answer.text
        out[role] = client
    yield out
    for client in out.values():
        client.close()


def _upstream():  # type: ignore[no-untyped-def]
    from hub.config import UpstreamSettings

    return UpstreamSettings(url="http://regional.example/")


@pytest.mark.parametrize("role", list(ALLOWED))
def test_each_role_opens_its_pages_and_is_refused_the_others(clients: dict[str, TestClient], role: str) -> None:
    for path in PAGES:
        answer = clients[role].get(path)
        assert answer.status_code == (200 if path in ALLOWED[role] else 403), (role, path)
    nav = clients[role].get("/console/").text
    assert ("今日概况" in nav) == ("/console/today" in ALLOWED[role])
    assert ("终端状态" in nav) == ("/console/devices" in ALLOWED[role])


def test_without_a_session_the_pages_send_to_the_login(home: Path) -> None:
    with TestClient(create_app(home, HubConfig(hall="H1")), follow_redirects=False) as anonymous:
        answer = anonymous.get("/console/today")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
        assert anonymous.post("/console/upstream/unpark", data={"all": "1"}).status_code == 403


def test_today_shows_the_figures_by_window_name_and_the_silent_terminals(clients: dict[str, TestClient]) -> None:
    page = clients["supervisor"].get("/console/today").text
    assert "一号窗" in page and "二号窗" in page and "三号窗" in page
    tiles = dict(re.findall(r'<div class="k">([^<]+)</div><div class="v">([^<]+)</div>', page))
    assert tiles["办件数"] == "3" and tiles["评价数"] == "7" and tiles["平均分（满分 5）"] == "3.29"
    assert tiles["满意率"] == "71.4%" and tiles["差评待处理"] == "6" and tiles["终端在线"] == "1 / 3"
    assert page.count('class="card silent"') == 2  # 二号窗 (offline) and 三号窗 (never spoke)
    assert "<svg" in page and "非常满意 1（14.3%）" in page


def test_windows_drill_down_shows_staff_only_to_roles_that_may_see_them(clients: dict[str, TestClient]) -> None:
    query = "/console/windows?from=2026-11-01&to=2026-11-30&grain=week&window=W01"
    page = clients["supervisor"].get(query).text
    assert "一号窗 · 2026-11-01 至 2026-11-30 · 按周趋势" in page and "2026-W45" in page
    assert "一号窗 · 工作人员" in page and "S1" in page
    # the auditor reads everything, staff included; a bad period is a 400 with a reason
    assert "一号窗 · 工作人员" in clients["auditor"].get(query).text
    bad = clients["supervisor"].get("/console/windows?from=2026-01-01&to=2026-12-31&grain=day")
    assert bad.status_code == 400 and "最长 92 天" in bad.text
    staff = clients["supervisor"].get("/console/staff?from=2026-11-01&to=2026-11-30&grain=day&staff=S1").text
    assert "S1 · 2026-11-01 至 2026-11-30 · 按日趋势" in staff


def test_devices_list_every_terminal_with_the_silent_ones_first(clients: dict[str, TestClient]) -> None:
    page = clients["technician"].get("/console/devices").text
    rows = re.findall(r"<tr( class=\"silent\")?><td><b>(T\d+)</b>", page)
    assert rows == [(' class="silent"', "T02"), (' class="silent"', "T03"), ("", "T01")]
    assert "Modbus 面板" in page and "1.4.0" in page and "已同步" in page and "RTU 9600" in page


def test_unpark_is_for_supervisor_and_technician_and_is_audited(clients: dict[str, TestClient], home: Path) -> None:
    page = clients["auditor"].get("/console/upstream").text
    assert "taskCode 未登记" in page and "重新排队" not in page  # the auditor changes nothing
    page = clients["technician"].get("/console/upstream").text
    assert "全部重新排队（1）" in page and "每日对账" in page
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    refused = clients["auditor"].post("/console/upstream/unpark", data={"all": "1", "csrf": token.group(1)})
    assert refused.status_code == 403
    forged = clients["technician"].post("/console/upstream/unpark", data={"all": "1", "csrf": "forged"})
    assert forged.status_code == 403
    done = clients["technician"].post("/console/upstream/unpark", data={"id": "1", "csrf": token.group(1)})
    assert done.status_code == 303 and done.headers["location"] == "/console/upstream?done=unpark&n=1"
    assert "已将 1 条搁置记录重新排队" in clients["technician"].get(done.headers["location"]).text
    with Store(home / DB_NAME) as store:
        row = store.conn.execute("SELECT actor, action FROM audit WHERE action = 'upstream.unpark'").fetchone()
    assert row == ("wang", "upstream.unpark")
