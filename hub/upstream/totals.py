"""Period totals per window and item, queued for the regional system.

Totals come from :func:`hub.stats.stats`, the same counters as ``haocha stats``, so what upstream
receives matches what the hall reads. A period's totals have a stable id; queuing them again
while unsent replaces the pending copy, and the regional system keeps the newest it received.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..config import HubConfig
from ..periods import period_range
from ..stats import stats
from ..store import Store
from . import outbox


def totals_rows(store: Store, config: HubConfig, period: str, day: dt.date) -> list[dict[str, Any]]:
    start, end, label = period_range(period, day)
    result = stats(store, ["window", "item"], start, end, config.satisfaction_threshold)
    keep = ("cases", "evaluations", "levels", "evaluation_rate", "satisfaction_rate", "bad_rate")
    return [
        {
            "totals_id": f"{config.hall}-{label}-{row['window']}-{row['item']}",
            "hall": config.hall,
            "period": label,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "window": row["window"],
            "item": row["item"],
            **{k: row[k] for k in keep},
        }
        for row in result["rows"]
    ]


def queue_totals(store: Store, config: HubConfig, period: str, day: dt.date) -> int:
    """Queue the totals of the period holding ``day``; returns how many rows were queued."""
    rows = totals_rows(store, config, period, day)
    with store.transaction() as conn:
        for row in rows:
            outbox.put_totals(conn, row["totals_id"], row)
    return len(rows)
