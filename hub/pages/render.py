"""HTML fragments of the Today and windows/staff pages: pure functions from the data objects of
:mod:`.today` and :mod:`.drill` to escaped HTML, Chinese labels, charts from :mod:`.charts`.

The console shell (:mod:`hub.http.console.shell`) puts a fragment inside its layout.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from protocol.levels import LEVEL_IDS, Level

from .charts import LEVEL_COLOURS, bar_chart, level_bar, line_chart
from .drill import GRAINS, Period, Point
from .terminals import Terminal
from .today import Today, WindowCard

CONSOLE = "/console"
REFRESH_S = 60
GRAIN_ZH = {"day": "按日", "week": "按周", "month": "按月"}

#: Styles of these pages, on top of the shell's.
STYLE = """<style>
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:16px}
.tile{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 3px rgba(0,0,0,.1)}
.tile .k{font-size:13px;color:#556}.tile .v{font-size:26px;font-weight:bold;margin-top:2px;white-space:nowrap}
.tile .s{font-size:12px;color:#778}.tile.alarm{border-left:5px solid #c62828}.tile.alarm .v{color:#c62828}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin-top:8px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px}
.card{background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 3px rgba(0,0,0,.1);
 border-top:4px solid #2e7d32}
.card.silent{border-top-color:#c62828;background:#fff5f5}
.card h3{margin:0;font-size:17px;display:flex;justify-content:space-between;gap:8px}
.card h3 small{font-size:12px;color:#778;font-weight:normal;white-space:nowrap}
.card .fig{display:flex;gap:12px;margin:6px 0;font-size:14px;flex-wrap:wrap}
.card .fig b{font-size:18px}.card .term{font-size:13px;margin-top:6px;color:#445}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;line-height:20px;white-space:nowrap}
.b-on{background:#e8f5e9;color:#1b5e20}.b-off{background:#c62828;color:#fff;font-weight:bold}
.warn{background:#fff3e0;color:#e65100}
tr.silent td{background:#fdecea}tr.silent td:first-child{border-left:5px solid #c62828}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
form.filter{display:flex;flex-wrap:wrap;align-items:center;gap:4px 8px}
input[type=date]{font:inherit;padding:4px 6px;border:1px solid #b8c0c8;border-radius:4px}
</style>"""


# -- formatting -------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def clock(ms: int | None, tz: ZoneInfo, now_ms: int) -> str:
    """A time as people read it on a console: ``HH:MM`` today, else ``MM-DD HH:MM``; — for none."""
    if ms is None:
        return "—"
    when = dt.datetime.fromtimestamp(ms / 1000, tz)
    today = dt.datetime.fromtimestamp(now_ms / 1000, tz).date()
    return when.strftime("%H:%M" if when.date() == today else "%Y-%m-%d %H:%M")


def ago(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "从未"
    s = max(0, now_ms - ms) // 1000
    if s < 60:
        return "刚刚"
    if s < 3600:
        return f"{s // 60} 分钟前"
    if s < 86400:
        return f"{s // 3600} 小时前"
    return f"{s // 86400} 天前"


def tile(key: str, value: str, sub: str = "", alarm: bool = False) -> str:
    cls = "tile alarm" if alarm else "tile"
    sub_html = f'<div class="s">{escape(sub)}</div>' if sub else ""
    return f'<div class="{cls}"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div>{sub_html}</div>'


def levels_block(levels: dict[str, int]) -> str:
    """The level distribution bar with a legend of counts and shares."""
    total = sum(levels.values())
    items = "".join(
        f'<span><i style="background:{LEVEL_COLOURS[lv]}"></i>{Level(lv).label_zh} '
        f"<b>{levels[lv]}</b>{f'（{levels[lv] / total:.1%}）' if total else ''}</span>"
        for lv in LEVEL_IDS
    )
    return f'{level_bar(levels)}<div class="legend">{items}</div>'


def terminal_badge(t: Terminal) -> str:
    if t.online is True and not t.silent:
        return '<span class="badge b-on">在线</span>'
    text = "从未上线" if t.online is None else "离线" if t.online is False else "无响应"
    return f'<span class="badge b-off">⚠ {text}</span>'


# -- Today ---------------------------------------------------------------------------------------


def today_html(t: Today, tz: ZoneInfo, now_ms: int) -> str:
    total = t.total
    tiles = "".join(
        [
            tile("办件数", str(total["cases"])),
            tile("评价数", str(total["evaluations"]), f"评价率 {pct(total['evaluation_rate'])}"),
            tile("平均分（满分 5）", score(total["mean_score"])),
            tile("满意率", pct(total["satisfaction_rate"]), f"差评率 {pct(total['bad_rate'])}"),
            tile("差评待处理", str(t.tickets_open), f"其中超期 {t.tickets_overdue}", alarm=t.tickets_overdue > 0),
            tile(
                "终端在线",
                f"{t.terminals_online} / {t.terminals_total}",
                f"无响应 {t.terminals_silent}",
                alarm=t.terminals_silent > 0,
            ),
        ]
    )
    levels = f"<section><h2>今日评价等级分布</h2>{levels_block(total['levels'])}</section>"
    cards = "".join(window_card(c, tz, now_ms) for c in t.windows) or '<p class="muted">尚未登记窗口。</p>'
    # the screen a supervisor leaves open: it reloads itself every minute (browsers honour this in the body)
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_S}">'
    when = f"{t.day.isoformat()}（大厅本地日期），{clock(now_ms, tz, now_ms)} 更新，每分钟自动刷新"
    head = f'{refresh}<p class="muted">{when}</p>'
    windows = f'<section><h2>各窗口</h2><div class="cards">{cards}</div></section>'
    return f'{STYLE}{head}<div class="tiles">{tiles}</div>{levels}{windows}'


def window_card(c: WindowCard, tz: ZoneInfo, now_ms: int) -> str:
    f = c.figures
    silent = any(t.silent for t in c.terminals) or not c.terminals
    terms = (
        "".join(
            f'<div class="term">{terminal_badge(t)} {escape(t.device)} · 最后按键 {clock(t.last_press_ms, tz, now_ms)}'
            f" · 积压 {'—' if t.backlog is None else t.backlog}</div>"
            for t in c.terminals
        )
        or '<div class="term"><span class="badge b-off">⚠ 未配终端</span></div>'
    )
    dept = f" · {escape(c.dept)}" if c.dept else ""
    link = f"{CONSOLE}/windows?window={quote(c.window)}"
    return (
        f'<div class="card{" silent" if silent else ""}"><h3><a href="{escape(link)}">{escape(c.name)}</a>'
        f"<small>{escape(c.window)}{dept}</small></h3>"
        f'<div class="fig"><span>评价 <b>{f["evaluations"]}</b></span>'
        f"<span>平均分 <b>{score(f['mean_score'])}</b></span>"
        f"<span>满意率 <b>{pct(f['satisfaction_rate'])}</b></span></div>"
        f"{level_bar(f['levels'], height=10)}{terms}</div>"
    )


# -- windows and staff ----------------------------------------------------------------------------


def filter_form(action: str, period: Period | None, choice: tuple[str, list[tuple[str, str]], str | None]) -> str:
    """Dates, grain and one select (``choice``: field name, (value, label) options, selected)."""
    name, options, selected = choice
    start = period.start.isoformat() if period else ""
    end = period.end.isoformat() if period else ""
    grains = "".join(
        f'<option value="{g}"{" selected" if period and period.grain == g else ""}>{GRAIN_ZH[g]}</option>'
        for g in GRAINS
    )
    opts = "".join(
        f'<option value="{escape(v)}"{" selected" if v == selected else ""}>{escape(label)}</option>'
        for v, label in [("", "全部"), *options]
    )
    return (
        f'<form class="filter" method="get" action="{escape(action)}">'
        f'<label>开始 <input type="date" name="from" value="{start}"></label>'
        f'<label>结束 <input type="date" name="to" value="{end}"></label>'
        f'<label>趋势 <select name="grain">{grains}</select></label>'
        f'<label>{"窗口" if name == "window" else "工作人员"} <select name="{name}">{opts}</select></label>'
        '<button type="submit">查看</button></form>'
    )


def trend_charts(points: Sequence[Point], who: str) -> str:
    evaluations = [(p.label, float(p.figures["evaluations"])) for p in points]
    means = [(p.label, p.figures["mean_score"]) for p in points]
    bad = [(p.label, p.figures["bad_rate"]) for p in points]
    top_bad = max((v for _, v in bad if v is not None), default=0.0)
    return (
        f'<div class="charts"><div>{bar_chart(evaluations, f"{who} · 评价数", lambda v: f"{v:.0f}")}</div>'
        f"<div>{line_chart(means, f'{who} · 平均分', 1, 5, lambda v: f'{v:.2f}')}</div>"
        f"<div>{line_chart(bad, f'{who} · 差评率', 0, max(0.1, top_bad), lambda v: f'{v:.0%}', '#ef6c00')}</div></div>"
    )


_FIGURE_HEAD = ("办件", "评价", "评价率", "满意率", "差评率", "平均分", *(Level(lv).label_zh for lv in LEVEL_IDS))


def figure_cells(row: dict[str, Any]) -> str:
    cells = [
        str(row["cases"]),
        str(row["evaluations"]),
        pct(row["evaluation_rate"]),
        pct(row["satisfaction_rate"]),
        pct(row["bad_rate"]),
        score(row["mean_score"]),
        *(str(row["levels"][lv]) for lv in LEVEL_IDS),
    ]
    return "".join(f'<td class="num">{c}</td>' for c in cells)


def figure_head(*first: str) -> str:
    cells = [*(f"<th>{escape(h)}</th>" for h in first), *(f'<th class="num">{h}</th>' for h in _FIGURE_HEAD)]
    return f"<tr>{''.join(cells)}</tr>"


def windows_html(
    period: Period,
    rows: list[dict[str, Any]],
    total: dict[str, Any],
    points: Sequence[Point],
    selected: tuple[str, str] | None,
    staff_rows: list[dict[str, Any]] | None,
) -> str:
    """The windows drill-down; ``selected`` (id, name) narrows the trend; ``staff_rows`` None:
    the person may not see per-staff figures."""
    options = [(r["window"], f"{r['name']}（{r['window']}）") for r in rows]
    form = filter_form(f"{CONSOLE}/windows", period, ("window", options, selected[0] if selected else None))
    who = selected[1] if selected else "全大厅"
    sel_total = next((r for r in rows if selected and r["window"] == selected[0]), total)
    body = [
        f"{STYLE}<section>{form}</section>",
        f"<section><h2>{escape(who)} · {period.start} 至 {period.end} · {GRAIN_ZH[period.grain]}趋势</h2>"
        f"{trend_charts(points, who)}<h3>等级分布（{sel_total['evaluations']} 条评价）</h3>"
        f"{levels_block(sel_total['levels'])}</section>",
    ]
    lines = "".join(
        f'<tr><td><a href="{escape(_drill_link("windows", period, window=r["window"]))}">{escape(r["name"])}</a>'
        f' <span class="muted">{escape(r["window"])}</span></td>'
        f"<td>{escape(r['dept'] or '—')}</td>{figure_cells(r)}</tr>"
        for r in rows
    )
    body.append(
        f"<section><h2>各窗口</h2><table>{figure_head('窗口', '部门')}{lines}"
        f"<tr><th>合计</th><td></td>{figure_cells(total)}</tr></table></section>"
    )
    if selected and staff_rows is not None:
        body.append(f"<section><h2>{escape(who)} · 工作人员</h2>{staff_table_html(period, staff_rows)}</section>")
    return "".join(body)


def staff_table_html(period: Period, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">此时段没有记名的评价。</p>'
    lines = "".join(
        f'<tr><td><a href="{escape(_drill_link("staff", period, staff=r["staff"]))}">{escape(r["name"])}</a>'
        f"{_id_after_name(r['name'], r['staff'])}</td>{figure_cells(r)}</tr>"
        for r in rows
    )
    return f"<table>{figure_head('工作人员')}{lines}</table>"


def staff_html(
    period: Period, rows: list[dict[str, Any]], points: Sequence[Point], selected: tuple[str, str] | None
) -> str:
    options = [(r["staff"], f"{r['name']}（{r['staff']}）" if r["name"] != r["staff"] else r["staff"]) for r in rows]
    form = filter_form(f"{CONSOLE}/staff", period, ("staff", options, selected[0] if selected else None))
    who = selected[1] if selected else "全部工作人员"
    return (
        f"{STYLE}<section>{form}</section>"
        f"<section><h2>{escape(who)} · {period.start} 至 {period.end} · {GRAIN_ZH[period.grain]}趋势</h2>"
        f"{trend_charts(points, who)}</section>"
        f"<section><h2>工作人员</h2>{staff_table_html(period, rows)}</section>"
    )


def _id_after_name(name: str, ident: str) -> str:
    return "" if name == ident else f' <span class="muted">{escape(ident)}</span>'


def _drill_link(page: str, period: Period, **choice: str) -> str:
    query = {"from": period.start.isoformat(), "to": period.end.isoformat(), "grain": period.grain, **choice}
    return f"{CONSOLE}/{page}?{urlencode(query)}"


def error_html(message: str) -> str:
    return f'<p class="flash">{escape(message)}</p>'
