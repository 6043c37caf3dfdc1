"""The published rankings (窗口月度排名, 最难办窗口) in the console: the API's own printable pages
(:mod:`hub.http.reports`), opened with the console's session instead of a bearer token, and the
same ``reports.read`` permission."""

from __future__ import annotations

from .. import reports
from .shell import Page

PAGES: list[Page] = [
    Page("/reports/monthly", reports.monthly, "reports.read", "月度排名"),
    Page("/reports/difficult", reports.difficult, "reports.read", "最难办窗口"),
]
