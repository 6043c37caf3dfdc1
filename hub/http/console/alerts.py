"""The alerts page (supervisor acts, auditor and technician read): live alerts with the forms to
acknowledge (a comment) and close, the ones closed lately, and the rules and webhooks ``hub.toml``
sets. Changes go through :mod:`hub.alerts.lifecycle` under the person's name (audit log)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...alert_settings import RULE_TITLES
from ...alerts import lifecycle
from ...alerts.lifecycle import AlertStateError, BadComment
from ...alerts.rules import describe
from ...auth import can
from ...errors import NotFound
from ...store import Store
from .shell import (
    PREFIX,
    Page,
    config_of,
    csrf_field,
    esc,
    form_data,
    local_time,
    person_of,
    redirect,
    render_page,
    with_store,
)

STATE_ZH = {"open": "待处理", "acknowledged": "已确认", "closed": "已关闭"}
CLOSED_ZH = {"cleared": "条件解除，自动关闭", "manual": "手动关闭"}
DONE_ZH = {"ack": "已确认告警。", "close": "已关闭告警。"}
KIND_ZH = {"json": "通用 JSON", "wecom": "企业微信群机器人", "dingtalk": "钉钉群机器人"}
RECENT = 30


def _load(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return lifecycle.list_alerts(store, "live"), lifecycle.list_alerts(store, "closed", RECENT)


async def alerts_page(request: Request, message: str = "", status: int = 200) -> Response:
    live, closed = await with_store(request, _load)
    act = can(person_of(request), "alerts.change")
    done = DONE_ZH.get(request.query_params.get("done", ""))
    flash = f'<p class="flash">{esc(message)}</p>' if message else (f'<p class="flash ok">{done}</p>' if done else "")
    body = flash + _live(request, live, act) + _closed(request, closed) + _rules(request)
    return render_page(request, "告警", body, status)


def _live(request: Request, rows: list[dict[str, Any]], act: bool) -> str:
    if not rows:
        return '<section><h2>当前告警</h2><p class="muted">没有待处理的告警。</p></section>'
    head = "".join(f"<th>{h}</th>" for h in ("编号", "类型", "情况", "开始时间", "状态", "确认人与意见"))
    head += "<th>操作</th>" if act else ""
    lines = []
    for a in rows:
        cls = ' class="overdue"' if a["state"] == "open" else ""
        acked = f"{esc(a['acked_by'] or '')}：{esc(a['comment'] or '')}" if a["acked_by"] else "—"
        forms = f"<td>{_forms(request, a)}</td>" if act else ""
        lines.append(
            f'<tr id="alert-{a["id"]}"><td>{a["id"]}</td><td>{esc(RULE_TITLES.get(a["rule"], a["rule"]))}</td>'
            f"<td>{esc(a['summary'])}</td><td>{esc(local_time(request, a['opened_ms']))}</td>"
            f"<td{cls}>{esc(STATE_ZH[a['state']])}</td><td>{acked}</td>{forms}</tr>"
        )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    return f"<section><h2>当前告警</h2>{table}</section>"


def _forms(request: Request, alert: dict[str, Any]) -> str:
    base = f"{PREFIX}/alerts/{alert['id']}"
    ack = ""
    if alert["state"] == "open":
        ack = (
            f'<form class="inline" method="post" action="{base}/ack">{csrf_field(request)}'
            f'<input type="text" name="comment" required maxlength="{lifecycle.MAX_COMMENT}" placeholder="处理意见" '
            f'aria-label="告警 {alert["id"]} 的处理意见"> <button type="submit">确认</button></form> '
        )
    close = (
        f'<form class="inline" method="post" action="{base}/close">{csrf_field(request)}'
        '<button type="submit" class="secondary">关闭</button></form>'
    )
    return ack + close


def _closed(request: Request, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(
        f"<th>{h}</th>" for h in ("编号", "类型", "情况", "开始时间", "关闭时间", "关闭方式", "确认人与意见")
    )
    lines = "".join(
        f"<tr><td>{a['id']}</td><td>{esc(RULE_TITLES.get(a['rule'], a['rule']))}</td><td>{esc(a['summary'])}</td>"
        f"<td>{esc(local_time(request, a['opened_ms']))}</td><td>{esc(local_time(request, a['closed_ms']))}</td>"
        f"<td>{esc(CLOSED_ZH.get(a['close_reason'] or '', a['close_reason'] or ''))}"
        f"{'（' + esc(a['closed_by']) + '）' if a['close_reason'] == 'manual' else ''}</td>"
        f"<td>{esc(a['acked_by'] + '：' + (a['comment'] or '')) if a['acked_by'] else '—'}</td></tr>"
        for a in rows
    )
    return (
        f"<section><h2>最近关闭（最多 {RECENT} 条）</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{lines}</tbody></table></section>"
    )


def _rules(request: Request) -> str:
    config = config_of(request)
    rules = "".join(
        f"<tr><td>{esc(str(r['title']))}</td><td>{'启用' if r['enabled'] else '<span class=muted>停用</span>'}</td>"
        f"<td>{esc(str(r['condition']))}</td></tr>"
        for r in describe(config)
    )
    hooks = "".join(
        f"<tr><td>{esc(w.name)}</td><td>{esc(KIND_ZH[w.kind])}</td><td>{'是' if w.secret else '否'}</td></tr>"
        for w in config.alerts.webhooks
    )
    hook_table = (
        f"<table><thead><tr><th>名称</th><th>类型</th><th>加签</th></tr></thead><tbody>{hooks}</tbody></table>"
        if hooks
        else '<p class="muted">未配置通知（hub.toml 的 [[alerts.webhooks]]）。</p>'
    )
    a = config.alerts
    every = (
        f"每 {a.interval_s:g} 秒检查一次，条件解除 {a.clear_minutes:g} 分钟后自动关闭"
        if a.enabled
        else "告警检查已停用"
    )
    return (
        f"<section><h2>告警规则（hub.toml [alerts]，{esc(every)}）</h2><table><thead><tr><th>类型</th><th>状态</th>"
        f"<th>条件</th></tr></thead><tbody>{rules}</tbody></table>"
        f'<h2 style="margin-top:16px">通知</h2>{hook_table}</section>'
    )


async def alert_action(request: Request) -> Response:
    person, action = person_of(request), request.path_params["action"]
    if action not in DONE_ZH or not request.path_params["alert"].isdigit():
        return render_page(request, "没有这个操作", '<section><p class="flash">没有这个操作。</p></section>', 404)
    alert_id = int(request.path_params["alert"])
    comment = (await form_data(request)).get("comment", "")
    try:
        if action == "ack":
            await with_store(request, lambda s: lifecycle.acknowledge(s, alert_id, person.name, comment))
        else:
            await with_store(request, lambda s: lifecycle.close(s, alert_id, person.name, comment))
    except NotFound:
        return await alerts_page(request, f"没有告警 {alert_id}。", 404)
    except BadComment:
        return await alerts_page(
            request, f"未能处理告警 {alert_id}：请填写处理意见（不超过 {lifecycle.MAX_COMMENT} 字）。", 422
        )
    except AlertStateError:
        return await alerts_page(request, f"未能处理告警 {alert_id}：它已被确认或关闭，请看下面的最新状态。", 409)
    return redirect(f"{PREFIX}/alerts?done={action}")


PAGES: list[Page] = [
    Page("/alerts", alerts_page, "alerts.read", "告警"),
    Page("/alerts/{alert}/{action}", alert_action, "alerts.change", methods=("POST",)),
]
