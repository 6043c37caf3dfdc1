"""HTTP endpoints of alerts, mounted by the hub's API app: the same rights as the console's page
(``alerts.read``: supervisor, auditor, technician; ``alerts.change``: supervisor), a person's own
token only (the hub's machine token gets 403), the person of the token in the audit log. Checks
run 401 → 403 → 413 → 422 → 404 → 409 (a change the alert's state does not allow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..alerts import lifecycle
from ..alerts.lifecycle import AlertStateError, BadComment
from ..config import DB_NAME
from ..errors import NotFound
from ..store import Store
from .edge import error, json_object, person_of, requires

_STATES = ("live", "all", *lifecycle.STATES)


async def _with_store(request: Request, fn: Any) -> Any:
    home = Path(request.app.state.home)

    def work() -> Any:
        with Store(home / DB_NAME) as store:
            return fn(store)

    return await run_in_threadpool(work)


@requires("alerts.read")
async def list_alerts(request: Request) -> Response:
    state = request.query_params.get("state", "live")
    if state not in _STATES:
        return error(422, f"unknown state {state[:40]!r}; choose from {', '.join(_STATES)}")
    rows = await _with_store(request, lambda s: lifecycle.list_alerts(s, None if state == "all" else state))
    return JSONResponse({"rows": rows})


@requires("alerts.change")
async def change_alert(request: Request) -> Response:
    action, ref = request.path_params["action"], request.path_params["alert"]
    if action not in ("ack", "close"):
        return error(404, f"no alert action {action!r}; choose from ack, close")
    body = await json_object(request)
    comment = body.get("comment", "")
    if not isinstance(comment, str) or (action == "ack" and not comment.strip()):
        return error(422, "'comment' must be a non-empty string" if action == "ack" else "'comment' must be a string")
    if not (ref.isascii() and ref.isdigit() and len(ref) < 19):
        return error(404, f"no alert {ref[:40]!r}")
    name = person_of(request).name
    call = lifecycle.acknowledge if action == "ack" else lifecycle.close
    try:
        alert = await _with_store(request, lambda s: call(s, int(ref), name, comment))
    except NotFound as exc:
        return error(404, str(exc))
    except BadComment as exc:
        return error(422, str(exc))
    except AlertStateError as exc:
        return error(409, str(exc))
    return JSONResponse(alert)


routes: list[Route] = [
    Route("/api/v1/alerts", list_alerts, methods=["GET"]),
    Route("/api/v1/alerts/{alert}/{action}", change_alert, methods=["POST"]),
]


def openapi_paths() -> dict[str, Any]:
    """OpenAPI 3.1 ``paths`` of these routes, to merge into the API's description."""
    err = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
    alert = {"description": "the alert", "content": {"application/json": {}}}
    path_alert = {"name": "alert", "in": "path", "required": True, "schema": {"type": "string"}}
    unauthorized = {"description": "token missing or wrong", **err}
    text = {"type": "string", "minLength": 1, "maxLength": lifecycle.MAX_COMMENT, "pattern": r"\S"}

    def change(action: str, required: list[str], summary: str) -> dict[str, Any]:
        schema = {"type": "object", "required": required, "properties": {"comment": text}}
        return {"post": {
            "summary": summary, "security": [{"bearer": []}], "parameters": [path_alert],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {"200": alert, "401": unauthorized, "413": {"description": "body over 64 KiB", **err},
                          "422": {"description": "bad body", **err}, "404": {"description": "unknown alert", **err},
                          "409": {"description": "the alert's state does not allow it", **err}}}}  # fmt: skip

    return {
        "/api/v1/alerts": {"get": {
            "summary": "Alerts, newest first (state: live = open or acknowledged)", "security": [{"bearer": []}],
            "parameters": [{"name": "state", "in": "query", "schema": {"enum": list(_STATES)}}],
            "responses": {"200": {"description": "{\"rows\": [...]}", "content": {"application/json": {}}},
                          "401": unauthorized, "422": {"description": "unknown state", **err}}}},
        "/api/v1/alerts/{alert}/ack": change("ack", ["comment"], "Acknowledge an open alert with a comment"),
        "/api/v1/alerts/{alert}/close": change("close", [], "Close an alert by hand"),
    }  # fmt: skip
