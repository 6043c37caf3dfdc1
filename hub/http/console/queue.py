"""The bad-review work queue in the browser: 登记 → 转办 → 核实 → 反馈, with appeal (申诉).

The list filters by department and state and shows each open ticket's working-day countdown to its
deadline (overdue in red); a handler sees only their department's tickets. A ticket's page shows
only the forms the person's role may use in the ticket's state; the changes go through
:mod:`hub.tickets` under the person's name, and the same check as the API's
(:func:`hub.http.tickets.may_change`) decides.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ... import tickets
from ...audit import read_audit
from ...auth import Person, can, in_scope
from ...config import HubConfig
from ...errors import NotFound, TicketStateError
from ...store import Store
from ..tickets import may_change
from .shell import (
    PREFIX,
    Page,
    config_of,
    csrf_field,
    esc,
    forbidden_page,
    form_data,
    local_time,
    person_of,
    redirect,
    render_page,
    with_store,
)

STATE_ZH = {
    "registered": "已登记",
    "assigned": "已转办",
    "appealed": "已申诉",
    "verified": "已核实",
    "feedback": "已反馈",
}
VERDICT_ZH = {"valid": "有效", "invalid": "无效"}
LEVEL_ZH = {"dissatisfied": "不满意", "very_dissatisfied": "非常不满意"}
REASON_ZH = {"cold": "冷（态度冷漠）", "lazy": "懒（办事拖拉）", "shirk": "推（推诿扯皮）", "arbitrary": "乱（乱作为）",
             "greedy": "贪（吃拿卡要）", "other": "其他", "unspecified": "未选择"}  # fmt: skip
ACTION_ZH = {"assign": "转办", "appeal": "申诉", "verify": "核实", "feedback": "反馈"}


def _today(config: HubConfig) -> dt.date:
    return dt.datetime.now(config.tz).date()


def countdown(ticket: dict[str, Any], config: HubConfig, today: dt.date) -> tuple[str, bool]:
    """The deadline as people read it: working days left, or overdue by; and whether overdue."""
    if ticket["closed_ms"] is not None:
        return "已办结", False
    cal = tickets.Calendar.from_settings(config.tickets)
    deadline = dt.date.fromisoformat(ticket["deadline"])
    lo, hi = sorted((today, deadline))
    days = sum(cal.is_workday(lo + dt.timedelta(days=n)) for n in range(1, (hi - lo).days + 1))
    if today > deadline:
        return f"已超期 {days} 个工作日", True
    return ("今天到期" if days == 0 else f"剩余 {days} 个工作日"), False


def _windows(store: Store) -> dict[str, tuple[str, str | None]]:
    return {w: (n, d) for w, n, d in store.conn.execute("SELECT id, name, dept FROM windows")}


def _departments(store: Store) -> list[str]:
    cur = store.conn.execute(
        "SELECT dept FROM windows WHERE dept IS NOT NULL UNION SELECT dept FROM tickets WHERE dept IS NOT NULL "
        "UNION SELECT dept FROM users WHERE dept IS NOT NULL ORDER BY 1"
    )
    return [d for (d,) in cur if d]


def _options(values: list[tuple[str, str]], chosen: str) -> str:
    return "".join(
        f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(label)}</option>' for v, label in values
    )


def _reasons(row: dict[str, Any]) -> str:
    return "、".join(REASON_ZH.get(r, r) for r in row["reasons"]) or "—"


def _state(row: dict[str, Any]) -> str:
    verdict = f"（{VERDICT_ZH[row['verdict']]}）" if row["verdict"] else ""
    return STATE_ZH.get(row["state"], row["state"]) + verdict


# -- the list ------------------------------------------------------------------------------------


#: At most this many tickets in the list (newest first); the filters narrow it down.
LIST_LIMIT = 500


async def ticket_list(request: Request) -> Response:
    person, config = person_of(request), config_of(request)
    today = _today(config)
    state = request.query_params.get("state") or None
    state = state if state in tickets.STATES else None
    dept = request.query_params.get("dept") or ""
    overdue = request.query_params.get("overdue") == "1"

    def load(store: Store) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str | None]], list[str]]:
        return tickets.list_tickets(store, config.tickets, today), _windows(store), _departments(store)

    every, windows, depts = await with_store(request, load)
    mine = [r for r in every if in_scope(person, r["department"]) and dept in ("", r["department"])]
    rows = [r for r in reversed(mine) if state in (None, r["state"]) and (r["overdue"] or not overdue)]
    body = _filters(person, depts, dept, state or "", overdue) + _summary(mine)
    body += _table(rows[:LIST_LIMIT], windows, config, today)
    if len(rows) > LIST_LIMIT:
        body += f'<p class="muted">只显示最新的 {LIST_LIMIT} 条（共 {len(rows)} 条），请用筛选缩小范围。</p>'
    return render_page(request, "差评工单", body)


def _summary(rows: list[dict[str, Any]]) -> str:
    """Counts of the person's tickets (department filter applied) by where they wait."""
    counts = {
        "待转办": sum(r["state"] == "registered" for r in rows),
        "待核实": sum(r["state"] in ("assigned", "appealed") for r in rows),
        "待反馈": sum(r["state"] == "verified" and r["closed_ms"] is None for r in rows),
        "已办结": sum(r["closed_ms"] is not None for r in rows),
    }
    late = sum(r["overdue"] for r in rows)
    cells = "".join(f"<span class=stat>{esc(k)} <b>{v}</b></span>" for k, v in counts.items())
    cells += f'<span class="stat{" overdue" if late else ""}">超期 <b>{late}</b></span>'
    return f'<section class="summary">{cells}</section>'


def _filters(person: Person, depts: list[str], dept: str, state: str, overdue: bool) -> str:
    if in_scope(person, None):
        dept_field = (
            '<label>部门 <select name="dept"><option value="">全部</option>'
            f"{_options([(d, d) for d in depts], dept)}</select></label>"
        )
    else:
        dept_field = f"<label>部门：{esc(person.dept or '')}</label>"
    states = _options([(s, STATE_ZH[s]) for s in tickets.STATES], state)
    checked = " checked" if overdue else ""
    return (
        f'<section><form method="get" action="{PREFIX}/tickets">{dept_field}'
        f'<label>状态 <select name="state"><option value="">全部</option>{states}</select></label>'
        f'<label><input type="checkbox" name="overdue" value="1"{checked}> 只看超期</label>'
        '<button type="submit">筛选</button></form></section>'
    )


def _table(rows: list[dict[str, Any]], windows: dict[str, tuple[str, str | None]], config: HubConfig,
           today: dt.date) -> str:  # fmt: skip
    if not rows:
        return '<section><p class="muted">没有符合条件的工单。</p></section>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("编号", "窗口", "部门", "评价", "原因", "状态", "承办人", "登记日期", "办理期限", "倒计时")
    )
    lines = []
    for r in rows:
        left, late = countdown(r, config, today)
        window = windows.get(r["window"], (r["window"], None))[0]
        cls = ' class="overdue"' if late else ""
        lines.append(
            f'<tr{cls}><td><a href="{PREFIX}/tickets/{r["id"]}">{esc(r["ticket_no"])}</a></td>'
            f"<td>{esc(window)}</td><td>{esc(r['department'] or '—')}</td>"
            f"<td>{esc(LEVEL_ZH.get(r['level'], r['level']))}</td><td>{esc(_reasons(r))}</td>"
            f"<td>{esc(_state(r))}</td><td>{esc(r['assignee'] or '—')}</td><td>{esc(r['opened_day'])}</td>"
            f"<td>{esc(r['deadline'])}</td><td>{esc(left)}</td></tr>"
        )
    return f"<section><table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table></section>"


# -- one ticket ----------------------------------------------------------------------------------


async def _load(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ticket and what its page shows beside it (window, departments, history); NotFound."""
    config = config_of(request)
    ref = request.path_params["ticket"]

    def load(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
        row = tickets.get_ticket(store, ref, config.tickets, _today(config))
        history = read_audit(store, config.tz, target=row["ticket_no"])
        return row, {"windows": _windows(store), "depts": _departments(store), "history": history}

    return await with_store(request, load)


async def ticket_detail(request: Request, message: str = "", status: int = 200) -> Response:
    person, config = person_of(request), config_of(request)
    try:
        row, extra = await _load(request)
    except NotFound:
        return render_page(request, "工单不存在", '<section><p class="flash">没有这个工单。</p></section>', 404)
    if not can(person, "ticket.read", row):
        return forbidden_page(request, "此工单不属于您的部门。")
    done = request.query_params.get("done", "")
    flash = f'<p class="flash">{esc(message)}</p>' if message else ""
    if not message and done in ACTION_ZH:
        flash = f'<p class="flash ok">已{ACTION_ZH[done]}。</p>'
    body = flash + _facts(request, row, extra, config) + _forms(request, person, row, extra["depts"])
    body += _history(request, extra["history"])
    return render_page(request, f"工单 {row['ticket_no']}", body, status)


def _facts(request: Request, row: dict[str, Any], extra: dict[str, Any], config: HubConfig) -> str:
    window_name, _ = extra["windows"].get(row["window"], (row["window"], None))
    left, late = countdown(row, config, _today(config))
    cls = ' class="overdue"' if late else ""
    facts = [
        ("状态", _state(row)),
        ("窗口", f"{window_name}（{row['window']}）"),
        ("部门", row["department"] or "—"),
        ("评价", LEVEL_ZH.get(row["level"], row["level"])),
        ("原因", _reasons(row)),
        ("办件编号", row["case_no"] or "—"),
        ("事项", row["item"] or "—"),
        ("工作人员", row["staff"] or "—"),
        ("承办人", row["assignee"] or "—"),
        ("申诉理由", row["appeal"] or "—"),
        ("整改反馈", row["feedback"] or "—"),
        ("登记时间", local_time(request, row["opened_ms"])),
        ("办理期限", row["deadline"]),
    ]
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    cells += f"<tr{cls}><th>倒计时</th><td>{esc(left)}</td></tr>"
    return f'<section><table class="facts">{cells}</table></section>'


def _form(request: Request, row: dict[str, Any], action: str, fields: str, button: str = "") -> str:
    return (
        f'<section><h2>{ACTION_ZH[action]}</h2><form method="post" action="{PREFIX}/tickets/{row["id"]}/{action}">'
        f"{csrf_field(request)}{fields}{button or f'<button type=submit>{ACTION_ZH[action]}</button>'}</form></section>"
    )


def _forms(request: Request, person: Person, row: dict[str, Any], depts: list[str]) -> str:
    state, out = row["state"], []
    if state in ("registered", "assigned") and may_change(person, "assign", row):
        if in_scope(person, None):
            choices = _options([("", "（不变）"), *((d, d) for d in depts)], "")
            dept = f'<label>转至部门 <select name="dept">{choices}</select></label>'
        else:
            dept = f"<label>部门：{esc(person.dept or '')}</label>"
        to = '<label>承办人 <input type="text" name="to" required maxlength="64"></label>'
        out.append(_form(request, row, "assign", to + dept))
    if state == "assigned" and may_change(person, "appeal", row):
        field = (
            '<label for="appeal-reason">申诉理由</label><textarea id="appeal-reason" name="reason" required></textarea>'
        )
        out.append(_form(request, row, "appeal", field))
    if state in ("assigned", "appealed") and may_change(person, "verify", row):
        buttons = '<button type="submit" name="valid" value="1">核实为有效差评</button> '
        if state == "appealed":
            buttons += '<button type="submit" name="valid" value="0" class="secondary">申诉成立，核实为无效</button>'
        out.append(_form(request, row, "verify", "", buttons))
    if state == "verified" and row["verdict"] == "valid" and may_change(person, "feedback", row):
        field = (
            '<label for="feedback-text">整改情况</label><textarea id="feedback-text" name="text" required></textarea>'
        )
        out.append(_form(request, row, "feedback", field))
    return "".join(out)


def _history(request: Request, history: list[dict[str, Any]]) -> str:
    if not history:
        return ""
    names = {"ticket.register": "登记", **{f"ticket.{a}": z for a, z in ACTION_ZH.items()}}
    lines = "".join(
        f"<tr><td>{esc(h['at'][:16].replace('T', ' '))}</td><td>{esc(h['actor'])}</td>"
        f"<td>{esc(names.get(h['action'], h['action']))}</td></tr>"
        for h in history
    )
    return (
        f"<section><h2>办理记录</h2><table><tr><th>时间</th><th>操作人</th><th>操作</th></tr>{lines}</table></section>"
    )


# -- changes -------------------------------------------------------------------------------------


def _call(action: str, form: dict[str, str]) -> Any:
    if action == "assign":
        return lambda s, ref, who: tickets.assign(s, ref, form.get("to", ""), form.get("dept") or None, who)
    if action == "appeal":
        return lambda s, ref, who: tickets.appeal(s, ref, form.get("reason", ""), who)
    if action == "verify":
        return lambda s, ref, who: tickets.verify(s, ref, form.get("valid") == "1", who)
    return lambda s, ref, who: tickets.feedback(s, ref, form.get("text", ""), who)


async def ticket_action(request: Request) -> Response:
    person, action = person_of(request), request.path_params["action"]
    if action not in ACTION_ZH:
        return render_page(request, "没有这个操作", '<section><p class="flash">没有这个操作。</p></section>', 404)
    form = await form_data(request)
    try:
        row, _extra = await _load(request)
    except NotFound:
        return render_page(request, "工单不存在", '<section><p class="flash">没有这个工单。</p></section>', 404)
    if not may_change(person, action, row, form.get("dept") or None):
        return forbidden_page(request, f"您无权对此工单执行“{ACTION_ZH[action]}”。")
    call = _call(action, form)
    try:
        await with_store(request, lambda s: call(s, str(row["id"]), person.name))
    except TicketStateError as exc:
        return await ticket_detail(request, f"未能{ACTION_ZH[action]}：{exc}", 409)
    except ValueError as exc:
        return await ticket_detail(request, f"未能{ACTION_ZH[action]}：{exc}", 422)
    return redirect(f"{PREFIX}/tickets/{row['id']}?done={action}")


PAGES: list[Page] = [
    Page("/tickets", ticket_list, "ticket.read", "差评工单"),
    Page("/tickets/{ticket}", ticket_detail, "ticket.read"),
    Page("/tickets/{ticket}/{action}", ticket_action, "ticket.read", methods=("POST",)),
]
