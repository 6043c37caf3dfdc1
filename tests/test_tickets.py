"""The bad-review work queue: tickets opened by ingest, the 登记 → 转办 → 核实 → 反馈 order enforced
through the library, the CLI and HTTP, deadlines in working days, audit and upstream records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from haocha.cli import main
from hub import config as hub_config
from hub import tickets
from hub.config import TicketSettings
from hub.errors import TicketStateError
from hub.http.app import create_app
from hub.http.tickets import routes
from hub.store import Store

from .people import add_person, bearer
from .upstream_helpers import TZ, ingest, make_home, rating, reason

OLD = int(dt.datetime(2026, 1, 5, 10, 0, tzinfo=TZ).timestamp() * 1000)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    _cfg, store = make_home(tmp_path)
    with store:
        ingest(store, [rating(1), rating(2, "dissatisfied"), reason(3, 2, ("cold",)), rating(4, "very_dissatisfied")])
        ingest(store, [rating(5, "basic"), rating(6, "dissatisfied", t_ms=OLD)])
    return tmp_path


def cli(home: Path, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, [*args, "--home", str(home)])
    assert (result.exit_code == 0) == ok, (args, result.output)
    return result.stdout if ok else result.stderr


def test_only_bad_reviews_open_tickets_with_reasons_and_an_audit_entry(home: Path) -> None:
    rows = json.loads(cli(home, "ticket", "list", "--format", "json"))
    assert [(r["id"], r["level"], r["reasons"], r["state"]) for r in rows] == [
        (1, "dissatisfied", ["cold"], "registered"),
        (2, "very_dissatisfied", [], "registered"),
        (3, "dissatisfied", [], "registered"),
    ]
    with Store(home / "hub.db") as store:
        actions = [a for (a,) in store.conn.execute("SELECT action FROM audit WHERE action LIKE 'ticket.%'")]
    assert actions == ["ticket.register"] * 3


def test_the_full_sequence_and_the_appeal_path(home: Path) -> None:
    cli(home, "ticket", "assign", "1", "--to", "张三", "--dept", "市场监管局")
    cli(home, "ticket", "verify", "1", "--valid")
    done = json.loads(cli(home, "ticket", "feedback", "1", "--text", "已约谈整改", "--format", "json"))
    assert (done["state"], done["verdict"], done["feedback"], done["overdue"]) == (
        "feedback",
        "valid",
        "已约谈整改",
        False,
    )
    cli(home, "ticket", "assign", "2", "--to", "李四")
    cli(home, "ticket", "appeal", "2", "--reason", "恶意差评")
    invalid = json.loads(cli(home, "ticket", "verify", "2", "--invalid", "--format", "json"))
    assert (invalid["state"], invalid["verdict"]) == ("verified", "invalid") and invalid["closed_ms"]
    with Store(home / "hub.db") as store:
        rate = tickets.rectification(store)
        kinds = [r for (r,) in store.conn.execute("SELECT record_id FROM outbox WHERE kind = 'ticket' ORDER BY id")]
        audit = store.conn.execute("SELECT actor, action, detail FROM audit WHERE subject LIKE '%-4' ORDER BY id")
        trail = [(a, json.loads(d).get("from")) for _, a, d in audit]
    assert rate == {"tickets": 3, "open": 1, "valid": 1, "invalid": 1, "feedback": 1, "rectification_rate": 1.0}
    assert len(kinds) == 3 + 6 and kinds[-1].endswith("-4#3")  # one upstream record per change
    assert trail == [("ticket.register", None), ("ticket.assign", "registered"), ("ticket.appeal", "assigned"),
                     ("ticket.verify", "appealed")]  # fmt: skip


@pytest.mark.parametrize("steps, refused, message", [
    ([], ["ticket", "verify", "1", "--valid"], "is registered; cannot verify it: it must be assigned first"),
    ([], ["ticket", "feedback", "1", "--text", "x"], "is registered; cannot give feedback"),
    ([["ticket", "assign", "1", "--to", "x"]], ["ticket", "verify", "1", "--invalid"],
     "a review is found invalid only after an appeal"),
    ([["ticket", "assign", "1", "--to", "x"], ["ticket", "verify", "1", "--valid"]],
     ["ticket", "assign", "1", "--to", "y"], "is verified (valid); cannot assign it"),
    ([], ["ticket", "appeal", "1", "--reason", "x"], "only an assigned ticket can be appealed"),
    ([], ["ticket", "assign", "99", "--to", "x"], "unknown ticket 99"),
])  # fmt: skip
def test_changes_out_of_sequence_are_refused_clearly(
    home: Path, steps: list[list[str]], refused: list[str], message: str
) -> None:
    for step in steps:
        cli(home, *step)
    error = cli(home, *refused, ok=False)
    assert message in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_deadlines_count_working_days_and_old_open_tickets_are_overdue(home: Path) -> None:
    cal = tickets.Calendar()
    friday = dt.date(2026, 11, 20)
    assert cal.add_workdays(friday, 15) == dt.date(2026, 12, 11)
    holiday = tickets.Calendar(frozenset({dt.date(2026, 12, 1)}))
    assert holiday.add_workdays(friday, 15) == dt.date(2026, 12, 14)
    swapped = tickets.Calendar(frozenset({dt.date(2026, 12, 1)}), frozenset({dt.date(2026, 11, 28)}))
    assert swapped.add_workdays(friday, 15) == dt.date(2026, 12, 11)
    with Store(home / "hub.db") as store:
        rows = tickets.list_tickets(store, TicketSettings(), dt.date(2026, 1, 27), overdue=True)
        assert [(r["id"], r["deadline"]) for r in rows] == [(3, "2026-01-26")]
        assert tickets.list_tickets(store, TicketSettings(), dt.date(2026, 1, 26), overdue=True) == []
    overdue = json.loads(cli(home, "ticket", "list", "--overdue", "--format", "json"))
    assert [r["id"] for r in overdue] == [3]


def test_http_routes_need_the_token_and_keep_the_order(home: Path) -> None:
    config = hub_config.load(home)
    auth = bearer(add_person(home, "主管", "supervisor"))
    with TestClient(create_app(home, config)) as client:
        assert client.get("/api/v1/tickets").status_code == 401
        assert client.get("/api/v1/tickets/1").status_code == 401
        queue = client.get("/api/v1/tickets?state=registered", headers=auth).json()["tickets"]
        assert [t["id"] for t in queue] == [1, 2, 3]
        assert client.post("/api/v1/tickets/1/assign", json={"to": "x"}).status_code == 401
        assert client.post("/api/v1/tickets/1/assign", json={"to": 3}, headers=auth).status_code == 422
        assert client.post("/api/v1/tickets/9/assign", json={"to": "x"}, headers=auth).status_code == 404
        conflict = client.post("/api/v1/tickets/1/verify", json={"valid": True}, headers=auth)
        assert conflict.status_code == 409 and "must be assigned first" in conflict.json()["error"]
        ok = client.post("/api/v1/tickets/1/assign", json={"to": "张三", "dept": "窗口科"}, headers=auth)
        assert ok.status_code == 200 and ok.json()["state"] == "assigned"
        assert client.post("/api/v1/tickets/1/verify", json={"valid": True}, headers=auth).json()["verdict"] == "valid"
        assert client.get("/api/v1/tickets/1", headers=auth).json()["assignee"] == "张三"
        assert client.get("/api/v1/tickets/77", headers=auth).status_code == 404


def test_ticket_methods_refuse_without_touching_the_row(home: Path) -> None:
    with Store(home / "hub.db") as store:
        with pytest.raises(TicketStateError):
            tickets.feedback(store, "1", "x")
        assert tickets.get_ticket(store, "1", TicketSettings(), dt.date(2026, 11, 22))["state"] == "registered"


def test_openapi_paths_cover_every_route() -> None:
    from hub.http.tickets import openapi_paths

    paths = set(json.loads(json.dumps(openapi_paths())))
    per_action = {p for p in paths if p.startswith("/api/v1/tickets/{ticket}/")}
    assert {p.rsplit("/", 1)[1] for p in per_action} == {"assign", "appeal", "verify", "feedback"}
    routed = (paths - per_action) | {"/api/v1/tickets/{ticket}/{action}"}
    assert routed == {r.path for r in routes}
