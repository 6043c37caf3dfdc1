"""The hub's HTTP API as a Starlette application.

Handlers parse and check the request, then call the library (``hub.cases``, ``hub.stats``) on a
worker thread with a Store connection of its own. :mod:`.edge` runs first: every ``/api/v1/``
route, reads included, needs the bearer token, and bodies are bounded. Checks run in the order
401 → 413 → 422 → 404 → 409 (SPEC sections 7 and 10).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import cases
from ..auth import can
from ..config import CONFIG_NAME, DB_NAME, HubConfig
from ..display import display_data
from ..errors import AlreadyExists, NotFound, StoreError
from ..stats import parse_by, stats
from ..store import Store
from .console import routes as console_routes
from .edge import (
    BadBody,
    BodyLimit,
    HubToken,
    RequireToken,
    error,
    forbidden,
    json_object,
    person_lookup,
    person_of,
    requires,
)
from .fleet import fleet_routes
from .metrics import render_metrics
from .openapi import spec
from .reports import routes as report_routes
from .tickets import routes as ticket_routes

T = TypeVar("T")
_LOG = logging.getLogger(__name__)
#: Seconds a client waits before trying again when the store cannot be used (a full disk).
RETRY_AFTER_S = 5
PAGE = Path(__file__).with_name("display.html")


class Api:
    def __init__(
        self, home: Path, config: HubConfig, on_command: Callable[[], None], health: Callable[[], dict[str, int]] | None
    ) -> None:
        self.home = home
        self.config = config
        self.on_command = on_command
        self.health = health

    async def with_store(self, fn: Callable[[Store], T]) -> T:
        def call() -> T:
            with Store(self.home / DB_NAME) as store:
                return fn(store)

        return await run_in_threadpool(call)

    @requires("case.open")
    async def open_case(self, request: Request) -> Response:
        try:
            body = cases.CaseRequest.from_json(await json_object(request))
        except ValueError as exc:
            return error(422, str(exc))
        try:
            case = await self.with_store(
                lambda s: cases.open_case(s, body, self.config.invite_s, self.config.tz, source="api")
            )
        except NotFound as exc:
            return error(404, str(exc))
        except AlreadyExists as exc:
            return error(409, str(exc))
        self.on_command()
        return JSONResponse(case, status_code=201)

    @requires("case.read")
    async def get_case(self, request: Request) -> Response:
        case_no = request.path_params["case"]
        case = await self.with_store(lambda s: cases.get_case(s.conn, case_no))
        return error(404, f"unknown case {case_no}") if case is None else JSONResponse(case)

    @requires("case.cancel")
    async def cancel_case(self, request: Request) -> Response:
        case_no = request.path_params["case"]
        actor = person_of(request).name
        try:
            result = await self.with_store(lambda s: cases.cancel_case(s, case_no, actor))
        except NotFound as exc:
            return error(404, str(exc))
        except AlreadyExists as exc:
            return error(409, str(exc))
        self.on_command()
        return JSONResponse(result)

    @requires("stats.read")
    async def stats(self, request: Request) -> Response:
        try:
            by = parse_by(request.query_params.get("by"))
            if "staff" in by and not can(person_of(request), "stats.staff"):
                return forbidden(person_of(request), "stats.staff")
            start, end = (_date(request.query_params.get(k), k) for k in ("from", "to"))
            result = await self.with_store(lambda s: stats(s, by, start, end, self.config.satisfaction_threshold))
        except ValueError as exc:
            return error(422, str(exc))
        return JSONResponse(result)

    async def display(self, request: Request) -> Response:
        """The hall display's figures: public, so nothing personal (see :func:`hub.display.display_data`)."""
        cfg = self.config
        data = await self.with_store(lambda s: display_data(s, cfg.hall, cfg.tz, cfg.satisfaction_threshold))
        return JSONResponse(data)

    async def metrics(self, request: Request) -> Response:
        health = self.health() if self.health is not None else None
        body = await self.with_store(lambda store: render_metrics(store, health))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(spec())


def _date(text: str | None, name: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{name}' must be a date YYYY-MM-DD, got {text!r}") from None


async def _bad_body(request: Request, exc: Exception) -> Response:
    return error(422, str(exc))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """A full disk or an unreadable database is the hub's trouble, not the client's, and passes:
    503 with Retry-After, so the business system tries again, and one log line instead of a 500
    with a traceback."""
    _LOG.warning("%s %s: the store cannot be used now: %s", request.method, request.url.path, exc)
    response = error(503, f"the hub cannot use its database now ({exc}); try again")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def create_app(
    home: Path,
    config: HubConfig,
    on_command: Callable[[], None] = lambda: None,
    extra_routes: list[Any] | None = None,
    health: Callable[[], dict[str, int]] | None = None,
) -> Starlette:
    """The API; ``health`` is the running daemon's own state for /metrics (None in tests)."""
    api = Api(home, config, on_command, health)
    routes = [
        Route("/", api.page),
        Route("/openapi.json", api.openapi),
        Route("/display.json", api.display),
        Route("/metrics", api.metrics),
        Route("/api/v1/cases", api.open_case, methods=["POST"]),
        Route("/api/v1/cases/{case}", api.get_case),
        Route("/api/v1/cases/{case}/cancel", api.cancel_case, methods=["POST"]),
        Route("/api/v1/stats", api.stats),
        *ticket_routes,
        *fleet_routes(home),
        *report_routes,
        *console_routes(),
        *(extra_routes or []),
    ]
    token = HubToken(home / CONFIG_NAME, config.http.token)
    middleware = [Middleware(RequireToken, token=token, people=person_lookup(home)), Middleware(BodyLimit)]
    handlers = {BadBody: _bad_body, StoreError: _store_unavailable, sqlite3.OperationalError: _store_unavailable}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.home = home
    app.state.config = config
    return app
