"""Period reports for supervisors: rates per window and item, the window ranking by bad-review
rate (the "most difficult windows" list some cities publish), reasons, the work queue.

Everything is read from the counters and the ticket table (reasons are those of the bad reviews,
which are exactly the tickets), so a quarter costs about as much as a day. Output as a text
table, CSV, or a self-contained HTML page with inline SVG charts (no network, no CDN).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
from collections import Counter
from typing import Any

from protocol.levels import LEVEL_IDS, Level

from . import table, tickets
from .config import HubConfig
from .periods import period_range
from .spreadsheet import SafeWriter
from .stats import stats
from .store import Store

REASON_ZH = {"cold": "冷", "lazy": "懒", "shirk": "推", "arbitrary": "乱", "greedy": "贪", "other": "其他",
             "unspecified": "未选择"}  # fmt: skip


def build(store: Store, config: HubConfig, period: str, day: dt.date, today: dt.date) -> dict[str, Any]:
    """The report as one JSON-ready dict."""
    start, end, label = period_range(period, day)
    th = config.satisfaction_threshold
    windows = stats(store, ["window"], start, end, th)
    items = stats(store, ["item"], start, end, th)
    ranking = sorted(
        (r for r in windows["rows"] if r["bad_rate"] is not None),
        key=lambda r: (-r["bad_rate"], -r["evaluations"], r["window"]),
    )
    in_period = tickets.list_tickets(store, config.tickets, today, start=start, end=end)
    reasons: Counter[str] = Counter(x for t in in_period for x in (t["reasons"] or ["unspecified"]))
    overdue = tickets.list_tickets(store, config.tickets, today, overdue=True)
    return {
        "hall": config.hall,
        "period": label,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "total": windows["total"],
        "windows": windows["rows"],
        "items": items["rows"],
        "ranking": [
            {"rank": i + 1, "window": r["window"], "bad_rate": r["bad_rate"], "evaluations": r["evaluations"]}
            for i, r in enumerate(ranking)
        ],
        "reasons": dict(reasons.most_common()),
        "work_queue": tickets.rectification(store, start, end),
        "overdue": [
            {k: t[k] for k in ("id", "ticket_no", "window", "state", "assignee", "opened_day", "deadline")}
            for t in overdue
        ],
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def _rate_rows(rows: list[dict[str, Any]], key: str) -> list[list[str]]:
    return [[str(r[key]) or "(none)", *_rates(r)] for r in rows]


def _rates(r: dict[str, Any]) -> list[str]:
    mean = "—" if r["mean_score"] is None else f"{r['mean_score']:.2f}"
    return [str(r["cases"]), str(r["evaluations"]), _pct(r["evaluation_rate"]), _pct(r["satisfaction_rate"]),
            _pct(r["bad_rate"]), mean, str(r["tickets"]), _pct(r["rectification_rate"])]  # fmt: skip


_RATE_HEAD = ["cases", "evaluations", "eval%", "satisfied%", "bad%", "mean", "tickets", "rectified%"]


def _sections(rep: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    wq = rep["work_queue"]
    return [
        ("Windows", ["window", *_RATE_HEAD], _rate_rows(rep["windows"], "window")),
        ("Items", ["item", *_RATE_HEAD], _rate_rows(rep["items"], "item")),
        ("Ranking by bad-review rate", ["rank", "window", "bad%", "evaluations"],
         [[str(r["rank"]), r["window"], _pct(r["bad_rate"]), str(r["evaluations"])] for r in rep["ranking"]]),
        ("Reasons", ["reason", "count"], [[f"{k} {REASON_ZH.get(k, '')}".strip(), str(v)]
                                          for k, v in rep["reasons"].items()]),
        ("Work queue", ["tickets", "open", "valid", "invalid", "feedback", "rectification%"],
         [[str(wq["tickets"]), str(wq["open"]), str(wq["valid"]), str(wq["invalid"]), str(wq["feedback"]),
           _pct(wq["rectification_rate"])]]),
        ("Overdue tickets", ["id", "ticket", "window", "state", "assignee", "opened", "deadline"],
         [[str(t["id"]), t["ticket_no"], t["window"], t["state"], t["assignee"] or "", t["opened_day"], t["deadline"]]
          for t in rep["overdue"]]),
    ]  # fmt: skip


def _table(head: list[str], rows: list[list[str]]) -> str:
    return table.render(head, rows)


def format_table(rep: dict[str, Any]) -> str:
    t = rep["total"]
    out = [
        f"Hall {rep['hall']}, {rep['period']} ({rep['from']} … {rep['to']}): {t['evaluations']} evaluations, "
        f"satisfied {_pct(t['satisfaction_rate'])}, bad {_pct(t['bad_rate'])}, evaluated {_pct(t['evaluation_rate'])}"
    ]
    for title, head, rows in _sections(rep):
        out += ["", f"## {title}", _table(head, rows) if rows else "(none)"]
    return "\n".join(out)


def format_csv(rep: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = SafeWriter(buf)
    for title, head, rows in _sections(rep):
        writer.writerow(["section", *head])
        writer.writerows([title, *r] for r in rows)
    return buf.getvalue()


def _bars(pairs: list[tuple[str, float]], unit: str, colour: str) -> str:
    """A horizontal bar chart as inline SVG; values are fractions (unit %) or counts."""
    if not pairs:
        return "<p>(none)</p>"
    top = max((v for _, v in pairs), default=0) or 1
    h, rows = 22, []
    for i, (label, value) in enumerate(pairs):
        w = 300 * value / top
        text = f"{value * 100:.1f}%" if unit == "%" else f"{value:g}"
        rows.append(
            f'<text x="0" y="{i * h + 15}">{html.escape(label)}</text>'
            f'<rect x="130" y="{i * h + 3}" width="{w:.1f}" height="16" fill="{colour}"/>'
            f'<text x="{136 + w:.1f}" y="{i * h + 15}">{text}</text>'
        )
    return f'<svg width="520" height="{len(pairs) * h + 4}" font-size="12" role="img">{"".join(rows)}</svg>'


def _levels_chart(levels: dict[str, int]) -> str:
    pairs = [(Level(lv).label_zh, float(levels.get(lv, 0))) for lv in LEVEL_IDS]
    return _bars(pairs, "", "#4a7dbf")


def format_html(rep: dict[str, Any]) -> str:
    t = rep["total"]
    ranking = [(r["window"], r["bad_rate"]) for r in rep["ranking"][:15]]
    reasons = [(f"{k} {REASON_ZH.get(k, '')}", float(v)) for k, v in rep["reasons"].items()]
    tables = "".join(
        f"<h2>{html.escape(title)}</h2><table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>"
        for title, head, rows in _sections(rep)
    )
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<title>好差评 report {html.escape(rep["hall"])} {html.escape(rep["period"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}th{{background:#eee}}
.kpi span{{margin-right:2em}}</style>
</head><body><h1>好差评 {html.escape(rep["hall"])} — {html.escape(rep["period"])}</h1>
<p>{html.escape(rep["from"])} … {html.escape(rep["to"])}</p>
<p class="kpi"><span>evaluations {t["evaluations"]}</span><span>satisfied {_pct(t["satisfaction_rate"])}</span>
<span>bad {_pct(t["bad_rate"])}</span><span>evaluated {_pct(t["evaluation_rate"])}</span>
<span>rectified {_pct(rep["work_queue"]["rectification_rate"])}</span></p>
<h2>Levels</h2>{_levels_chart(t["levels"])}
<h2>Windows by bad-review rate</h2>{_bars(ranking, "%", "#c0504d")}
<h2>Reasons</h2>{_bars(reasons, "", "#9b7fbf")}
{tables}</body></html>
"""


def render(rep: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rep, ensure_ascii=False, indent=1)
    if fmt == "csv":
        return format_csv(rep)
    if fmt == "html":
        return format_html(rep)
    return format_table(rep)
