"""The layout of the ``tallies`` table: its key columns, its counters, its grains, and how the
work-queue counters are counted. Both the migrations (:mod:`.schema`) and the counting code
(:mod:`.tallies`) follow it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from protocol.levels import LEVEL_IDS

#: Event counters of a tally row (created by migration 1). ``lv_*`` count every rating by level
#: (flagged ones included), ``fl_*`` the flagged ones, so rates can leave misuse out while
#: ``evaluations`` keeps it.
EVENT_COLUMNS: tuple[str, ...] = (
    "events", "cases", "rated", "ignored", "refused", "flagged",
    *(f"lv_{lv}" for lv in LEVEL_IDS), *(f"fl_{lv}" for lv in LEVEL_IDS),
)  # fmt: skip
#: Work-queue counters (added by migration 5), see :data:`hub.store.tallies.TICKET_COUNTS`.
TICKET_COLUMNS: tuple[str, ...] = ("tickets", "valid_tickets", "rectified")
#: Events stored as ``invalid`` (added by migration 6): MAC-valid, breaking a field rule.
RULE_COLUMNS: tuple[str, ...] = ("invalid",)
TALLY_COLUMNS: tuple[str, ...] = EVENT_COLUMNS + TICKET_COLUMNS + RULE_COLUMNS
TALLY_KEYS = ("grain", "period", "device", "window", "item", "staff")
#: The grains of a tally row and the length of their period text: day, month, year.
GRAINS = (("d", 10), ("m", 7), ("y", 4))

#: What each work-queue counter counts over ``tickets t``: every ticket, those verified valid,
#: those given feedback (rectified; feedback follows a valid verdict only). Each predicate turns
#: true at most once in a ticket's life and never back, so a change adds its ticket once.
TICKET_COUNTS = {
    "tickets": "COUNT(*)",
    "valid_tickets": "SUM(t.verdict IS 'valid')",  # IS: 0, not NULL, before a verdict
    "rectified": "SUM(t.state = 'feedback')",
}


def count_tickets(
    conn: sqlite3.Connection, columns: Sequence[str], where: str = "1", params: Sequence[object] = ()
) -> None:
    """Add the tickets matched by ``where`` (over ``tickets t``) to the counters ``columns``.

    A ticket is keyed by its opening day, device, window, item and staff exactly as ingest keys
    its rating, so it lands in its rating's rows and ``stats`` groups it like the rating."""
    keys = ", ".join(TALLY_KEYS)
    grains = ", ".join(f"('{g}', {n})" for g, n in GRAINS)
    sql = (
        f"INSERT INTO tallies ({keys}, {', '.join(columns)}) "
        "SELECT g.column1, substr(t.opened_day, 1, g.column2), t.device, t.window, coalesce(t.item, ''), "
        f"coalesce(t.staff, ''), {', '.join(TICKET_COUNTS[c] for c in columns)} "
        f"FROM tickets t, (VALUES {grains}) g WHERE {where} GROUP BY 1, 2, 3, 4, 5, 6 "
        f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in columns)}"
    )
    conn.execute(sql, params)
