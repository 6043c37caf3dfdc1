"""The published rankings (窗口月度排名, 最难办窗口): exact figures on a small hall, read from the
counters, as CSV a spreadsheet opens (parsed back with the csv module), as printable HTML, from
the command line and over the HTTP API."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from haocha.cli import main
from hub import config as hub_config
from hub import rankings, rankings_render, tickets
from hub.http.app import create_app
from hub.store import Store
from hub.store import registry as reg
from protocol.frames import Event

from .people import add_person, bearer
from .upstream_helpers import EPOCH, KEY, TZ, ingest, make_home

NOV, OCT = dt.date(2026, 11, 10), dt.date(2026, 10, 15)
WINDOWS = {
    "W01": ("不动产登记", "自然资源局"),
    "W02": ("社保医保", "人社局"),
    "W03": ("税务", "税务局"),
    "W04": ("公安户政", "公安局"),
    "W05": ("=SUM(A1)", None),  # a name a spreadsheet would run as a formula
}


def _ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(10), TZ).timestamp() * 1000)


def rate(seq: int, level: str, day: dt.date = NOV, case: str | None = None, trigger: str = "free") -> Event:
    return Event(epoch=EPOCH, seq=seq, kind="rating", level=level, trigger=trigger, case=case, boot="b",
                 wall_ms=_ms(day), synced=True, age_ms=1)  # fmt: skip


def staff_case(seq: int, device: str) -> tuple[Event, str]:
    """A case opened with the staff key (counted in 办件量), and its local number."""
    case = f"{device}-{EPOCH[:8]}-{seq}"
    ev = Event(epoch=EPOCH, seq=seq, kind="staff", trigger="staff", case=case, item="ITEM-1", boot="b",
               wall_ms=_ms(NOV), synced=True)  # fmt: skip
    return ev, case


def ticket_of(store: Store, device: str, seq: int) -> str:
    row = store.conn.execute(
        "SELECT t.id FROM tickets t JOIN events e ON e.id = t.event_id WHERE e.device = ? AND e.seq = ?", (device, seq)
    ).fetchone()
    return str(row[0])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """November 2026 (Q4), five windows:

    W01: 3 staff cases, 2 rated (非常满意, 不满意) + free 非常满意, 满意; the bad review valid and rectified.
    W02: 满意 ×3, 基本满意 in November; a 非常不满意 naming a case the hub never opened (flagged: left
    out); a 不满意 in October (in the quarter only), still registered.
    W03: 非常满意, 非常不满意; the bad review valid, not rectified. W04: a terminal, no ratings.
    W05: no terminal."""
    _cfg, store = make_home(tmp_path, ())
    with store:
        for i, (window, (name, dept)) in enumerate(WINDOWS.items(), start=1):
            reg.add_window(store, window, name, dept)
            if i <= 4:
                reg.insert_device(store, f"T{i:02d}", window, "gpio", "free", KEY.hex(), "x")
        (s1, c1), (s3, c3), (s5, _) = staff_case(1, "T01"), staff_case(3, "T01"), staff_case(5, "T01")
        ingest(store, [s1, rate(2, "very_satisfied", case=c1, trigger="staff"), s3,
                       rate(4, "dissatisfied", case=c3, trigger="staff"), s5, rate(6, "very_satisfied"),
                       rate(7, "satisfied")], "T01")  # fmt: skip
        ingest(store, [rate(1, "satisfied"), rate(2, "satisfied"), rate(3, "satisfied"), rate(4, "basic"),
                       rate(5, "very_dissatisfied", case="GHOST", trigger="invite"), rate(6, "dissatisfied", OCT)],
               "T02")  # fmt: skip
        ingest(store, [rate(1, "very_satisfied"), rate(2, "very_dissatisfied")], "T03")
        for device, seq, rectify in (("T01", 4, True), ("T03", 2, False)):
            ref = ticket_of(store, device, seq)
            tickets.assign(store, ref, "张三", None)
            tickets.verify(store, ref, True)
            if rectify:
                tickets.feedback(store, ref, "已约谈整改")
    return tmp_path


def _monthly(home: Path) -> dict[str, object]:
    config = hub_config.load(home)
    with Store(home / "hub.db") as store:
        return rankings.monthly(store, config, dt.date(2026, 11, 20))


def _difficult(home: Path, least: int, top: int = 10) -> dict[str, object]:
    config = hub_config.load(home)
    with Store(home / "hub.db") as store:
        return rankings.difficult(store, config, dt.date(2026, 11, 20), "quarter", least, top)


FIELDS = ("rank", "window", "name", "dept", "cases", "ratings", "evaluation_rate", "satisfaction_rate", "bad_rate",
          "mean_score", "bad", "valid_tickets", "rectified", "rectification_rate")  # fmt: skip


def test_monthly_ranking_ranks_every_window_by_name_with_exact_figures(home: Path) -> None:
    rep = _monthly(home)
    assert (rep["period"], rep["from"], rep["to"]) == ("2026-11", "2026-11-01", "2026-11-30")
    rows = [tuple(r[k] for k in FIELDS) for r in rep["rows"]]  # type: ignore[attr-defined]
    assert rows == [
        (1, "W02", "社保医保", "人社局", 0, 4, None, 1.0, 0.0, 3.75, 0, 0, 0, None),
        (2, "W01", "不动产登记", "自然资源局", 3, 4, 2 / 3, 0.75, 0.25, 4.0, 1, 1, 1, 1.0),
        (3, "W03", "税务", "税务局", 0, 2, None, 0.5, 0.5, 3.0, 1, 1, 0, 0.0),
        (None, "W04", "公安户政", "公安局", 0, 0, None, None, None, None, 0, 0, 0, None),
        (None, "W05", "=SUM(A1)", "", 0, 0, None, None, None, None, 0, 0, 0, None),
    ]
    total = rep["total"]
    assert total == {"cases": 3, "ratings": 10, "bad": 2, "evaluation_rate": 2 / 3, "satisfaction_rate": 0.8,
                     "bad_rate": 0.2, "mean_score": 3.7, "valid_tickets": 2, "rectified": 1,
                     "rectification_rate": 0.5}  # fmt: skip


def test_difficult_windows_need_the_minimum_ratings_and_a_bad_review(home: Path) -> None:
    rep = _difficult(home, 3)
    assert (rep["period"], rep["from"], rep["to"]) == ("2026-Q4", "2026-10-01", "2026-12-31")
    got = [(r["rank"], r["window"], r["name"], r["ratings"], r["bad"], r["bad_rate"]) for r in rep["rows"]]  # type: ignore[attr-defined]
    # W02's October bad review counts in the quarter; W03 (2 ratings) is under the minimum.
    assert got == [(1, "W01", "不动产登记", 4, 1, 0.25), (2, "W02", "社保医保", 5, 1, 0.2)]
    assert (rep["eligible"], rep["windows"]) == (2, 5)
    low = _difficult(home, 2, top=1)
    assert [(r["window"], r["bad_rate"]) for r in low["rows"]] == [("W03", 0.5)]  # type: ignore[attr-defined]
    assert low["eligible"] == 3


def test_windows_tied_for_the_last_place_are_all_listed(home: Path) -> None:
    with Store(home / "hub.db") as store:  # W04: one bad review in four ratings, as W01
        ingest(store, [rate(1, "satisfied"), rate(2, "dissatisfied"), rate(3, "basic"), rate(4, "satisfied")], "T04")
    rep = _difficult(home, 3, top=1)
    assert [(r["rank"], r["window"], r["bad_rate"]) for r in rep["rows"]] == [(1, "W01", 0.25), (1, "W04", 0.25)]  # type: ignore[attr-defined]


def test_equal_figures_share_a_rank() -> None:
    rows = [{"k": 0.5}, {"k": 0.5}, {"k": 0.25}]
    assert [r["rank"] for r in rankings._ranked(rows, lambda r: r["k"])] == [1, 1, 3]


def _parse_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(codecs.BOM_UTF8)  # Excel reads UTF-8 Chinese only after a BOM
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_monthly_csv_is_one_table_of_plain_numbers(home: Path) -> None:
    out = home / "monthly.csv"
    args = ["report", "--kind", "monthly", "--date", "2026-11-20", "--format", "csv", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    head, *rows = _parse_csv(out.read_bytes())
    assert head == ["排名", "窗口编号", "窗口名称", "部门", "办件量", "评价数", "评价率(%)", "满意率(%)", "差评率(%)",
                    "平均分", "差评数", "有效差评", "已整改", "整改率(%)"]  # fmt: skip
    assert len(rows) == 5 and all(len(r) == len(head) for r in rows)
    w01 = rows[1]
    assert w01[:4] == ["2", "W01", "不动产登记", "自然资源局"]
    assert [float(x) for x in w01[4:]] == [3, 4, 66.67, 75, 25, 4, 1, 1, 1, 100]
    assert not any("%" in cell or "," in cell for row in rows for cell in row)
    assert rows[4][:4] == ["", "W05", "'=SUM(A1)", ""]  # a formula stays text; no rank, no department


def test_difficult_csv_and_table_from_the_command_line(home: Path) -> None:
    args = ["report", "--kind", "difficult", "--date", "2026-11-20", "--min-ratings", "3", "--home", str(home)]
    result = CliRunner().invoke(main, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    head, *rows = _parse_csv(result.stdout_bytes)
    assert head[:7] == ["排名", "窗口编号", "窗口名称", "部门", "评价数", "差评数", "差评率(%)"]
    assert [(r[1], float(r[6])) for r in rows] == [("W01", 25.0), ("W02", 20.0)]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and "最难办窗口 · 2026年第四季度" in table.stdout and "社保医保" in table.stdout
    wrong = CliRunner().invoke(main, ["report", "--kind", "monthly", "--period", "quarter", "--home", str(home)])
    assert wrong.exit_code != 0 and "leave out --period" in wrong.output


def test_html_prints_in_chinese_with_nothing_from_the_network(home: Path) -> None:
    page = rankings_render.format_html(_monthly(home))
    assert page.startswith("<!doctype html>") and '<html lang="zh-CN">' in page
    assert "窗口月度排名 · 2026年11月" in page and "不动产登记" in page and "自然资源局" in page
    assert "@page { size: A4 landscape" in page and "thead { display: table-header-group; }" in page
    assert page.count("<svg") == 1
    assert not any(x in page for x in ("<script", "<link", "<img", "url(", "http")), "fetches from the network"
    assert "=SUM(A1)" in page and "<td>W05</td>" not in page  # names escaped; W05 is in a text cell


def test_reports_over_http_need_the_token(home: Path) -> None:
    config = hub_config.load(home)
    client = TestClient(create_app(home, config))
    auth = bearer(add_person(home, "主管", "supervisor"))
    url = "/api/v1/reports/monthly?month=2026-11"
    assert client.get(url + "&format=csv").status_code == 401
    machine = {"Authorization": f"Bearer {config.http.token}"}  # the business system reads stats, not reports
    assert client.get(url, headers=machine).status_code == 403
    answer = client.get(url + "&format=csv", headers=auth)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert [r[1] for r in _parse_csv(answer.content)[1:]] == ["W02", "W01", "W03", "W04", "W05"]
    page = client.get(url, headers=auth)
    assert page.status_code == 200 and "窗口月度排名" in page.text
    assert page.headers["content-type"].startswith("text/html")
    hard = client.get("/api/v1/reports/difficult?quarter=2026-Q4&min_ratings=3&format=json", headers=auth).json()
    assert [r["window"] for r in hard["rows"]] == ["W01", "W02"]
    for bad in ("month=2026-13", "month=1899-12", "month=3000-01", "format=xlsx"):
        assert client.get(f"/api/v1/reports/monthly?{bad}", headers=auth).status_code == 422, bad
    assert client.get("/api/v1/reports/difficult?top=0", headers=auth).status_code == 422
    assert json.loads(client.get("/api/v1/reports/difficult?format=json", headers=auth).text)["min_ratings"] == 30
