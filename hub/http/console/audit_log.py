"""The audit log page (auditor): who did what and when, newest first, by day range."""

from __future__ import annotations

import datetime as dt
import json

from starlette.requests import Request
from starlette.responses import Response

from ...audit import read_audit
from .shell import PREFIX, Page, config_of, esc, render_page, with_store

LIMIT = 500
#: Audit actions as people read them (the id stays beside it, as the CLI prints it).
ACTION_ZH = {
    "login": "登录", "login.failed": "登录失败", "logout": "退出登录", "user.lockout": "账号锁定",
    "user.add": "新增用户", "user.token": "签发令牌",
    "user.token.revoke": "吊销令牌", "user.disable": "停用用户", "user.password": "重设密码",
    "ticket.register": "工单登记", "ticket.assign": "工单转办", "ticket.appeal": "工单申诉",
    "ticket.verify": "工单核实", "ticket.feedback": "工单反馈", "case.open": "开启办件", "case.cancel": "撤销办件",
    "window.add": "新增窗口", "item.add": "新增事项", "device.add": "新增终端", "device.revoke": "吊销终端",
    "device.rotate": "更换密钥", "upstream.unpark": "重新上报",
}  # fmt: skip


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def audit_page(request: Request) -> Response:
    config = config_of(request)
    start, end = _day(request.query_params.get("from")), _day(request.query_params.get("to"))
    rows = await with_store(request, lambda s: read_audit(s, config.tz, start, end, LIMIT, newest_first=True))
    form = (
        f'<section><form method="get" action="{PREFIX}/audit">'
        f'<label>从 <input type="text" name="from" placeholder="YYYY-MM-DD" value="{start or ""}"></label>'
        f'<label>到 <input type="text" name="to" placeholder="YYYY-MM-DD" value="{end or ""}"></label>'
        f'<button type="submit">查询</button> <span class="muted">最多显示 {LIMIT} 条，最新在前</span></form></section>'
    )
    lines = "".join(
        f"<tr><td>{esc(r['at'][:19].replace('T', ' '))}</td><td>{esc(r['actor'])}</td>"
        f"<td>{esc(ACTION_ZH.get(r['action'], ''))} <span class=muted>{esc(r['action'])}</span></td>"
        f"<td>{esc(str(r['target'] or ''))}</td>"
        f"<td class=muted>{esc(json.dumps(r['detail'], ensure_ascii=False)[:200])}</td></tr>"
        for r in rows
    )
    table = (
        "<section><table><thead><tr><th>时间</th><th>操作人</th><th>操作</th><th>对象</th><th>详情</th></tr></thead>"
        f"<tbody>{lines}</tbody></table></section>"
    )
    return render_page(request, "审计日志", form + table)


PAGES: list[Page] = [Page("/audit", audit_page, "audit.read", "审计日志")]
