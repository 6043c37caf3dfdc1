"""HTTP endpoints of the published rankings, for the console and for people who print them.

``GET /api/v1/reports/monthly?month=YYYY-MM&format=html|csv|json`` and
``GET /api/v1/reports/difficult?quarter=YYYY-Qn&min_ratings=N&top=N&format=html|csv|json``.
Like every ``/api/v1/`` route they need a bearer token, asked for by the app's edge
(:mod:`.edge`) before a handler runs: a person's own whose role may read reports
(``reports.read`` in :mod:`hub.auth`: supervisors, auditors), 403 otherwise (the hub's machine
token too); a bad parameter gets 422.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import rankings, rankings_render
from ..config import DB_NAME, HubConfig, load
from ..store import Store
from .edge import error, requires

T = TypeVar("T")

FORMATS = ("html", "csv", "json")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_QUARTER = re.compile(r"(\d{4})-Q([1-4])")
_COUNT_MAX = 1_000_000


class BadParameter(ValueError):
    """A query parameter the route cannot take (HTTP 422)."""


def _config(request: Request) -> HubConfig:
    config = getattr(request.app.state, "config", None)
    return config if isinstance(config, HubConfig) else load(Path(request.app.state.home))


async def _with_store(request: Request, fn: Callable[[Store], T]) -> T:
    """``fn`` on a worker thread with a Store of its own (sqlite3 connections belong to one thread)."""

    def work() -> T:
        with Store(Path(request.app.state.home) / DB_NAME) as store:
            return fn(store)

    return await run_in_threadpool(work)


def _year_ok(year: int) -> bool:
    return 1900 <= year <= 2999  # as the description's patterns say


def _month(text: str | None, today: dt.date) -> dt.date:
    if text is None:
        return today
    found = _MONTH.fullmatch(text)
    if not found or not 1 <= int(found[2]) <= 12 or not _year_ok(int(found[1])):
        raise BadParameter(f"'month' must be YYYY-MM, got {text[:20]!r}")
    return dt.date(int(found[1]), int(found[2]), 1)


def _quarter(text: str | None, today: dt.date) -> dt.date:
    if text is None:
        return today
    found = _QUARTER.fullmatch(text)
    if not found or not _year_ok(int(found[1])):
        raise BadParameter(f"'quarter' must be YYYY-Qn (n 1-4), got {text[:20]!r}")
    return dt.date(int(found[1]), 3 * int(found[2]) - 2, 1)


def _count(text: str | None, name: str, default: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 7 or not 1 <= int(text) <= _COUNT_MAX:
        raise BadParameter(f"'{name}' must be a whole number from 1 to {_COUNT_MAX}")
    return int(text)


def _format(request: Request) -> str:
    fmt = request.query_params.get("format", "html")
    if fmt not in FORMATS:
        raise BadParameter(f"'format' must be one of {', '.join(FORMATS)}")
    return fmt


def _answer(rep: dict[str, Any], fmt: str, config: HubConfig) -> Response:
    now = dt.datetime.now(config.tz)
    if fmt == "json":
        return JSONResponse(rep)
    text = rankings_render.render(rep, fmt, now)
    if fmt == "html":
        return HTMLResponse(text)
    name = f"haocha-{rep['kind']}-{rep['hall']}-{rep['period']}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)


@requires("reports.read")
async def monthly(request: Request) -> Response:
    config = _config(request)
    try:
        day = _month(request.query_params.get("month"), dt.datetime.now(config.tz).date())
        fmt = _format(request)
    except BadParameter as exc:
        return error(422, str(exc))
    rep = await _with_store(request, lambda s: rankings.monthly(s, config, day))
    return _answer(rep, fmt, config)


@requires("reports.read")
async def difficult(request: Request) -> Response:
    config = _config(request)
    params, settings = request.query_params, config.reports
    try:
        day = _quarter(params.get("quarter"), dt.datetime.now(config.tz).date())
        least = _count(params.get("min_ratings"), "min_ratings", settings.difficult_min_ratings)
        top = _count(params.get("top"), "top", settings.difficult_top)
        fmt = _format(request)
    except BadParameter as exc:
        return error(422, str(exc))
    rep = await _with_store(request, lambda s: rankings.difficult(s, config, day, "quarter", least, top))
    return _answer(rep, fmt, config)


routes = [Route("/api/v1/reports/monthly", monthly), Route("/api/v1/reports/difficult", difficult)]


def openapi_paths() -> dict[str, Any]:
    """OpenAPI 3.1 ``paths`` entries of these routes."""
    err = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
    fmt = {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS), "default": "html"}}
    count = {"type": "integer", "minimum": 1, "maximum": _COUNT_MAX}
    ok = {
        "description": "the ranking: a printable page, one CSV table (UTF-8 with BOM), or JSON",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }

    def get(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "security": [{"bearer": []}],
                "parameters": [*params, fmt],
                "responses": {
                    "200": ok,
                    "401": {"description": "token missing or wrong", **err},
                    "422": {"description": "bad parameter", **err},
                },
            }
        }

    year = r"(19|2\d)\d\d"
    month = {"type": "string", "pattern": f"^{year}-(0[1-9]|1[0-2])$"}
    quarter = {"type": "string", "pattern": f"^{year}-Q[1-4]$"}
    return {
        "/api/v1/reports/monthly": get(
            "窗口月度排名: every window of a month ranked", [{"name": "month", "in": "query", "schema": month}]
        ),
        "/api/v1/reports/difficult": get(
            "最难办窗口: the worst windows of a quarter by bad-review rate",
            [
                {"name": "quarter", "in": "query", "schema": quarter},
                {"name": "min_ratings", "in": "query", "schema": count},
                {"name": "top", "in": "query", "schema": count},
            ],
        ),
    }
