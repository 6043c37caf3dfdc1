"""The people page (supervisor, auditor): who has an account, with which role and department,
and whether it is disabled or locked. Read only: accounts are made on the hub's command line
(``haocha user …``), where the password never crosses the network."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ... import auth_store
from ...auth import ROLE_NAMES_ZH, Role
from .shell import Page, esc, local_time, render_page, with_store


async def people_page(request: Request) -> Response:
    rows = await with_store(request, auth_store.list_users)
    lines = "".join(
        f"<tr><td>{esc(r['name'])}</td><td>{esc(ROLE_NAMES_ZH[Role(r['role'])])}</td>"
        f"<td>{esc(r['dept'] or '—')}</td><td>{_status(r)}</td><td class=num>{r['tokens']}</td>"
        f"<td>{esc(local_time(request, r['created_ms']))}</td></tr>"
        for r in rows
    )
    table = (
        "<section><table><thead><tr><th>姓名</th><th>角色</th><th>部门</th><th>状态</th>"
        f"<th class=num>API 令牌</th><th>创建时间</th></tr></thead><tbody>{lines}</tbody></table>"
        '<p class="muted">账号在大厅服务器上用 <code>haocha user</code> 命令管理'
        "（新增、停用、重设密码、吊销令牌）。</p>"
        "</section>"
    )
    return render_page(request, "人员账号", table)


def _status(row: dict[str, object]) -> str:
    if row["disabled"]:
        return '<span class="overdue">已停用</span>'
    if row["locked"]:
        return '<span class="overdue">已锁定</span>'
    return "正常"


PAGES: list[Page] = [Page("/people", people_page, "users.read", "人员账号")]
