"""Rates per window, item, staff, device or day (SPEC section 1), read from the counters only.

evaluation rate = rated cases ÷ opened cases; satisfaction rate = ratings at or above the threshold
÷ ratings; bad-review rate = (dissatisfied + very_dissatisfied) ÷ ratings; mean score 1–5. Flagged
(misuse) ratings count in ``evaluations`` and ``flagged`` but are left out of every rate.
Rectification rate = bad-review tickets given feedback ÷ tickets verified valid, over the tickets
opened in the period (by the day of their bad review), from the work-queue counters.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Sequence
from typing import Any

from protocol.levels import BAD_LEVEL_IDS, LEVEL_IDS, Level

from . import table
from .spreadsheet import SafeWriter
from .store import Store
from .store.schema import TALLY_COLUMNS
from .store.tallies import DIMENSIONS, query

_SCORES = {lv: Level(lv).score for lv in LEVEL_IDS}  # enum lookups per row were half the cost of summarize


def parse_by(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "window").split(",") if n.strip()]
    for name in names:
        if name not in DIMENSIONS:
            raise ValueError(f"--by {name!r}: choose from {', '.join(DIMENSIONS)} (comma-separated)")
    return list(dict.fromkeys(names))  # a field named twice groups once


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def rectification_rate(rectified: int, valid: int) -> float | None:
    """整改率 (SPEC section 1): tickets with feedback ÷ valid tickets; None without valid tickets."""
    return _ratio(rectified, valid)


def summarize(counts: dict[str, Any], threshold: str) -> dict[str, Any]:
    """The contract row fields from summed counters."""
    get = counts.get
    c = {k: get(k) or 0 for k in TALLY_COLUMNS}  # SQLite sums are ints already, or NULL
    levels = {lv: c[f"lv_{lv}"] for lv in LEVEL_IDS}
    clean = {lv: levels[lv] - c[f"fl_{lv}"] for lv in LEVEL_IDS}
    n_clean = sum(clean.values())
    floor = _SCORES[Level(threshold).value]
    satisfied = sum(n for lv, n in clean.items() if _SCORES[lv] >= floor)
    bad = sum(n for lv, n in clean.items() if lv in BAD_LEVEL_IDS)
    score = sum(n * _SCORES[lv] for lv, n in clean.items())
    return {
        "cases": c["cases"],
        "evaluations": sum(levels.values()),
        "levels": levels,
        "evaluation_rate": _ratio(c["rated"], c["cases"]),
        "satisfaction_rate": _ratio(satisfied, n_clean),
        "bad_rate": _ratio(bad, n_clean),
        "mean_score": _ratio(score, n_clean),
        "ignored": c["ignored"],
        "flagged": c["flagged"],
        "invalid": c["invalid"],
        "refused": c["refused"],
        "rated": c["rated"],
        "events": c["events"],
        "tickets": c["tickets"],
        "valid_tickets": c["valid_tickets"],
        "rectified": c["rectified"],
        "rectification_rate": rectification_rate(c["rectified"], c["valid_tickets"]),
    }


def stats(
    store: Store, by: Sequence[str], start: dt.date | None, end: dt.date | None, threshold: str = "basic"
) -> dict[str, Any]:
    """``{"rows": [...], "total": {...}}`` as ``haocha stats --format json`` prints it."""
    raw = [] if start and end and start > end else query(store.conn, by, start, end)
    rows = [{**{k: str(r[k]) for k in by}, **summarize(r, threshold)} for r in raw]
    total_counts = dict.fromkeys(TALLY_COLUMNS, 0)
    for r in raw:  # one pass over the rows, not one per counter: window×item can be 100,000 rows
        for c in TALLY_COLUMNS:
            total_counts[c] += r[c] or 0
    return {"rows": rows, "total": summarize(total_counts, threshold)}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


TABLE_HEAD = [
    "cases",
    "evals",
    "非常满意",
    "满意",
    "基本满意",
    "不满意",
    "非常不满意",
    "eval%",
    "satisfied%",
    "bad%",
    "mean",
    "ignored",
    "flagged",
    "invalid",
    "tickets",
    "rectified%",
]


def _flat(row: dict[str, Any], by: Sequence[str]) -> list[str]:
    mean = "—" if row["mean_score"] is None else f"{row['mean_score']:.2f}"
    return [
        *(row.get(k, "") for k in by),
        str(row["cases"]),
        str(row["evaluations"]),
        *(str(row["levels"][lv]) for lv in LEVEL_IDS),
        _pct(row["evaluation_rate"]),
        _pct(row["satisfaction_rate"]),
        _pct(row["bad_rate"]),
        mean,
        str(row["ignored"]),
        str(row["flagged"]),
        str(row["invalid"]),
        str(row["tickets"]),
        _pct(row["rectification_rate"]),
    ]


def format_table(result: dict[str, Any], by: Sequence[str]) -> str:
    head = [*by, *TABLE_HEAD]
    body = [_flat(r, by) for r in result["rows"]]
    total = _flat({**result["total"], **{k: "" for k in by}}, by)
    if by:
        total[0] = "TOTAL"
    return table.render(head, body, right=True, footer=total)


def format_csv(result: dict[str, Any], by: Sequence[str]) -> str:
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(
        [
            *by,
            "cases",
            "evaluations",
            *LEVEL_IDS,
            "evaluation_rate",
            "satisfaction_rate",
            "bad_rate",
            "mean_score",
            "ignored",
            "flagged",
            "invalid",
            "refused",
            "events",
            "tickets",
            "valid_tickets",
            "rectified",
            "rectification_rate",
        ]
    )
    for r in [*result["rows"], {**result["total"], **{k: "TOTAL" for k in by[:1]}}]:
        writer.writerow(
            [
                *(r.get(k, "") for k in by),
                r["cases"],
                r["evaluations"],
                *(r["levels"][lv] for lv in LEVEL_IDS),
                r["evaluation_rate"],
                r["satisfaction_rate"],
                r["bad_rate"],
                r["mean_score"],
                r["ignored"],
                r["flagged"],
                r["invalid"],
                r["refused"],
                r["events"],
                r["tickets"],
                r["valid_tickets"],
                r["rectified"],
                r["rectification_rate"],
            ]
        )
    return out.getvalue()


def render(result: dict[str, Any], by: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=1)
    if fmt == "csv":
        return format_csv(result, by)
    return format_table(result, by)
