"""The HTTP API against hostile requests (SPEC section 10), on every route of the description:
tokens that are missing, wrong, non-ASCII or huge get 401; bodies over 64 KiB get 413, with or
without a Content-Length; bodies that are not a plain JSON object get 422; nothing gets a 500.
The public pages (the hall display, its figures, /metrics) need no token and show no staff id,
case number or ticket text. In-process first, then once through a running ``haocha hub run``."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from hub import config as hub_config
from hub import tickets
from hub.cases import CaseRequest, open_case
from hub.config import HubConfig
from hub.http.app import create_app
from hub.http.openapi import spec
from protocol.frames import Event
from simulators.hall import Hall, port_open, wait_for

from .people import add_person, bearer
from .upstream_helpers import EPOCH, ingest, make_home

MIB = 1 << 20
#: What must never show on a public page: the case, item, staff, assignee, feedback of a bad review.
SECRETS = ("CASE-SECRET-7", "ITEM-SECRET-3", "STAFF-SECRET-9", "ASSIGNEE-SECRET", "FEEDBACK-SECRET")
PUBLIC = ("/", "/display.json", "/metrics", "/openapi.json")


WHEEL = "haocha-0.1.0-py3-none-any.whl"


def _operations() -> list[tuple[str, str, bool]]:
    """(method, path, takes a body) of every operation the API describes, path parameters filled."""
    out = []
    for path, ops in spec()["paths"].items():
        for method, op in ops.items():
            filled = path.format(case="CASE-SECRET-7", ticket="1", name=WHEEL, alert="1", release="0.1.0")
            out.append((method.upper(), filled, "requestBody" in op))
    return out


OPERATIONS = _operations()
API = [op for op in OPERATIONS if op[1].startswith("/api/v1/")]
POSTS = [op for op in OPERATIONS if op[0] == "POST"]


def _ids(op: tuple[str, str, bool]) -> str:
    return f"{op[0]} {op[1]}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A hall with one bad review today: its case, staff, ticket, assignee and feedback."""
    _config, store = make_home(tmp_path)
    config = hub_config.load(tmp_path)
    with store:
        open_case(store, CaseRequest("CASE-SECRET-7", "W01", "ITEM-SECRET-3", "STAFF-SECRET-9"), 600, config.tz)
        now = int(time.time() * 1000)
        bad = Event(epoch=EPOCH, seq=1, kind="rating", level="very_dissatisfied", trigger="invite",
                    case="CASE-SECRET-7", item="ITEM-SECRET-3", staff="STAFF-SECRET-9", boot="b", wall_ms=now,
                    synced=True, age_ms=1)  # fmt: skip
        ingest(store, [bad])
        tickets.assign(store, "1", "ASSIGNEE-SECRET", None)
        tickets.verify(store, "1", True)
        tickets.feedback(store, "1", "FEEDBACK-SECRET")
    return tmp_path


@pytest.fixture
def config(home: Path) -> HubConfig:
    return hub_config.load(home)


@pytest.fixture
def client(home: Path, config: HubConfig) -> Iterator[TestClient]:
    with TestClient(create_app(home, config), raise_server_exceptions=False) as c:
        yield c


def token(config: HubConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.http.token}"}


Auth = Callable[[str], dict[str, str]]
#: Paths for people (tickets, reports); the hub's machine token opens cases and reads stats.
PEOPLES = ("/api/v1/tickets", "/api/v1/reports", "/api/v1/alerts")


@pytest.fixture
def auth(home: Path, config: HubConfig) -> Auth:
    """The token a path takes: a supervisor's own for people's paths, the hub's otherwise."""
    supervisor = bearer(add_person(home, "主管", "supervisor"))
    return lambda path: supervisor if path.startswith(PEOPLES) else token(config)


def call(client: TestClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return client.request(method, path, **kwargs)


def test_the_description_covers_every_route(client: TestClient) -> None:
    described = {p for _m, p, _b in OPERATIONS}
    routed = {getattr(r, "path", "") for r in client.app.routes}  # type: ignore[attr-defined]
    routed = {p for p in routed if not p.startswith("/console")}  # the console: HTML pages, not the API
    filled = {
        p.replace("{case}", "CASE-SECRET-7")
        .replace("{ticket}", "1")
        .replace("{name}", WHEEL)
        .replace("{alert}", "1")
        .replace("{release}", "0.1.0")
        for p in routed
    }
    assert filled - described == {
        "/openapi.json",
        "/api/v1/tickets/1/{action}",  # described once per action
        "/api/v1/alerts/1/{action}",
    }


def test_every_api_operation_names_the_bearer_scheme_and_its_401() -> None:
    for path, ops in spec()["paths"].items():
        for op in ops.values():
            public = not path.startswith("/api/v1/")
            assert op["security"] == ([] if public else [{"bearer": []}]), path
            assert public or "401" in op["responses"], path


@pytest.mark.parametrize("op", API, ids=_ids)
def test_api_routes_refuse_a_missing_wrong_or_strange_token(client: TestClient, config: HubConfig, op: Any) -> None:
    method, path, _ = op
    good = config.http.token
    strange: list[dict[str, Any]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {good}"},
        {"Authorization": f"Bearer {good}x"},
        {"Authorization": "Bearer 令牌".encode()},  # non-ASCII
        {"Authorization": b"Bearer \xff\xfe" + good.encode()},  # not UTF-8
        {"Authorization": "Bearer " + "x" * 200_000},
    ]
    for headers in strange:
        answer = call(client, method, path, headers=headers, json={"case": "C-9", "window": "W01"})
        assert answer.status_code == 401, (headers.keys(), answer.text)
        assert answer.headers["www-authenticate"] == "Bearer" and answer.json()["error"]
    for accepted in (f"Bearer {good}", f"bearer {good}", f"Bearer  {good} "):
        answer = call(client, method, path, headers={"Authorization": accepted}, json={"to": "x"})
        assert answer.status_code not in (401, 500), answer.text


def test_a_websocket_without_the_token_is_refused_before_its_handshake(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/v1/live"):
        pass
    assert refused.value.code == 1008


def test_reads_are_personal_and_need_the_token(client: TestClient, config: HubConfig, auth: Auth) -> None:
    for path in ("/api/v1/stats?by=staff", "/api/v1/tickets", "/api/v1/tickets/1", "/api/v1/cases/CASE-SECRET-7"):
        assert client.get(path).status_code == 401, path
        answer = client.get(path, headers=auth(path))
        assert answer.status_code == 200 and any(s in answer.text for s in SECRETS), path


def test_public_pages_need_no_token_and_show_nothing_personal(client: TestClient) -> None:
    for path in PUBLIC:
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert not [s for s in SECRETS if s in answer.text], path
    display = client.get("/display.json").json()
    assert display["total"]["evaluations"] == 1
    assert display["bad_reviews"] == [
        {"window": "W01", "name": "W01 窗", "level": "very_dissatisfied", "t_ms": display["bad_reviews"][0]["t_ms"],
         "reasons": ["unspecified"]}
    ]  # fmt: skip
    with open_store(client) as store:
        ticket_no = store.conn.execute("SELECT ticket_no FROM tickets").fetchone()[0]
    assert not [p for p in PUBLIC if ticket_no in client.get(p).text]
    assert 'fetch("display.json"' in client.get("/").text


def open_store(client: TestClient) -> Any:
    from hub.store import Store

    return Store(Path(client.app.state.home) / hub_config.DB_NAME)  # type: ignore[attr-defined]


def _chunks(size: int, piece: int = 8192) -> Iterator[bytes]:
    for _ in range(size // piece):
        yield b" " * piece


@pytest.mark.parametrize("op", OPERATIONS, ids=_ids)
def test_bodies_over_64_kib_get_413(client: TestClient, config: HubConfig, auth: Auth, op: Any) -> None:
    method, path, takes_body = op
    declared = call(client, method, path, headers=auth(path), content=b" " * MIB)
    assert declared.status_code == 413 and "65536" in declared.json()["error"]
    chunked = call(client, method, path, headers=auth(path), content=_chunks(MIB))
    if takes_body:
        assert chunked.status_code == 413, chunked.text
    assert chunked.status_code < 500


@pytest.mark.parametrize("op", [op for op in POSTS if op[2]], ids=_ids)
def test_the_limit_is_64_kib_exactly(client: TestClient, config: HubConfig, auth: Auth, op: Any) -> None:
    method, path, _ = op
    assert call(client, method, path, headers=auth(path), content=b" " * 65_536).status_code == 422
    assert call(client, method, path, headers=auth(path), content=b" " * 65_537).status_code == 413


LONE_SURROGATES = b'{"case": "\\ud800", "window": "W01", "to": "\\ud800", "text": "\\udfff", "reason": "\\ud800"}'
HOSTILE_BODIES = {
    "depth 100,000 (over the limit)": (b"[" * 100_000 + b"]" * 100_000, 413),
    "depth 32,000 arrays": (b"[" * 32_000 + b"]" * 32_000, 422),
    "depth 9,000 objects": (b'{"to":' * 9_000 + b"1" + b"}" * 9_000, 422),
    "5,000-digit number": (b"9" * 5_000, 422),
    "5,000-digit field": (b'{"case": "C-9", "window": "W01", "to": ' + b"9" * 5_000 + b"}", 422),
    "1e999": (b'{"case": "C-9", "window": "W01", "to": "x", "valid": 1e999}', 422),
    "NaN": (b'{"case": "C-9", "window": "W01", "to": "x", "valid": NaN}', 422),
    "invalid UTF-8": (b'{"case": "\xff\xfe", "window": "W01", "to": "\xc3\x28", "valid": true}', 422),
    "lone surrogate": (LONE_SURROGATES, 422),
    "UTF-16": ('{"case": "C-9", "window": "W01", "to": "x"}'.encode("utf-16"), 422),
    "empty": (b"", 422),
    "array": (b'["case", "window"]', 422),
    "null": (b"null", 422),
    "string": (b'"x"', 422),
}


@pytest.mark.parametrize("op", POSTS, ids=_ids)
@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_bodies_get_422_and_never_500(
    client: TestClient, config: HubConfig, auth: Auth, op: Any, name: str
) -> None:
    method, path, takes_body = op
    body, status = HOSTILE_BODIES[name]
    answer = call(client, method, path, headers={**auth(path), "Content-Type": "application/json"}, content=body)
    if takes_body:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]
    else:  # a route without a body (cancel) ignores it, unless it is too large
        assert answer.status_code == 413 if status == 413 else answer.status_code < 500
    with open_store(client) as store:
        assert store.conn.execute("SELECT state, feedback FROM tickets").fetchone() == ("feedback", "FEEDBACK-SECRET")
        assert store.conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 1


def test_a_lone_surrogate_never_reaches_the_store(client: TestClient, config: HubConfig, auth: Auth) -> None:
    with open_store(client) as store:
        ingest(store, [Event(epoch=EPOCH, seq=2, kind="rating", level="dissatisfied", trigger="free", boot="b",
                             wall_ms=int(time.time() * 1000), synced=True, age_ms=1)])  # fmt: skip
    path = "/api/v1/tickets/2"
    answer = client.post(f"{path}/assign", content=b'{"to": "\\ud800"}', headers=auth(path))
    assert answer.status_code == 422, answer.text
    assert client.get(path, headers=auth(path)).json()["state"] == "registered"


def test_ticket_refs_of_any_length_are_404(client: TestClient, config: HubConfig, auth: Auth) -> None:
    for ref in ("9" * 19, "9" * 30, "9" * 1_000, "²", "1%0A"):  # 5,000 digits: test_cli_hostile
        path = f"/api/v1/tickets/{ref}"
        assert client.get(path, headers=auth(path)).status_code == 404, ref
        changed = client.post(f"{path}/feedback", json={"text": "x"}, headers=auth(path))
        assert changed.status_code == 404, ref


# -- through a running hub ---------------------------------------------------------------------------


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (no client library cleans them) and read the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    return int(answer.split(b" ", 2)[1]), answer


def test_a_running_hub_answers_hostile_requests(running_hall: Hall) -> None:
    hall = running_hall
    port = hall.http_port
    wait_for(lambda: port_open(port), 20, "the hub's HTTP API")
    pid = hall.procs["hub"].pid
    good = f"Authorization: Bearer {hall.config.http.token}\r\n".encode()
    post = b"POST /api/v1/cases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    deep = b"[" * 30_000 + b"]" * 30_000
    cases = [
        (b"GET /api/v1/stats?by=staff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xe4\xbb\xa4\r\n", b"", 401),
        (b"GET /api/v1/tickets HTTP/1.1\r\nHost: x\r\n", b"", 401),
        (post + good + f"Content-Length: {MIB}\r\n".encode(), b" " * MIB, 413),
        (post + good + b"Transfer-Encoding: chunked\r\n", _chunked(MIB), 413),
        (post + good + f"Content-Length: {len(deep)}\r\n".encode(), deep, 422),
        (post + good + b"Content-Length: 11\r\n", b'{"case": "\xff', 422),
        (b"GET /display.json HTTP/1.1\r\nHost: x\r\n", b"", 200),
    ]
    for head, body, status in cases:
        got, answer = raw_request(port, head, body)
        assert got == status, (head[:60], answer[:300])
    long_header = b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"x" * 200_000 + b"\r\n"
    got, _ = raw_request(port, long_header)
    assert got in (400, 401, 431)  # the server may refuse the header before the app sees it
    assert hall.procs["hub"].poll() is None and hall.procs["hub"].pid == pid
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
        assert web.get("/display.json").json()["hall"] == "H1"
        stats = web.get("/api/v1/stats", headers={"Authorization": f"Bearer {hall.config.http.token}"})
        assert stats.status_code == 200
    assert "Traceback" not in hall.log("hub"), hall.log("hub")[-2000:]


def _chunked(size: int, piece: int = 8192) -> bytes:
    chunk = f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"
    return chunk * (size // piece) + b"0\r\n\r\n"


def test_bodies_are_json_objects_only() -> None:
    from hub.http.edge import BadBody, parse_object

    assert parse_object('{"a": [1, 2.5, "令"]}'.encode()) == {"a": [1, 2.5, "令"]}
    for raw in (b"[1]", b'{"a": Infinity}', b'{"a": 1e400}', b"\xef\xbb\xbf{}"):
        with pytest.raises(BadBody):
            parse_object(raw)
