"""HTTP endpoints of the bad-review work queue, mounted by the hub's API app.

Like every ``/api/v1/`` route, reads and changes need a bearer token, asked for by the app's edge
(:mod:`.edge`) before a handler runs; here only a person's own token (``haocha user token``) gets
past the role check (:mod:`hub.auth`): the hub's machine token gets 403. A handler sees and moves
only the tickets of their department. The audit log names the person of the token, never anyone
a body names. Checks run 401 → 403 → 422 → 404 → 403 (department) → 409 (a change out of
sequence). Each request opens its own Store on a worker thread (sqlite3 connections belong to one
thread).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import config as hub_config
from .. import tickets
from ..auth import Person, can, in_scope
from ..errors import NotFound, TicketStateError
from ..store import Store
from .edge import error, forbidden, json_object, person_of, requires

T = TypeVar("T")


def _home(request: Request) -> Path:
    return Path(request.app.state.home)


def _config(request: Request) -> hub_config.HubConfig:
    config = getattr(request.app.state, "config", None)
    return config if isinstance(config, hub_config.HubConfig) else hub_config.load(_home(request))


async def _with_store(request: Request, fn: Callable[[Store], T]) -> T:
    def work() -> T:
        with Store(_home(request) / hub_config.DB_NAME) as store:
            return fn(store)

    return await run_in_threadpool(work)


def _today(config: hub_config.HubConfig) -> dt.date:
    return dt.datetime.now(config.tz).date()


@requires("ticket.read")
async def list_tickets(request: Request) -> Response:
    config = _config(request)
    person = person_of(request)
    state = request.query_params.get("state") or None
    dept = request.query_params.get("dept") or None
    overdue = request.query_params.get("overdue", "") in ("1", "true", "yes")
    if state is not None and state not in tickets.STATES:
        return error(422, f"unknown state {state[:40]!r}; choose from {', '.join(tickets.STATES)}")
    rows = await _with_store(request, lambda s: tickets.list_tickets(s, config.tickets, _today(config), state, overdue))
    rows = [r for r in rows if in_scope(person, r["department"]) and dept in (None, r["department"])]
    return JSONResponse({"tickets": rows})


@requires("ticket.read")
async def get_ticket(request: Request) -> Response:
    config = _config(request)
    ref = request.path_params["ticket"]
    try:
        row = await _with_store(request, lambda s: tickets.get_ticket(s, ref, config.tickets, _today(config)))
    except NotFound as exc:
        return error(404, str(exc))
    if not can(person_of(request), "ticket.read", row):
        return forbidden(person_of(request), "ticket.read")
    return JSONResponse(row)


#: action → (required string fields, call(store, ticket, body, actor)).
_ACTIONS: dict[str, tuple[tuple[str, ...], Callable[[Store, str, dict[str, Any], str], dict[str, Any]]]] = {
    "assign": (("to",), lambda s, t, b, a: tickets.assign(s, t, b["to"], b.get("dept"), a)),
    "appeal": (("reason",), lambda s, t, b, a: tickets.appeal(s, t, b["reason"], a)),
    "verify": ((), lambda s, t, b, a: tickets.verify(s, t, b["valid"], a)),
    "feedback": (("text",), lambda s, t, b, a: tickets.feedback(s, t, b["text"], a)),
}


def _check_body(action: str, body: dict[str, Any]) -> str | None:
    for key in _ACTIONS[action][0]:
        if not isinstance(body.get(key), str) or not body[key].strip():
            return f"{key!r} must be a non-empty string"
    if action == "verify" and not isinstance(body.get("valid"), bool):
        return "'valid' must be true or false"
    if body.get("dept") is not None and not isinstance(body["dept"], str):
        return "'dept' must be a string"
    return None


def may_change(person: Person, action: str, ticket: dict[str, Any], dept: str | None = None) -> bool:
    """Whether ``person`` may do ticket ``action`` on ``ticket`` (and, for an assignment, hand it to
    ``dept``): the API and the console both ask this. A scoped role assigns within its department."""
    if not can(person, f"ticket.{action}", ticket):
        return False
    return action != "assign" or not dept or in_scope(person, dept)


async def change_ticket(request: Request) -> Response:
    """401 → 403 (role) → 413 → 422 → 404 → 403 (department) → 409."""
    config = _config(request)
    person = person_of(request)
    action, ref = request.path_params["action"], request.path_params["ticket"]
    if action not in _ACTIONS:
        return error(404, f"no ticket action {action!r}; choose from {', '.join(_ACTIONS)}")
    if not can(person, f"ticket.{action}"):
        return forbidden(person, f"ticket.{action}")
    body = await json_object(request)
    problem = _check_body(action, body)
    if problem:
        return error(422, problem)
    try:
        ticket = await _with_store(request, lambda s: tickets.get_ticket(s, ref, config.tickets, _today(config)))
    except NotFound as exc:
        return error(404, str(exc))
    if not may_change(person, action, ticket, body.get("dept")):
        return forbidden(person, f"ticket.{action}")
    call = _ACTIONS[action][1]
    try:
        row = await _with_store(request, lambda s: call(s, ref, body, person.name))
    except NotFound as exc:
        return error(404, str(exc))
    except TicketStateError as exc:
        return error(409, str(exc))
    return JSONResponse(await _with_store(request, lambda s: tickets.get_ticket(s, str(row["id"]), config.tickets,
                                                                                  _today(config))))  # fmt: skip


routes: list[Route] = [
    Route("/api/v1/tickets", list_tickets, methods=["GET"]),
    Route("/api/v1/tickets/{ticket}", get_ticket, methods=["GET"]),
    Route("/api/v1/tickets/{ticket}/{action}", change_ticket, methods=["POST"]),
]


def _body(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": props}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def openapi_paths() -> dict[str, Any]:
    """OpenAPI 3.1 ``paths`` entries of these routes, to merge into the API's description. Each
    action is its own path, so a client (and the fuzzer) knows exactly which body it takes."""
    text = {"type": "string", "minLength": 1, "pattern": r"\S"}
    err = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
    ticket = {"description": "the ticket with its deadline and overdue flag", "content": {"application/json": {}}}
    bodies = {
        "assign": _body(["to"], {"to": text, "dept": {"type": "string"}}),
        "appeal": _body(["reason"], {"reason": text}),
        "verify": _body(["valid"], {"valid": {"type": "boolean"}}),
        "feedback": _body(["text"], {"text": text}),
    }
    titles = {"assign": "转办 assign", "appeal": "申诉 appeal", "verify": "核实 verify", "feedback": "反馈 feedback"}
    path_ticket = {"name": "ticket", "in": "path", "required": True, "schema": {"type": "string"}}
    unauthorized = {"description": "token missing or wrong", **err}

    def change(action: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": f"Move a ticket: {titles[action]}",
                "security": [{"bearer": []}],
                "parameters": [path_ticket],
                "requestBody": bodies[action],
                "responses": {
                    "200": ticket,
                    "401": unauthorized,
                    "413": {"description": "body over 64 KiB", **err},
                    "422": {"description": "bad body", **err},
                    "404": {"description": "unknown ticket", **err},
                    "409": {"description": "out of sequence", **err},
                },
            }
        }

    return {
        "/api/v1/tickets": {"get": {
            "summary": "The bad-review work queue", "security": [{"bearer": []}],
            "parameters": [{"name": "state", "in": "query", "schema": {"enum": list(tickets.STATES)}},
                           {"name": "overdue", "in": "query", "schema": {"type": "string", "enum": ["1", "0"]}},
                           {"name": "dept", "in": "query", "schema": {"type": "string"},
                            "description": "only this department's tickets"}],
            "responses": {"200": {"description": "{\"tickets\": [...]}", "content": {"application/json": {}}},
                          "401": unauthorized, "422": {"description": "unknown state", **err}}}},
        "/api/v1/tickets/{ticket}": {"get": {
            "summary": "One ticket by id or number", "security": [{"bearer": []}], "parameters": [path_ticket],
            "responses": {"200": ticket, "401": unauthorized, "404": {"description": "unknown ticket", **err}}}},
        **{f"/api/v1/tickets/{{ticket}}/{action}": change(action) for action in bodies},
    }  # fmt: skip
