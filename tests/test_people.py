"""People and roles (SPEC section 12): accounts, personal tokens, the role matrix on the API and
the console (one permission table, 403 from both), lockout, sessions, CSRF, the audit log under
the person's name."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from hub import auth_store
from hub import config as hub_config
from hub.auth import ACTIONS, PERMISSIONS, Role
from hub.cli import main
from hub.http.app import create_app
from hub.http.console.queue import countdown
from hub.store import Store
from hub.store import registry as reg
from protocol.config import build

from .people import PASSWORD, add_person, bearer
from .upstream_helpers import ingest, make_home, rating, reason

MARKET, TAX = "市场监管局", "税务局"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Two bad reviews at W01 (市场监管局), one person of each role, a handler of another department."""
    _cfg, store = make_home(tmp_path, windows=("W01", "W02"))
    with store:
        reg.add_window(store, "W03", "税务窗", TAX)
        ingest(store, [rating(1, "dissatisfied"), reason(2, 1, ("cold",)), rating(3, "very_dissatisfied")])
    return tmp_path


@pytest.fixture
def tokens(home: Path) -> dict[str, str]:
    people = {
        "supervisor": ("王主管", "supervisor", None),
        "handler": ("李四", "handler", MARKET),
        "other_handler": ("赵六", "handler", TAX),
        "technician": ("孙技术", "technician", None),
        "auditor": ("周审计", "auditor", None),
    }
    out = {key: add_person(home, name, role, dept) for key, (name, role, dept) in people.items()}
    out["machine"] = hub_config.load(home).http.token
    return out


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(home, hub_config.load(home)), raise_server_exceptions=True) as c:
        yield c


def cli(home: Path, *args: str, stdin: str | None = None, ok: bool = True) -> str:
    result = CliRunner().invoke(main, [*args, "--home", str(home)], input=stdin)
    assert (result.exit_code == 0) == ok, (args, result.output)
    return result.stdout if ok else result.stderr


def audit_rows(home: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cli(home, "audit", "--format", "json", *args))["rows"]
    return rows


# -- the API, role by role -----------------------------------------------------------------------

ROLES = ("supervisor", "handler", "other_handler", "technician", "auditor", "machine")
#: (method, path, body) → status for each role in ROLES order, one fresh hall per row. 403 comes
#: before the ticket's state is looked at: an allowed change of a registered ticket out of order
#: is 409, and assigning it (within its department) is allowed again once assigned.
MATRIX: list[tuple[str, str, Any, tuple[int, ...]]] = [
    ("GET", "/api/v1/tickets", None, (200, 200, 200, 403, 200, 403)),
    ("GET", "/api/v1/tickets/1", None, (200, 200, 403, 403, 200, 403)),
    ("POST", "/api/v1/tickets/1/assign", {"to": "x"}, (200, 200, 403, 403, 403, 403)),
    ("POST", "/api/v1/tickets/1/verify", {"valid": True}, (409, 403, 403, 403, 403, 403)),
    ("POST", "/api/v1/tickets/1/appeal", {"reason": "x"}, (409, 409, 403, 403, 403, 403)),
    ("POST", "/api/v1/tickets/1/feedback", {"text": "x"}, (409, 409, 403, 403, 403, 403)),
    ("GET", "/api/v1/stats?by=window", None, (200, 403, 403, 200, 200, 200)),
    ("GET", "/api/v1/stats?by=staff", None, (200, 403, 403, 403, 200, 200)),
    ("POST", "/api/v1/cases", {"case": "C-1", "window": "W02"}, (403, 403, 403, 403, 403, 201)),
    ("POST", "/api/v1/cases/C-0/cancel", None, (403, 403, 403, 403, 403, 404)),
    ("GET", "/api/v1/cases/C-0", None, (404, 403, 403, 403, 404, 404)),
]


@pytest.mark.parametrize("method, path, body, expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_each_role_gets_its_rights_and_403_outside_them(
    client: TestClient, tokens: dict[str, str], method: str, path: str, body: Any, expected: tuple[int, ...]
) -> None:
    got = tuple(client.request(method, path, json=body, headers=bearer(tokens[r])).status_code for r in ROLES)
    assert dict(zip(ROLES, got, strict=True)) == dict(zip(ROLES, expected, strict=True))


def test_a_handler_sees_only_the_department_and_the_filter_works(client: TestClient, tokens: dict[str, str]) -> None:
    def ids(role: str, query: str = "") -> list[int]:
        answer = client.get(f"/api/v1/tickets{query}", headers=bearer(tokens[role]))
        return [t["id"] for t in answer.json()["tickets"]]

    assert ids("handler") == [1, 2] and ids("other_handler") == []
    assert ids("supervisor", f"?dept={TAX}") == [] and ids("supervisor", f"?dept={MARKET}") == [1, 2]
    assert client.get("/api/v1/tickets/1", headers=bearer(tokens["handler"])).json()["department"] == MARKET


def test_a_ticket_walked_through_the_api_is_audited_under_each_person(
    client: TestClient, tokens: dict[str, str], home: Path
) -> None:
    def post(role: str, action: str, body: dict[str, Any]) -> int:
        return client.post(f"/api/v1/tickets/1/{action}", json=body, headers=bearer(tokens[role])).status_code

    assert post("handler", "assign", {"to": "窗口一组", "actor": "mallory"}) == 200  # a body names no one
    assert post("handler", "assign", {"to": "x", "dept": TAX}) == 403  # only within the department
    assert post("supervisor", "verify", {"valid": True}) == 200
    assert post("handler", "feedback", {"text": "已整改"}) == 200
    assert post("auditor", "feedback", {"text": "x"}) == 403
    trail = [(r["actor"], r["action"]) for r in audit_rows(home) if r["action"].startswith("ticket.")]
    assert trail[-3:] == [("李四", "ticket.assign"), ("王主管", "ticket.verify"), ("李四", "ticket.feedback")]
    assert ("system", "ticket.register") in trail and "mallory" not in json.dumps(audit_rows(home))
    # assigned to another department, the ticket leaves the handler's reach
    assert post("supervisor", "assign", {"to": "y"}) == 409  # closed now; ticket 2 moves instead
    moved = client.post("/api/v1/tickets/2/assign", json={"to": "y", "dept": TAX}, headers=bearer(tokens["supervisor"]))
    assert moved.json()["department"] == TAX
    assert client.get("/api/v1/tickets/2", headers=bearer(tokens["handler"])).status_code == 403
    assert client.get("/api/v1/tickets/2", headers=bearer(tokens["other_handler"])).status_code == 200


def test_the_permission_table_is_data_and_matches_the_spec() -> None:
    assert set(PERMISSIONS) == set(Role)
    assert all(actions <= set(ACTIONS) for actions in PERMISSIONS.values())
    assert not [a for a in PERMISSIONS[Role.AUDITOR] if not a.endswith(".read") and a != "stats.staff"]
    assert not {"ticket.read", "stats.staff"} & PERMISSIONS[Role.TECHNICIAN]
    assert PERMISSIONS[Role.MACHINE] == {"case.open", "case.cancel", "case.read", "stats.read", "stats.staff"}


# -- accounts and tokens on the command line -----------------------------------------------------


def test_user_commands(home: Path, client: TestClient) -> None:
    cli(home, "user", "add", "钱七", "--role", "auditor", "--password-stdin", stdin="s3cret-钱七\n")
    token = cli(home, "user", "token", "钱七")
    assert re.fullmatch(r"hcp_[A-Za-z0-9_-]{40,}\n", token)
    assert client.get("/api/v1/tickets", headers=bearer(token.strip())).status_code == 200
    people = json.loads(cli(home, "user", "list", "--format", "json"))
    assert [(p["name"], p["role"], p["disabled"], p["tokens"]) for p in people] == [("钱七", "auditor", False, 1)]
    for args, stdin, message in [
        (["user", "add", "钱七", "--role", "auditor", "--password-stdin"], "x\n", "exists"),
        (["user", "add", "吴八", "--role", "handler", "--password-stdin"], "pw\n", "needs --dept"),
        (["user", "add", "吴八", "--role", "auditor", "--password-stdin"], "\n", "empty"),
        (["user", "add", "system", "--role", "auditor", "--password-stdin"], "pw\n", "names the hub itself"),
        (["user", "token", "nobody"], None, "unknown user"),
    ]:
        error = cli(home, *args, stdin=stdin, ok=False)
        assert message in error and len(error.strip().splitlines()) == 1, error
    cli(home, "user", "disable", "钱七")
    assert client.get("/api/v1/tickets", headers=bearer(token.strip())).status_code == 401
    with Store(home / "hub.db") as store:
        dump = "\n".join(str(row) for row in store.conn.iterdump())
    assert token.strip() not in dump and "s3cret" not in dump and "scrypt$16384$8$1$" in dump
    actions = [(r["actor"], r["action"], r["target"]) for r in audit_rows(home)]
    assert ("system", "user.add", "钱七") in actions and ("system", "user.disable", "钱七") in actions


# -- console logins, lockout, sessions, CSRF -----------------------------------------------------


def login(client: TestClient, name: str, password: str = PASSWORD, **headers: str) -> int:
    answer = client.post(
        "/console/login", data={"username": name, "password": password}, headers=headers, follow_redirects=False
    )
    return answer.status_code


def test_lockout_after_five_failures_is_audited(client: TestClient, tokens: dict[str, str], home: Path) -> None:
    assert [login(client, "李四", "wrong") for _ in range(5)] == [401, 401, 401, 401, 423]
    assert login(client, "李四") == 423  # the right password waits too
    assert login(client, "nobody", "x") == 401
    rows = audit_rows(home)
    failed = [r for r in rows if r["action"] == "login.failed"]
    assert [r["actor"] for r in failed] == ["李四"] * 6 + ["system"] and failed[-1]["target"] == "nobody"
    assert [(r["actor"], r["target"]) for r in rows if r["action"] == "user.lockout"] == [("李四", "李四")]
    with Store(home / "hub.db") as store:  # 15 minutes later
        store.conn.execute("UPDATE users SET locked_until_ms = 1")
    assert login(client, "李四") == 303
    assert audit_rows(home)[-1]["action"] == "login" and audit_rows(home)[-1]["actor"] == "李四"
    assert [login(client, "王主管", "wrong") for _ in range(5)][-1] == 423
    cli(home, "user", "password", "王主管", "--password-stdin", stdin="a new one 新密码\n")  # lifts the lock
    assert login(client, "王主管", "a new one 新密码") == 303 and login(client, "王主管") == 401


def test_the_lockout_is_configured_in_hub_toml(home: Path, tokens: dict[str, str]) -> None:
    config = hub_config.load(home)
    strict = dataclasses.replace(config, console=hub_config.ConsoleSettings(max_failed_logins=2))
    with TestClient(create_app(home, strict)) as c:
        assert [login(c, "李四", "wrong") for _ in range(2)] == [401, 423]
    with open(home / "hub.toml", "a") as f:
        f.write("\n[console]\nmax_failed_logins = 0\n")
    with pytest.raises(hub_config.ConfigError, match="max_failed_logins"):
        hub_config.load(home)


def test_session_cookie_flags_and_logout(home: Path, tokens: dict[str, str]) -> None:
    config = hub_config.load(home)
    with TestClient(create_app(home, config)) as c:
        answer = c.post("/console/login", data={"username": "王主管", "password": PASSWORD}, follow_redirects=False)
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie
        page = c.get("/console/tickets")
        assert page.status_code == 200 and "差评工单" in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        assert c.post("/console/logout", data={"csrf": csrf[1]}, follow_redirects=False).status_code == 303
        assert c.get("/console/tickets", follow_redirects=False).headers["location"].startswith("/console/login")
    https = dataclasses.replace(config, http=dataclasses.replace(config.http, tls=True))
    with TestClient(create_app(home, https), base_url="https://testserver") as c:
        answer = c.post("/console/login", data={"username": "王主管", "password": PASSWORD}, follow_redirects=False)
        assert "Secure" in answer.headers["set-cookie"]


def test_csrf_refusal_and_foreign_login(client: TestClient, tokens: dict[str, str], home: Path) -> None:
    assert login(client, "李四", Origin="https://evil.example") == 403
    assert login(client, "李四", Origin="http://testserver") == 303
    form = {"to": "窗口一组"}
    assert client.post("/console/tickets/1/assign", data=form).status_code == 403
    assert client.post("/console/tickets/1/assign", data={**form, "csrf": "0" * 64}).status_code == 403
    with Store(home / "hub.db") as store:
        assert store.conn.execute("SELECT state FROM tickets WHERE id = 1").fetchone()[0] == "registered"
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/console/tickets/1").text)
    assert csrf is not None
    done = client.post("/console/tickets/1/assign", data={**form, "csrf": csrf[1]}, follow_redirects=False)
    assert done.status_code == 303
    assert audit_rows(home)[-1]["actor"] == "李四" and audit_rows(home)[-1]["action"] == "ticket.assign"


@pytest.mark.parametrize("who, path, status", [
    ("孙技术", "/console/tickets", 403),
    ("孙技术", "/console/audit", 403),
    ("王主管", "/console/audit", 403),
    ("周审计", "/console/audit", 200),
    ("周审计", "/console/tickets/1", 200),
    ("赵六", "/console/tickets/1", 403),
    ("李四", "/console/tickets/1", 200),
    ("王主管", "/console/reports/monthly", 200),
    ("周审计", "/console/reports/difficult", 200),
    ("孙技术", "/console/reports/monthly", 403),
    ("李四", "/console/reports/difficult", 403),
    ("王主管", "/console/people", 200),
    ("周审计", "/console/people", 200),
    ("孙技术", "/console/people", 403),
    ("李四", "/console/people", 403),
])  # fmt: skip
def test_console_pages_follow_the_same_table(
    client: TestClient, tokens: dict[str, str], who: str, path: str, status: int
) -> None:
    assert login(client, who) == 303
    assert client.get(path).status_code == status


def test_an_auditor_changes_nothing_in_the_console(client: TestClient, tokens: dict[str, str]) -> None:
    assert login(client, "周审计") == 303
    page = client.get("/console/tickets/1").text
    assert '<form method="post" action="/console/tickets/1/' not in page  # no forms offered
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    answer = client.post("/console/tickets/1/assign", data={"to": "x", "csrf": csrf[1]})
    assert answer.status_code == 403 and "无权" in answer.text


def test_audit_json_rows_and_day_range(home: Path, tokens: dict[str, str]) -> None:
    rows = audit_rows(home)
    assert rows and all({"at", "actor", "action", "target"} <= set(r) for r in rows)
    assert {"user.add", "user.token", "ticket.register", "window.add"} <= {r["action"] for r in rows}
    today = rows[-1]["at"][:10]
    assert audit_rows(home, "--from", today, "--to", today)[-1] == rows[-1]
    assert audit_rows(home, "--from", "2099-01-01") == []
    assert audit_rows(home, "--to", "2000-01-01") == []


def test_the_console_list_filters_and_counts(client: TestClient, tokens: dict[str, str]) -> None:
    assert login(client, "王主管") == 303
    everything = client.get("/console/tickets").text
    assert everything.count("/console/tickets/") == 2 and "待转办 <b>2</b>" in everything
    assert client.get(f"/console/tickets?dept={TAX}").text.count("/console/tickets/") == 0
    assert client.get("/console/tickets?state=feedback").text.count("/console/tickets/") == 0
    assert client.get("/console/tickets?state=registered&overdue=1").text.count("/console/tickets/") == 0


def test_the_countdown_counts_working_days() -> None:
    settings = hub_config.TicketSettings(holidays=("2026-12-08",), workdays=("2026-12-05",))
    config = dataclasses.replace(_config(), tickets=settings)
    ticket = {"deadline": "2026-12-10", "closed_ms": None}
    monday = dt.date(2026, 11, 30)  # Tue 1 … Fri 4, Sat 5 (worked), Mon 7, Tue 8 (holiday), Wed 9, Thu 10
    assert countdown(ticket, config, monday) == ("剩余 8 个工作日", False)
    assert countdown(ticket, config, dt.date(2026, 12, 10)) == ("今天到期", False)
    assert countdown(ticket, config, dt.date(2026, 12, 14)) == ("已超期 2 个工作日", True)
    assert countdown({**ticket, "closed_ms": 1}, config, dt.date(2026, 12, 14)) == ("已办结", False)


def _config() -> hub_config.HubConfig:
    return build(hub_config.HubConfig, {"hall": "H1"}, "test")


def test_a_console_login_ends_when_idle_and_at_its_length(
    home: Path, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle 30 minutes ends it (a supervisor who walked away from a hall PC); using it keeps it
    alive, up to ``session_hours`` after the login."""
    clock = {"ms": 1_800_000_000_000}
    monkeypatch.setattr(auth_store, "now_ms", lambda: clock["ms"])
    config = hub_config.load(home)
    short = dataclasses.replace(config, console=hub_config.ConsoleSettings(session_hours=1.0, idle_minutes=30.0))

    def at(minutes: float, c: TestClient) -> bool:
        clock["ms"] = 1_800_000_000_000 + int(minutes * 60_000)
        return c.get("/console/tickets", follow_redirects=False).status_code == 200

    with TestClient(create_app(home, short)) as c:
        c.post("/console/login", data={"username": "王主管", "password": PASSWORD}, follow_redirects=False)
        assert [at(m, c) for m in (20, 45, 59)] == [True, True, True]  # each use keeps it alive
        assert not at(61, c)  # an hour after the login at the latest
        c.post("/console/login", data={"username": "王主管", "password": PASSWORD}, follow_redirects=False)
        assert at(75, c) and not at(106, c)  # 31 minutes unused


def test_one_leaked_token_is_revoked_and_the_others_stay(
    client: TestClient, tokens: dict[str, str], home: Path
) -> None:
    second = cli(home, "user", "token", "王主管").strip()
    listed = json.loads(cli(home, "user", "tokens", "王主管", "--format", "json"))
    assert len(listed) == 2 and all(len(row["id"]) == 12 for row in listed)
    assert all(row["id"] not in (tokens["supervisor"], second) for row in listed)  # no way back to the token
    leaked = auth_store.secret_hash(tokens["supervisor"])[:12]
    cli(home, "user", "revoke-token", "王主管", leaked)
    assert client.get("/api/v1/tickets", headers=bearer(tokens["supervisor"])).status_code == 401
    assert client.get("/api/v1/tickets", headers=bearer(second)).status_code == 200
    assert leaked not in [row["id"] for row in json.loads(cli(home, "user", "tokens", "王主管", "--format", "json"))]
    assert "has no token" in cli(home, "user", "revoke-token", "王主管", leaked, ok=False)
    assert "12 hex digits" in cli(home, "user", "revoke-token", "王主管", "x", ok=False)
    revoked = [r for r in audit_rows(home) if r["action"] == "user.token.revoke"]
    assert [(r["target"], r["detail"]["token"]) for r in revoked] == [("王主管", leaked)]
