"""The hall's console at ``/console/`` (SPEC section 12): server-rendered pages, Chinese first.

:mod:`.shell` holds login, sessions, CSRF, the permission guard and the layout; each page module
lists its :class:`~.shell.Page` objects in ``PAGES``, and :data:`PAGES` below joins them (the
order is the navigation's). To add pages: write a module, then add its ``PAGES`` here.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import alerts, audit_log, figures, operations, people, queue, reports_pages
from .shell import Page, console_routes

PAGES: list[Page] = [
    *figures.PAGES,
    *queue.PAGES,
    *reports_pages.PAGES,
    *operations.PAGES,
    *alerts.PAGES,
    *people.PAGES,
    *audit_log.PAGES,
]


def routes() -> list[BaseRoute]:
    return console_routes(PAGES)
