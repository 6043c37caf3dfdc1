"""Console pages of the hall's figures: Today, windows and staff (supervisor, auditor).

The data come from :mod:`hub.pages` (counters only), the HTML from :mod:`hub.pages.render`;
both run on a worker thread with the page's own Store. Per-staff figures need ``stats.staff``
(SPEC section 12: not a technician's): a window's staff table is left out for anyone without it,
and the staff page answers 403.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from ...auth import can
from ...pages import drill, render
from ...pages.today import today
from ...store import Store, now_ms
from .shell import Page, config_of, person_of, render_page, with_store


async def today_page(request: Request) -> Response:
    config = config_of(request)
    at = now_ms()
    html = await with_store(request, lambda s: render.today_html(today(s, config, at), config.tz, at))
    return render_page(request, "今日概况", html)


def _period(request: Request) -> tuple[drill.Period, str]:
    """The period asked for, or the default one with the message saying why not."""
    q = request.query_params
    today_ = dt.datetime.now(config_of(request).tz).date()
    try:
        return drill.Period.parse(q.get("from"), q.get("to"), q.get("grain"), today_), ""
    except ValueError as exc:
        return drill.Period.parse(None, None, None, today_), str(exc)


async def windows_page(request: Request) -> Response:
    threshold = config_of(request).satisfaction_threshold
    period, problem = _period(request)
    window = request.query_params.get("window") or None
    show_staff = can(person_of(request), "stats.staff")

    def view(store: Store) -> str:
        rows, total = drill.windows_table(store, period, threshold)
        name = drill.window_name(store, window) if window else None
        selected = (window, name) if window and name else None
        points = drill.trend(store, period, threshold, window=selected[0] if selected else None)
        staff = drill.staff_table(store, period, threshold, window) if selected and show_staff else None
        return render.windows_html(period, rows, total, points, selected, staff)

    html = await with_store(request, view)
    return _page(request, "窗口分析", html, problem)


async def staff_page(request: Request) -> Response:
    threshold = config_of(request).satisfaction_threshold
    period, problem = _period(request)
    staff = request.query_params.get("staff") or None

    def view(store: Store) -> str:
        rows = drill.staff_table(store, period, threshold)
        names = {r["staff"]: r["name"] for r in rows}
        selected = (staff, names.get(staff, staff)) if staff else None
        points = drill.trend(store, period, threshold, staff=staff)
        return render.staff_html(period, rows, points, selected)

    html = await with_store(request, view)
    return _page(request, "工作人员分析", html, problem)


def _page(request: Request, title: str, html: str, problem: str) -> Response:
    """A page whose query could not be read shows the default period under the reason, as 400."""
    if problem:
        return render_page(request, title, render.error_html(problem) + html, status=400)
    return render_page(request, title, html)


PAGES: list[Page] = [
    Page("/today", today_page, "today.read", "今日概况"),
    Page("/windows", windows_page, "windows.read", "窗口分析"),
    Page("/staff", staff_page, "stats.staff", "工作人员"),
]
