"""The published rankings (:mod:`hub.rankings`) as a printable Chinese HTML page, as CSV for
spreadsheets, and as a text table.

HTML: self-contained (no script, font or chart from the network), A4 landscape when printed,
the table's heading row repeated on every page, the chart on a page of its own; charts are
server-side SVG. CSV: one table per file, UTF-8 with a byte-order mark (Excel then reads the
Chinese), numbers as plain numbers (rates as percentages with the unit in the heading, no ``%``
sign or thousands separator in a cell), an empty cell where a figure has no denominator, text
cells neutralised against formulas (:mod:`hub.spreadsheet`).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
from typing import Any

from protocol.levels import Level

from . import table
from .rankings import COLUMNS, Column
from .spreadsheet import SafeWriter

BOM = "\ufeff"
TITLES = {"monthly": "窗口月度排名", "difficult": "最难办窗口"}


def title(rep: dict[str, Any]) -> str:
    return f"{TITLES[rep['kind']]} · {_period_zh(rep['period'])}"


def _period_zh(label: str) -> str:
    """``2026-11`` → 2026年11月, ``2026-Q4`` → 2026年第四季度, else unchanged."""
    year, _, rest = label.partition("-")
    if rest.isdigit():
        return f"{year}年{int(rest)}月"
    if rest.startswith("Q") and rest[1:] in ("1", "2", "3", "4"):
        return f"{year}年第{'一二三四'[int(rest[1:]) - 1]}季度"
    return label


# --- CSV ---------------------------------------------------------------------------------------


def csv_head(col: Column) -> str:
    return f"{col.head}(%)" if col.kind == "rate" else col.head


def csv_cell(col: Column, value: Any) -> Any:
    if value is None:
        return ""
    if col.kind == "rate":
        return round(value * 100, 2)
    if col.kind == "score":
        return round(value, 2)
    return value


def format_csv(rep: dict[str, Any]) -> str:
    """The ranking as one CSV table, byte-order mark first."""
    cols = COLUMNS[rep["kind"]]
    out = io.StringIO()
    out.write(BOM)
    writer = SafeWriter(out)
    writer.writerow(csv_head(c) for c in cols)
    writer.writerows([csv_cell(c, row[c.key]) for c in cols] for row in rep["rows"])
    return out.getvalue()


# --- text table --------------------------------------------------------------------------------


def shown(col: Column, value: Any) -> str:
    if value is None:
        return "—"
    if col.kind == "rate":
        return f"{value * 100:.1f}%"
    if col.kind == "score":
        return f"{value:.2f}"
    return str(value) if value != "" else "—"


def format_table(rep: dict[str, Any]) -> str:
    cols = COLUMNS[rep["kind"]]
    head = [c.head for c in cols]
    body = [[shown(c, row[c.key]) for c in cols] for row in rep["rows"]]
    heading = f"{rep['hall']} {title(rep)} ({rep['from']} … {rep['to']})"
    if not body:
        return "\n".join([heading, table.render(head, []).splitlines()[0], "（无）"])
    return "\n".join([heading, table.render(head, body)])


# --- HTML --------------------------------------------------------------------------------------

_STYLE = """
body { font-family: "Noto Sans CJK SC", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC", sans-serif;
  color: #1d2733; margin: 24px auto; max-width: 1280px; padding: 0 16px; font-size: 15px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 18px 0 8px; }
.meta { color: #556; margin: 0 0 12px; }
.kpi { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 22px; margin: 8px 0 14px; padding: 10px 14px;
  background: #f4f6f8; border-radius: 6px; }
.kpi b { font-size: 19px; margin-left: 4px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #c9d0d8; padding: 4px 7px; text-align: right; white-space: nowrap; }
th { background: #e9edf1; font-weight: 600; }
td.text, th.text { text-align: left; white-space: normal; }
tr.unranked td { color: #778; }
.note { color: #556; font-size: 13px; line-height: 1.6; }
svg text { font-size: 13px; fill: #1d2733; }
@page { size: A4 landscape; margin: 12mm 10mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 10pt; }
  h1 { font-size: 16pt; } h2 { font-size: 12pt; }
  .page { break-before: page; }
  thead { display: table-header-group; }
  tr, .kpi, .chart { break-inside: avoid; }
  .chart svg { width: auto; height: auto; max-width: 100%; max-height: 165mm; }
  th { background: #e9edf1; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _td(col: Column, value: Any) -> str:
    cls = ' class="text"' if col.kind == "text" else ""
    return f"<td{cls}>{html.escape(shown(col, value))}</td>"


def _table(rep: dict[str, Any]) -> str:
    cols = COLUMNS[rep["kind"]]
    head = "".join(f"<th{' class=text' if c.kind == 'text' else ''}>{html.escape(c.head)}</th>" for c in cols)
    rows = []
    for row in rep["rows"]:
        cls = ' class="unranked"' if row["rank"] is None else ""
        rows.append(f"<tr{cls}>" + "".join(_td(c, row[c.key]) for c in cols) + "</tr>")
    body = "".join(rows) or f'<tr><td class="text" colspan="{len(cols)}">（无符合条件的窗口）</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kpis(total: dict[str, Any]) -> str:
    pct = Column("", "", "rate")
    items = [
        ("办件量", str(total["cases"])),
        ("评价数", str(total["ratings"])),
        ("评价率", shown(pct, total["evaluation_rate"])),
        ("满意率", shown(pct, total["satisfaction_rate"])),
        ("差评数", str(total["bad"])),
        ("差评率", shown(pct, total["bad_rate"])),
        ("平均分", shown(Column("", "", "score"), total["mean_score"])),
        ("整改率", shown(pct, total["rectification_rate"])),
    ]
    return '<div class="kpi">全厅' + "".join(f"<span>{k}<b>{html.escape(v)}</b></span>" for k, v in items) + "</div>"


def bar_chart(pairs: list[tuple[str, float]], colour: str, label_width: int = 220) -> str:
    """Horizontal bars as inline SVG; values are fractions, shown as percentages of the full bar."""
    if not pairs:
        return '<p class="note">（无数据）</p>'
    h, span, rows = 24, 560, []
    for i, (label, value) in enumerate(pairs):
        w = span * max(0.0, min(value, 1.0))
        y = i * h
        short = label if len(label) <= 14 else label[:13] + "…"
        rows.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{html.escape(short)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="17" fill="{colour}"/>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + 16}">{value * 100:.1f}%</text>'
        )
    width = label_width + span + 70
    return (
        f'<svg width="{width}" height="{len(pairs) * h + 4}" viewBox="0 0 {width} {len(pairs) * h + 4}" '
        f'role="img">{"".join(rows)}</svg>'
    )


def _chart(rep: dict[str, Any]) -> str:
    if rep["kind"] == "difficult":
        pairs = [(r["name"], r["bad_rate"]) for r in rep["rows"]]
        return f'<div class="chart"><h2>差评率</h2>{bar_chart(pairs, "#c0392b")}</div>'
    pairs = [(r["name"], r["satisfaction_rate"]) for r in rep["rows"] if r["rank"] is not None]
    return f'<div class="chart"><h2>满意率</h2>{bar_chart(pairs, "#2e7d4f")}</div>'


def _notes(rep: dict[str, Any]) -> str:
    floor = Level(rep["threshold"]).label_zh
    lines = [
        "评价数：统计期内的有效评价（标记为疑似刷评的评价不计入各项比率）。",
        "评价率 = 已评价办件 ÷ 办件量；满意率 = " + floor + "及以上 ÷ 评价数；差评率 = (不满意 + 非常不满意) ÷ 评价数；"
        "平均分按 非常满意 5 分 … 非常不满意 1 分计。",
        "整改率 = 已反馈整改的差评 ÷ 核实有效的差评（按差评发生日期归入统计期）。",
    ]
    if rep["kind"] == "monthly":
        lines.append(
            "排名依次按满意率、平均分（高者在前）和差评率（低者在前）；三项相同的窗口并列；本月无评价的窗口列于末尾，不排名。"
        )
    else:
        lines.append(
            f"入选条件：统计期内评价数不少于 {rep['min_ratings']} 条且有差评（全厅 {rep['windows']} 个窗口中 "
            f"{rep['eligible']} 个符合条件）；按差评率从高到低取前 {rep['top']} 名，末位并列的窗口一并列出。"
        )
    return '<div class="note"><h2>统计口径</h2>' + "".join(f"<p>{html.escape(x)}</p>" for x in lines) + "</div>"


def format_html(rep: dict[str, Any], generated: dt.datetime | None = None) -> str:
    name = title(rep)
    stamp = f" · 生成于 {generated:%Y-%m-%d %H:%M}" if generated else ""
    meta = f"大厅 {rep['hall']} · 统计期 {rep['from']} 至 {rep['to']}{stamp}"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{html.escape(f"好差评 {name} {rep['hall']}")}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(name)}</h1>
<p class="meta">{html.escape(meta)}</p>
{_kpis(rep["total"])}
<section>{_table(rep)}</section>
<section class="page">{_chart(rep)}{_notes(rep)}</section>
</body></html>
"""


def render(rep: dict[str, Any], fmt: str, generated: dt.datetime | None = None) -> str:
    if fmt == "json":
        return json.dumps(rep, ensure_ascii=False, indent=1)
    if fmt == "csv":
        return format_csv(rep)
    if fmt == "html":
        return format_html(rep, generated)
    return format_table(rep)
