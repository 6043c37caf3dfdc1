"""Console pages of the hall's machinery: devices (terminal health) and the upstream queue
(technician, supervisor, auditor), with unpark for those allowed ``upstream.change``
(supervisor, technician), audited under the person's name."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from ...auth import can
from ...pages.render_ops import devices_html, upstream_html
from ...pages.terminals import terminals
from ...pages.upstream import unpark, upstream
from ...store import Store, now_ms
from .shell import PREFIX, Page, config_of, csrf_field, form_data, person_of, redirect, render_page, with_store


async def devices_page(request: Request) -> Response:
    tz = config_of(request).tz
    at = now_ms()

    def view(store: Store) -> str:
        names = dict(store.conn.execute("SELECT id, name FROM windows"))
        return devices_html(terminals(store, at), names, tz, at)

    return render_page(request, "终端状态", await with_store(request, view))


async def upstream_page(request: Request) -> Response:
    config = config_of(request)
    at = now_ms()
    day = dt.datetime.fromtimestamp(at / 1000, config.tz).date()
    csrf = csrf_field(request) if can(person_of(request), "upstream.change") else None
    flash = _FLASH.get(request.query_params.get("done", ""), "")
    count = request.query_params.get("n", "")
    flash = flash.format(n=int(count)) if flash and count.isdigit() else ""

    def view(store: Store) -> str:
        return upstream_html(upstream(store, config.upstream.url, day), config.tz, at, csrf, flash)

    return render_page(request, "上报队列", await with_store(request, view))


_FLASH = {"unpark": "已将 {n} 条搁置记录重新排队。"}


async def unpark_post(request: Request) -> Response:
    """Queue one parked record (``id``) or all of them (``all``) again."""
    form = await form_data(request)
    person = person_of(request)
    ident = form.get("id", "")
    if form.get("all") != "1" and not ident.isdigit():
        return render_page(request, "上报队列", '<p class="flash">请选择要重新排队的记录。</p>', status=422)
    ids = None if form.get("all") == "1" else [int(ident)]
    n = await with_store(request, lambda s: unpark(s, person.name, ids))
    return redirect(f"{PREFIX}/upstream?done=unpark&n={n}")


PAGES: list[Page] = [
    Page("/devices", devices_page, "devices.read", "终端状态"),
    Page("/upstream", upstream_page, "upstream.read", "上报队列"),
    Page("/upstream/unpark", unpark_post, "upstream.change", methods=("POST",)),
]
