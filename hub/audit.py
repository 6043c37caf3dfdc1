"""Reading the audit log (``haocha audit``, the console's audit page), SPEC section 12.

Every provisioning, ticket, account and login action writes a row (``Store.audit``) naming its
actor: a person's name, or for the hub itself and its command line ``system``. Rows written
before people had accounts name the hub's own parts (``cli``, ``api``, ``hub``, ``http``); they
read as ``system`` too.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from .auth import SYSTEM
from .store import Store

#: Actors that are the hub itself, not a person (no account may take these names).
SYSTEM_ACTORS = frozenset({SYSTEM, "cli", "api", "hub", "http", "staff", ""})


def _bound(day: dt.date, tz: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), tz).timestamp() * 1000)


def read_audit(
    store: Store,
    tz: ZoneInfo,
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    target: str | None = None,
) -> list[dict[str, Any]]:
    """Rows with ``at`` (ISO 8601, hall time), ``actor``, ``action``, ``target`` and ``detail``,
    for the hall-local days ``start`` … ``end`` (inclusive)."""
    lo = _bound(start, tz) if start else 0
    hi = _bound(end + dt.timedelta(days=1), tz) if end else 2**62
    order = "DESC" if newest_first else "ASC"
    where = "ts_ms >= ? AND ts_ms < ?"
    params_any: list[Any] = [lo, hi]
    if target is not None:
        where += " AND subject = ?"
        params_any.append(target)
    cur = store.conn.execute(
        f"SELECT id, ts_ms, actor, action, subject, detail FROM audit WHERE {where} "
        f"ORDER BY ts_ms {order}, id {order} LIMIT ?",
        (*params_any, -1 if limit is None else limit),
    )
    return [_row(tz, *r) for r in cur]


def _row(tz: ZoneInfo, rid: int, ts_ms: int, actor: str | None, action: str, subject: str | None,
         detail: str | None) -> dict[str, Any]:  # fmt: skip
    try:
        parsed = json.loads(detail) if detail else {}
    except ValueError:
        parsed = {"raw": detail}
    return {
        "id": rid,
        "at": dt.datetime.fromtimestamp(ts_ms / 1000, tz).isoformat(timespec="milliseconds"),
        "actor": SYSTEM if (actor or "") in SYSTEM_ACTORS else actor,
        "action": action,
        "target": subject,
        "detail": parsed,
    }
