"""Period reports for supervisors, in Chinese and by window name: rates per window and item, the
windows by bad-review rate, reasons, the work queue (the published lists, 窗口月度排名 and
最难办窗口, are :mod:`hub.rankings`).

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
from .rankings import Column
from .rankings_render import BOM, csv_cell, csv_head, shown
from .spreadsheet import SafeWriter
from .stats import stats
from .store import Store
from .store.registry import list_items, list_windows

REASON_ZH = {
    "cold": "冷（态度冷漠）",
    "lazy": "懒（效率低下）",
    "shirk": "推（推诿扯皮）",
    "arbitrary": "乱（乱收费乱作为）",
    "greedy": "贪（吃拿卡要）",
    "other": "其他",
    "unspecified": "未选择",
}


def build(store: Store, config: HubConfig, period: str, day: dt.date, today: dt.date) -> dict[str, Any]:
    """The report as one JSON-ready dict; windows and items carry their names, windows their department."""
    start, end, label = period_range(period, day)
    th = config.satisfaction_threshold
    registry = {w["window"]: w for w in list_windows(store)}
    item_names = {i["item"]: i["name"] for i in list_items(store)}
    windows = stats(store, ["window"], start, end, th)
    for row in windows["rows"]:
        row["name"] = registry.get(row["window"], {}).get("name") or row["window"]
        row["dept"] = registry.get(row["window"], {}).get("dept") or ""
    items = stats(store, ["item"], start, end, th)
    for row in items["rows"]:
        row["name"] = item_names.get(row["item"], "")
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
            {
                "rank": i + 1,
                "window": r["window"],
                "name": r["name"],
                "bad_rate": r["bad_rate"],
                "evaluations": r["evaluations"],
            }
            for i, r in enumerate(ranking)
        ],
        "reasons": dict(reasons.most_common()),
        "work_queue": tickets.rectification(store, start, end),
        "overdue": [
            {
                **{k: t[k] for k in ("id", "ticket_no", "window", "state", "assignee", "opened_day", "deadline")},
                "name": registry.get(t["window"], {}).get("name") or t["window"],
            }
            for t in overdue
        ],
    }


_RATES = [
    Column("办件量", "cases"),
    Column("评价数", "evaluations"),
    Column("评价率", "evaluation_rate", "rate"),
    Column("满意率", "satisfaction_rate", "rate"),
    Column("差评率", "bad_rate", "rate"),
    Column("平均分", "mean_score", "score"),
    Column("差评工单", "tickets"),
    Column("整改率", "rectification_rate", "rate"),
]
_WINDOW = [Column("窗口编号", "window", "text"), Column("窗口名称", "name", "text"), Column("部门", "dept", "text")]
STATE_ZH = {"registered": "已登记", "assigned": "已转办", "verified": "已核实", "feedback": "已反馈"}
Section = tuple[str, list[Column], list[dict[str, Any]]]


def _sections(rep: dict[str, Any]) -> list[Section]:
    """(title, columns, rows) of every table, rows holding raw values (rates as fractions)."""
    reasons = [{"reason": REASON_ZH.get(k, k), "count": v} for k, v in rep["reasons"].items()]
    overdue = [{**t, "state": STATE_ZH.get(t["state"], t["state"]), "assignee": t["assignee"] or ""}
               for t in rep["overdue"]]  # fmt: skip
    return [
        ("窗口", [*_WINDOW, *_RATES], rep["windows"]),
        ("事项", [Column("事项编码", "item", "text"), Column("事项名称", "name", "text"), *_RATES], rep["items"]),
        ("差评率排名", [Column("排名", "rank"), *_WINDOW[:2], Column("差评率", "bad_rate", "rate"),
                        Column("评价数", "evaluations")], rep["ranking"]),
        ("差评原因", [Column("原因", "reason", "text"), Column("次数", "count")], reasons),
        ("差评处置", [Column("差评工单", "tickets"), Column("未办结", "open"), Column("有效", "valid"),
                      Column("无效", "invalid"), Column("已反馈", "feedback"),
                      Column("整改率", "rectification_rate", "rate")], [rep["work_queue"]]),
        ("超期工单", [Column("工单", "ticket_no", "text"), *_WINDOW[:2], Column("状态", "state", "text"),
                      Column("承办人", "assignee", "text"), Column("登记日期", "opened_day", "text"),
                      Column("办理期限", "deadline", "text")], overdue),
    ]  # fmt: skip


def _table(head: list[str], rows: list[list[str]]) -> str:
    return table.render(head, rows)


def _shown_rows(cols: list[Column], rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[shown(c, r.get(c.key)) for c in cols] for r in rows]


def _summary(rep: dict[str, Any]) -> str:
    t = rep["total"]
    return (
        f"评价 {t['evaluations']} · 满意率 {_pct(t['satisfaction_rate'])} · 差评率 {_pct(t['bad_rate'])} · "
        f"评价率 {_pct(t['evaluation_rate'])} · 整改率 {_pct(rep['work_queue']['rectification_rate'])}"
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def format_table(rep: dict[str, Any]) -> str:
    out = [f"大厅 {rep['hall']} · {rep['period']}（{rep['from']} 至 {rep['to']}）：{_summary(rep)}"]
    for title, cols, rows in _sections(rep):
        body = _table([c.head for c in cols], _shown_rows(cols, rows)) if rows else "（无）"
        out += ["", f"## {title}", body]
    return "\n".join(out)


def csv_files(rep: dict[str, Any]) -> dict[str, str]:
    """One CSV per table (file name → text), for ``--out`` a folder: each opens in a spreadsheet
    as one sheet with its own header row; numbers as numbers, rates as percentages."""
    files = {}
    for n, (title, cols, rows) in enumerate(_sections(rep), start=1):
        buf = io.StringIO()
        buf.write(BOM)
        writer = SafeWriter(buf)
        writer.writerow([csv_head(c) for c in cols])
        writer.writerows([csv_cell(c, r.get(c.key)) for c in cols] for r in rows)
        files[f"{n:02d}-{title}.csv"] = buf.getvalue()
    return files


def format_csv(rep: dict[str, Any]) -> str:
    """Every table one after the other, each under a row naming it (:func:`csv_files` and
    ``--kind monthly``/``difficult`` give one table per file); numbers as numbers, rates as
    percentages."""
    buf = io.StringIO()
    buf.write(BOM)
    writer = SafeWriter(buf)
    for title, cols, rows in _sections(rep):
        writer.writerow(["表", *(csv_head(c) for c in cols)])
        writer.writerows([title, *(csv_cell(c, r.get(c.key)) for c in cols)] for r in rows)
    return buf.getvalue()


def _bars(pairs: list[tuple[str, float]], unit: str, colour: str) -> str:
    """A horizontal bar chart as inline SVG; values are fractions (unit %) or counts."""
    if not pairs:
        return "<p>（无）</p>"
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


def _html_table(cols: list[Column], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th{' class=text' if c.kind == 'text' else ''}>{html.escape(c.head)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=text" if c.kind == "text" else ""}>{html.escape(shown(c, r.get(c.key)))}</td>'
                         for c in cols) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if rows else "<p>（无）</p>"


def format_html(rep: dict[str, Any]) -> str:
    t = rep["total"]
    ranking = [(r["name"], r["bad_rate"]) for r in rep["ranking"][:15]]
    reasons = [(REASON_ZH.get(k, k), float(v)) for k, v in rep["reasons"].items()]
    tables = "".join(
        f'<section class="block"><h2>{html.escape(title)}</h2>{_html_table(cols, rows)}</section>'
        for title, cols, rows in _sections(rep)
    )
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>好差评报告 {html.escape(rep["hall"])} {html.escape(rep["period"])}</title>
<style>body{{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei",sans-serif;margin:2em;max-width:72em}}
table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}th{{background:#eee}}.text{{text-align:left}}
.kpi span{{margin-right:2em}}
@page{{size:A4 landscape;margin:12mm 10mm}}
@media print{{body{{margin:0;max-width:none;font-size:10pt}}thead{{display:table-header-group}}
tr,svg,.block{{break-inside:avoid}}.tables{{break-before:page}}}}</style>
</head><body><h1>好差评报告 {html.escape(rep["hall"])} · {html.escape(rep["period"])}</h1>
<p>统计期 {html.escape(rep["from"])} 至 {html.escape(rep["to"])}</p>
<p class="kpi"><span>评价 {t["evaluations"]}</span><span>满意率 {_pct(t["satisfaction_rate"])}</span>
<span>差评率 {_pct(t["bad_rate"])}</span><span>评价率 {_pct(t["evaluation_rate"])}</span>
<span>整改率 {_pct(rep["work_queue"]["rectification_rate"])}</span></p>
<h2>评价等级分布</h2>{_levels_chart(t["levels"])}
<h2>窗口差评率</h2>{_bars(ranking, "%", "#c0504d")}
<h2>差评原因</h2>{_bars(reasons, "", "#9b7fbf")}
<div class="tables">{tables}</div></body></html>
"""


def render(rep: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rep, ensure_ascii=False, indent=1)
    if fmt == "csv":
        return format_csv(rep)
    if fmt == "html":
        return format_html(rep)
    return format_table(rep)
