"""HTML fragments of the devices and upstream pages (technician, supervisor, auditor): pure
functions from :mod:`.terminals` and :mod:`.upstream` objects to escaped HTML."""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from .render import STYLE, ago, clock, terminal_badge, tile
from .terminals import Terminal
from .upstream import Upstream

KIND_ZH = {"gpio": "GPIO 按键", "modbus": "Modbus 面板", "serial": "串口面板", "micro": "MicroPython 板"}
MODE_ZH = {"free": "自由评价", "invited": "邀请评价", "staff": "工作人员键"}
CLOCK_ZH = {"synced": "已同步", "unsynced": "未同步"}
STATUS_ZH = {
    "ok": ("一致", "b-on"),
    "waiting": ("在途", "warn"),
    "parked": ("有搁置", "b-off"),
    "mismatch": ("不符", "b-off"),
}
KIND_RECORD_ZH = {"evaluation": "评价", "update": "评价更新", "ticket": "差评工单", "totals": "汇总"}


def _num(value: int | None) -> str:
    return "—" if value is None else str(value)


def devices_html(terms: list[Terminal], windows: dict[str, str], tz: ZoneInfo, now_ms: int) -> str:
    """Every terminal; silent ones (offline, never seen, or not heard from lately) first and red."""
    live = [t for t in terms if not t.revoked]
    silent = sum(t.silent for t in live)
    tiles = (
        tile("终端", str(len(live)), f"已吊销 {len(terms) - len(live)}")
        + tile("在线", str(sum(t.online is True for t in live)))
        + tile("无响应", str(silent), "离线、从未上线或 5 分钟无消息", alarm=silent > 0)
        + tile("积压合计", str(sum(t.backlog or 0 for t in live if t.online)), "在线终端未确认事件")
    )
    head = "".join(
        f"<th{' class=num' if h in ('积压', '日志待收') else ''}>{h}</th>"
        for h in (
            "终端",
            "窗口",
            "类型",
            "模式",
            "状态",
            "最后通信",
            "最后按键",
            "积压",
            "日志待收",
            "时钟",
            "面板",
            "固件",
            "配置版本",
        )
    )
    order = sorted(terms, key=lambda t: (t.revoked, not t.silent, t.device))
    rows = "".join(_device_row(t, windows, tz, now_ms) for t in order)
    table = f"<table>{head and f'<tr>{head}</tr>'}{rows}</table>" if terms else '<p class="muted">尚未配置终端。</p>'
    return f'{STYLE}<div class="tiles">{tiles}</div><section><h2>终端列表</h2>{table}</section>'


def _device_row(t: Terminal, windows: dict[str, str], tz: ZoneInfo, now_ms: int) -> str:
    status = '<span class="badge warn">已吊销</span>' if t.revoked else terminal_badge(t)
    if t.panel_ok is None:
        panel = '<span class="muted">—</span>'
    elif t.panel_ok:
        panel = f'<span class="badge b-on">正常</span> <span class="muted">{escape(t.panel_detail)}</span>'
    else:
        panel = f'<span class="badge b-off">故障</span> {escape(t.panel_detail)}'
    clock_text = CLOCK_ZH.get(t.clock or "", t.clock or "—")
    clock_cell = (
        f'<span class="badge warn">{escape(clock_text)}</span>' if t.clock == "unsynced" else escape(clock_text)
    )
    seen = f"{ago(t.last_seen_ms, now_ms)}" + (f'<br><span class="muted">{clock(t.last_seen_ms, tz, now_ms)}</span>'
                                               if t.last_seen_ms else "")  # fmt: skip
    cells = [
        f"<b>{escape(t.device)}</b>",
        f"{escape(windows.get(t.window, t.window))} <span class=muted>{escape(t.window)}</span>",
        escape(KIND_ZH.get(t.kind, t.kind)),
        escape(MODE_ZH.get(t.mode, t.mode)),
        status,
        seen,
        clock(t.last_press_ms, tz, now_ms),
        _num(t.backlog),
        _num(t.missing),
        clock_cell,
        panel,
        escape(t.firmware or "—"),
        _config_cell(t.config),
    ]
    cls = ' class="silent"' if t.silent and not t.revoked else ""
    tds = "".join(f"<td{' class=num' if i in _NUMERIC else ''}>{c}</td>" for i, c in enumerate(cells))
    return f"<tr{cls}>{tds}</tr>"


_NUMERIC = (7, 8)  #: backlog and journal columns of :func:`_device_row`


def _config_cell(text: str | None) -> str:
    """The configuration version in force; one waiting or refused stands out (hub.layers.describe)."""
    if text is None:
        return '<span class="muted">—</span>'
    if "refused" in text:
        return f'<span class="badge b-off">{escape(text.replace("refused", "拒收"))}</span>'
    if "pending" in text:
        return f'<span class="badge warn">{escape(text.replace("pending", "待生效"))}</span>'
    return escape(text)


def upstream_html(u: Upstream, tz: ZoneInfo, now_ms: int, unpark_form: str | None, flash: str = "") -> str:
    """``unpark_form``: the CSRF field to put in the unpark forms, None when the person may not unpark."""
    oldest = "—" if u.oldest_pending_ms is None else ago(u.oldest_pending_ms, now_ms)
    tiles = (
        tile("待发送", str(u.pending), f"最早一条 {oldest}")
        + tile("等待补齐", str(u.held), "终端序号有缺口，暂缓上报")
        + tile("已发送", str(u.sent), "上级系统已确认")
        + tile("已搁置", str(u.parked), "上级系统拒收，需处理", alarm=u.parked > 0)
    )
    target = f'<p class="muted">上级系统：{escape(u.url) if u.url else "未配置（记录保留在队列中）"}</p>'
    note = f'<p class="flash ok">{escape(flash)}</p>' if flash else ""
    return (
        f'{STYLE}{note}{target}<div class="tiles">{tiles}</div>'
        f"{_parked_section(u, tz, now_ms, unpark_form)}{_reconcile_section(u)}"
    )


def _parked_section(u: Upstream, tz: ZoneInfo, now_ms: int, csrf: str | None) -> str:
    if not u.parked_rows:
        return '<section><h2>已搁置记录</h2><p class="muted">没有被拒收的记录。</p></section>'
    action = "/console/upstream/unpark"
    all_form = (
        f'<form method="post" action="{action}" class="inline">{csrf}<input type="hidden" name="all" value="1">'
        f'<button type="submit">全部重新排队（{u.parked}）</button></form>'
        if csrf is not None
        else ""
    )
    rows = []
    for r in u.parked_rows:
        button = (
            f'<form method="post" action="{action}" class="inline">{csrf}'
            f'<input type="hidden" name="id" value="{int(r["id"])}"><button type="submit" class="secondary">重新排队'
            "</button></form>"
            if csrf is not None
            else ""
        )
        rows.append(
            f"<tr><td>{int(r['id'])}</td><td>{escape(KIND_RECORD_ZH.get(r['kind'], r['kind']))}</td>"
            f"<td>{escape(str(r['window']))}</td><td>{escape(str(r['record_id']))}</td>"
            f"<td>{clock(r['created_ms'], tz, now_ms)}</td><td class=num>{r['attempts']}</td>"
            f"<td>{escape(str(r['reason'] or ''))}</td><td>{button}</td></tr>"
        )
    more = f'<p class="muted">仅显示最早的 {len(u.parked_rows)} 条。</p>' if u.parked > len(u.parked_rows) else ""
    head = "".join(f"<th>{h}</th>" for h in ("编号", "类型", "窗口", "记录标识", "入队时间", "尝试", "拒收原因", ""))
    hint = '<p class="muted">修正原因（如事项编码、原因代码表）后重新排队，发送程序会再次上报。</p>' if csrf else ""
    return f"<section><h2>已搁置记录 {all_form}</h2><table><tr>{head}</tr>{''.join(rows)}</table>{more}{hint}</section>"


def _reconcile_section(u: Upstream) -> str:
    if not u.days:
        return f'<section><h2>每日对账（近 {u.span_days} 天）</h2><p class="muted">这些天没有评价。</p></section>'
    rows = []
    for d in u.days:
        text, cls = STATUS_ZH[d.status]
        rows.append(
            f"<tr><td>{d.day}</td><td class=num>{d.hall}</td><td class=num>{d.acked}</td><td class=num>{d.parked}</td>"
            f'<td class=num>{d.waiting}</td><td><span class="badge {cls}">{text}</span></td></tr>'
        )
    head = "".join(
        f"<th{' class=num' if 0 < i < 5 else ''}>{h}</th>"
        for i, h in enumerate(("日期", "本厅评价数", "上级已确认", "已搁置", "在途（待发送）", "状态"))
    )
    return (
        f"<section><h2>每日对账（近 {u.span_days} 天）</h2><table><tr>{head}</tr>{''.join(rows)}</table>"
        '<p class="muted">本厅评价数来自计数表（含被标记的评价，它们同样上报）；'
        "上级已确认为上级系统逐条应答接收的评价记录。</p></section>"
    )
