"""Today's figures for the hall display (``GET /`` and its data, ``GET /display.json``).

Anyone in the hall can read them, without a token (SPEC section 10): they name windows, never a
staff id, a case number or a ticket's text.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from protocol.levels import LEVEL_IDS, Level

from .stats import stats
from .store import Store
from .store.registry import list_windows, stored_state


def display_data(store: Store, hall: str, tz: ZoneInfo, threshold: str) -> dict[str, Any]:
    today = dt.datetime.now(tz).date()
    result = stats(store, ["window"], today, today, threshold)
    by_window = {r["window"]: r for r in result["rows"]}
    online = _terminals_online(store)
    windows = [
        {
            "window": w["window"],
            "name": w["name"],
            "online": online.get(w["window"]),
            **_figures(by_window.get(w["window"])),
        }
        for w in list_windows(store)
    ]
    return {
        "hall": hall,
        "day": today.isoformat(),
        "timezone": tz.key,  # the page shows times in the hall's zone, whatever the TV's clock says
        "windows": windows,
        "total": _figures(result["total"]),
        "levels": [{"id": lv, "label": Level(lv).label_zh, "count": result["total"]["levels"][lv]} for lv in LEVEL_IDS],
        "bad_reviews": _bad_reviews(store, today.isoformat(), {w["window"]: w["name"] for w in windows}),
    }


def _terminals_online(store: Store) -> dict[str, bool]:
    """Per window: whether a terminal of it says it is online (its retained state, or the broker's
    last will once it is gone); windows without a terminal are absent. Revoked terminals do not count."""
    out: dict[str, bool] = {}
    for window, state in store.conn.execute("SELECT window, state FROM devices WHERE revoked = 0"):
        out[window] = out.get(window, False) or stored_state(state).get("online") is True
    return out


def _figures(row: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("cases", "evaluations", "evaluation_rate", "satisfaction_rate", "bad_rate", "mean_score", "ignored")
    out = {k: (row or {}).get(k, 0 if k in ("cases", "evaluations", "ignored") else None) for k in keys}
    rated = out["evaluations"] - (row or {}).get("flagged", 0)  # the bad-review rate's denominator
    out["bad"] = round((out["bad_rate"] or 0) * rated)
    return out


def _bad_reviews(store: Store, day: str, names: dict[str, str], limit: int = 20) -> list[dict[str, Any]]:
    """Today's bad reviews, newest first, with the reasons given for them (no case number: a
    citizen's case is theirs, not the hall's)."""
    cur = store.conn.execute(
        """
        SELECT r.window, r.level, r.t_ms,
               (SELECT x.reasons FROM events x WHERE x.device = r.device AND x.epoch = r.epoch AND x.ref = r.seq
                AND x.kind = 'reason' LIMIT 1)
        FROM events r WHERE r.day = ? AND r.kind = 'rating' AND r.status = 'accepted'
        AND r.level IN ('dissatisfied', 'very_dissatisfied') ORDER BY r.t_ms DESC LIMIT ?""",
        (day, limit),
    )
    return [
        {
            "window": w,
            "name": names.get(w, w),
            "level": lv,
            "t_ms": t,
            "reasons": json.loads(rs) if rs else ["unspecified"],
        }
        for w, lv, t, rs in cur
    ]
