"""The hub's HTTP API in-process (Starlette TestClient) against a real hub database."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from starlette.testclient import TestClient

from hub import config as hub_config
from hub.cases import CaseRequest, open_case
from hub.http.app import create_app
from hub.stats import stats
from hub.store import Store
from hub.store import registry as reg
from simulators.hall import Hall

from .people import add_person


@pytest.fixture
def hall(tmp_path: Path) -> Hall:
    h = Hall(tmp_path / "hall")
    h.add_device("T01", "W01", mode="invited")
    h.add_window("W02")
    return h


@pytest.fixture
def client(hall: Hall) -> TestClient:
    return TestClient(create_app(hall.home, hall.config))


def auth(hall: Hall) -> dict[str, str]:
    return {"Authorization": f"Bearer {hall.config.http.token}"}


def post_case(client: TestClient, headers: dict[str, str], body: object) -> tuple[int, dict[str, object]]:
    response = client.post("/api/v1/cases", content=json.dumps(body), headers=headers)
    return response.status_code, response.json()


def test_open_case_queues_an_invitation_and_counts_the_case(client: TestClient, hall: Hall) -> None:
    status, body = post_case(client, auth(hall), {"case": "C-1", "window": "W01", "item": "X", "staff": "S1"})
    assert status == 201 and body["device"] == "T01" and body["status"] == "open"
    with hall.store() as store:
        ((device, payload),) = store.conn.execute("SELECT device, payload FROM commands").fetchall()
        assert device == "T01" and json.loads(payload)["case"] == "C-1"
        assert stats(store, ["window"], None, None)["rows"][0]["cases"] == 1
    assert client.get("/api/v1/cases/C-1", headers=auth(hall)).json()["status"] == "open"
    assert client.get("/api/v1/cases/C-1").status_code == 401  # a case names a citizen's service


@pytest.mark.parametrize("headers, body, status", [
    ({}, {"case": "C", "window": "W01"}, 401),
    ({"Authorization": "Bearer wrong"}, "not even json", 401),
    (None, "not json", 422),
    (None, ["case", "window"], 422),
    (None, {"case": 5, "window": "W01"}, 422),
    (None, {"window": "W01"}, 422),
    (None, {"case": "C", "window": "W01", "item": 7}, 422),
    (None, {"case": "x" * 65, "window": "W01"}, 422),
    (None, {"case": "C", "window": "W99"}, 404),
    (None, {"case": "C-9", "window": "W01", "item": "unregistered", "staff": "unknown"}, 201),
])  # fmt: skip
def test_checks_run_401_422_404_409(
    client: TestClient, hall: Hall, headers: dict[str, str] | None, body: object, status: int
) -> None:
    headers = auth(hall) if headers is None else headers
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/api/v1/cases", content=raw, headers=headers)
    assert response.status_code == status, response.text
    if status != 201:
        assert response.json()["error"]


def test_duplicate_case_is_409_and_nothing_half_written(client: TestClient, hall: Hall) -> None:
    assert post_case(client, auth(hall), {"case": "C-1", "window": "W01"})[0] == 201
    assert post_case(client, auth(hall), {"case": "C-1", "window": "W02"})[0] == 409
    with hall.store() as store:
        assert store.conn.execute("SELECT count(*) FROM commands").fetchone()[0] == 1
        assert stats(store, [], None, None)["total"]["cases"] == 1


def test_case_at_a_window_without_terminal_is_stored_without_invitation(client: TestClient, hall: Hall) -> None:
    status, body = post_case(client, auth(hall), {"case": "C-2", "window": "W02"})
    assert status == 201 and body["device"] is None


def test_cancel(client: TestClient, hall: Hall) -> None:
    post_case(client, auth(hall), {"case": "C-1", "window": "W01"})
    assert client.post("/api/v1/cases/C-1/cancel").status_code == 401
    assert client.post("/api/v1/cases/C-1/cancel", headers=auth(hall)).json()["status"] == "cancelled"
    assert client.post("/api/v1/cases/C-1/cancel", headers=auth(hall)).status_code == 409
    assert client.post("/api/v1/cases/nope/cancel", headers=auth(hall)).status_code == 404


def test_stats_gives_the_same_rows_as_the_cli(client: TestClient, hall: Hall) -> None:
    with hall.store() as store:
        open_case(store, CaseRequest("C-1", "W01", "X"), 60, hall.config.tz)
        expected = stats(store, ["window", "item"], None, None)
    assert client.get("/api/v1/stats?by=window,item", headers=auth(hall)).json() == json.loads(json.dumps(expected))
    assert client.get("/api/v1/stats?by=colour", headers=auth(hall)).status_code == 422
    assert client.get("/api/v1/stats?from=2026-13-01", headers=auth(hall)).status_code == 422
    assert client.get("/api/v1/stats?by=staff").status_code == 401  # per-staff figures are personal


def test_metrics_and_page(client: TestClient, hall: Hall) -> None:
    text = client.get("/metrics").text
    assert "haocha_devices 1.0" in text and "haocha_devices_online 0.0" in text
    assert "haocha_upstream_pending 0.0" in text and "haocha_upstream_held 0.0" in text  # the README promised them
    page = client.get("/")
    assert page.status_code == 200 and "好差评" in page.text and 'fetch("display.json"' in page.text
    display = client.get("/display.json").json()  # public, like the page: no token
    assert [w["window"] for w in display["windows"]] == ["W01", "W02"]


def test_unknown_registry_error_leaves_store_intact(hall: Hall) -> None:
    with Store(hall.home / hub_config.DB_NAME) as store:
        assert reg.window_exists(store, "W01")


def test_api_conforms_to_its_openapi_description(tmp_path: Path) -> None:
    """Requests generated from /openapi.json never get a 5xx, and every answer matches it."""
    hall = Hall(tmp_path / "fuzz")
    hall.add_device("T01", "W01")
    app = create_app(hall.home, hall.config)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    supervisor = add_person(hall.home, "主管", "supervisor")  # tickets and reports are people's, not the machine's
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        people = operation.path.startswith(("/api/v1/tickets", "/api/v1/reports", "/api/v1/alerts"))
        token = supervisor if people else hall.config.http.token

        @hypothesis.settings(
            max_examples=60, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
        )
        @hypothesis.given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"})  # noqa: B023 (called at once)

        check()
        checked += 1
    assert checked == 21  # every operation of the description was exercised
