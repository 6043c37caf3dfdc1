"""The console's shell: login, sessions, CSRF, the permission check and the page layout.

A console page is a :class:`Page`: a path under ``/console``, an async endpoint taking the
request, the action of :mod:`hub.auth` it needs, and its label in the navigation. The shell runs
before every endpoint: no live session → the login page (GET) or 403 (POST); an action the
person's role lacks → the 403 page; a POST without the session's CSRF token → the 403 page.
Inside an endpoint::

    person = person_of(request)                       # hub.auth.Person of the session
    rows = await with_store(request, lambda s: ...)   # hub.store.Store on a worker thread
    form = await form_data(request)                   # a POSTed form (CSRF already checked)
    return render_page(request, "标题", body_html)     # the page inside the layout
    f'<form method="post">{csrf_field(request)}…</form>'  # every form carries the token

Escape every value put into HTML with :func:`esc`. Pages are listed in
:data:`hub.http.console.PAGES`; the navigation shows a page's ``nav`` label only to those whose
role may open it (:func:`hub.auth.can`, the same check the API makes).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ... import auth_store
from ...auth import ROLE_NAMES_ZH, Person, can
from ...config import DB_NAME, HubConfig
from ...config import load as load_config
from ...store import Store
from ..edge import person_of

__all__ = [
    "Page",
    "config_of",
    "csrf_field",
    "csrf_token",
    "esc",
    "form_data",
    "local_time",
    "person_of",
    "redirect",
    "render_page",
    "with_store",
]

T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]
PREFIX = "/console"
COOKIE = "haocha_session"
CSRF_FIELD = "csrf"
esc = html.escape


@dataclass(frozen=True)
class Page:
    """One console route. ``path`` is below ``/console`` (``"/tickets/{ticket}"``); ``action`` is
    what the person must be allowed (:data:`hub.auth.ACTIONS`; None: anyone logged in); ``nav`` is
    the navigation label (None: not in the navigation, e.g. a detail page or a form's POST)."""

    path: str
    endpoint: Endpoint
    action: str | None
    nav: str | None = None
    methods: tuple[str, ...] = ("GET",)


# -- helpers for pages ---------------------------------------------------------------------------


def config_of(request: Request) -> HubConfig:
    config = getattr(request.app.state, "config", None)
    return config if isinstance(config, HubConfig) else load_config(Path(request.app.state.home))


async def with_store(request: Request, fn: Callable[[Store], T]) -> T:
    """Run ``fn`` with a Store of its own on a worker thread (sqlite3 connections are per thread)."""
    home = Path(request.app.state.home)

    def work() -> T:
        with Store(home / DB_NAME) as store:
            return fn(store)

    return await run_in_threadpool(work)


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session (a synchroniser token tied to the session)."""
    return auth_store.csrf_token(request.state.session_id)


def csrf_field(request: Request) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{csrf_token(request)}">'


async def form_data(request: Request) -> dict[str, str]:
    """A POSTed ``application/x-www-form-urlencoded`` form, last value of each field."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[-1] for k, v in parse_qs(text, max_num_fields=100).items()}


def redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def local_time(request: Request, ms: int | None) -> str:
    """``YYYY-MM-DD HH:MM`` in the hall's time zone ('' for None)."""
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, config_of(request).tz).strftime("%Y-%m-%d %H:%M")


# -- layout --------------------------------------------------------------------------------------

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei",sans-serif;
 background:#f4f6f8;color:#1d2733;font-size:15px}
header{background:#b71c1c;color:#fff;display:flex;align-items:center;justify-content:space-between;
 padding:10px 20px;gap:16px}
header h1{margin:0;font-size:20px;white-space:nowrap}
header .who{display:flex;align-items:center;gap:10px;white-space:nowrap}
header form{margin:0}
header button{background:#fff;color:#b71c1c;border:0;border-radius:4px;padding:4px 10px;cursor:pointer}
nav{background:#fff;border-bottom:1px solid #dde2e6;padding:0 20px;display:flex;flex-wrap:wrap;gap:4px}
nav a{display:inline-block;padding:10px 12px;color:#1d2733;text-decoration:none;border-bottom:3px solid transparent}
nav a.on{border-bottom-color:#b71c1c;font-weight:bold}
main{padding:16px 20px;max-width:1800px}
h2{font-size:18px;margin:0 0 12px}
section{background:#fff;border-radius:6px;padding:14px 16px;box-shadow:0 1px 3px rgba(0,0,0,.1);margin-bottom:16px;
 overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 8px;border-bottom:1px solid #e3e7eb;text-align:left;vertical-align:top}
th{font-size:13px;color:#556;white-space:nowrap}
.num{text-align:right}
table.facts th{width:9em}
.summary{display:flex;flex-wrap:wrap;gap:28px}
.stat b{font-size:20px;margin-left:4px}
.overdue,.overdue a{color:#c62828;font-weight:bold}
.muted{color:#778}
.flash{padding:8px 12px;border-radius:4px;background:#fdecea;color:#8e1b1b;margin-bottom:12px}
.ok{background:#e8f5e9;color:#1b5e20}
form.inline{display:inline}
label{display:inline-block;margin:4px 12px 4px 0}
input[type=text],input[type=password],select,textarea{font:inherit;padding:5px 7px;border:1px solid #b8c0c8;
 border-radius:4px}
textarea{width:100%;min-height:60px}
button,input[type=submit]{font:inherit;padding:5px 14px;border-radius:4px;border:1px solid #b71c1c;
 background:#b71c1c;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#b71c1c}
.login{max-width:380px;margin:80px auto}
.login label{display:block;margin:10px 0 4px}
.login input{width:100%}
"""


def _document(title: str, header: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · 好差评管理后台</title><style>{_STYLE}</style></head>"
        f"<body>{header}{body}</body></html>"
    )


def _nav(request: Request, person: Person) -> str:
    pages: Sequence[Page] = request.state.console_pages
    here = request.url.path
    links = []
    for page in pages:
        if page.nav and (page.action is None or can(person, page.action)):
            href = PREFIX + page.path
            on = ' class="on"' if here == href or (page.path != "/" and here.startswith(href + "/")) else ""
            links.append(f'<a href="{esc(href)}"{on}>{esc(page.nav)}</a>')
    return f"<nav>{''.join(links)}</nav>"


def render_page(request: Request, title: str, body_html: str, status: int = 200) -> HTMLResponse:
    """``body_html`` (already escaped) inside the layout: header, the person's navigation, title."""
    person = person_of(request)
    role = ROLE_NAMES_ZH.get(person.role, str(person.role))
    dept = f" · {esc(person.dept)}" if person.dept else ""
    header = (
        f"<header><h1>好差评管理后台 · {esc(config_of(request).hall)}</h1>"
        f'<div class="who"><span>{esc(person.name)}（{esc(role)}{dept}）</span>'
        f'<form method="post" action="{PREFIX}/logout">{csrf_field(request)}'
        '<button type="submit">退出登录</button></form></div></header>'
    )
    body = f"{_nav(request, person)}<main><h2>{esc(title)}</h2>{body_html}</main>"
    return HTMLResponse(_document(title, header, body), status_code=status)


def forbidden_page(request: Request, message: str) -> HTMLResponse:
    body = f'<section><p class="flash">{esc(message)}</p><p><a href="{PREFIX}/">返回首页</a></p></section>'
    return render_page(request, "无权访问（403）", body, status=403)


# -- the guard every page runs behind ------------------------------------------------------------


async def _session_person(request: Request) -> Person | None:
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 128:
        return None
    settings = config_of(request).console
    person = await with_store(request, lambda s: auth_store.session_person(s, session_id, settings))
    if person is not None:
        request.state.session_id = session_id
    return person


def _guard(page: Page, pages: Sequence[Page]) -> Endpoint:
    async def guarded(request: Request) -> Response:
        request.state.console_pages = pages
        person = await _session_person(request)
        if person is None:
            if request.method != "GET":
                return HTMLResponse(_login_html("请先登录。"), status_code=403)
            return redirect(f"{PREFIX}/login?next={quote(request.url.path)}")
        request.state.person = person
        if request.method == "POST" and not auth_store.csrf_ok(
            request.state.session_id, (await form_data(request)).get(CSRF_FIELD)
        ):
            return forbidden_page(request, "表单校验失败（CSRF）：请回到页面重新提交。")
        if page.action is not None and not can(person, page.action):
            return forbidden_page(request, f"您的角色（{ROLE_NAMES_ZH[person.role]}）无权打开此页面。")
        return await page.endpoint(request)

    return guarded


# -- login, logout, home -------------------------------------------------------------------------


def _login_html(message: str = "", name: str = "", next_path: str = "") -> str:
    flash = f'<p class="flash">{esc(message)}</p>' if message else ""
    nxt = f'<input type="hidden" name="next" value="{esc(next_path)}">' if next_path else ""
    form = (
        '<section class="login"><h2>登录</h2>'
        f"{flash}"
        f'<form method="post" action="{PREFIX}/login">{nxt}'
        f'<label for="username">用户名</label><input type="text" id="username" name="username" value="{esc(name)}" '
        'autocomplete="username" required autofocus>'
        '<label for="password">密码</label><input type="password" id="password" name="password" '
        'autocomplete="current-password" required>'
        '<p><button type="submit">登录</button></p></form></section>'
    )
    header = "<header><h1>好差评管理后台</h1></header>"
    return _document("登录", header, f"<main>{form}</main>")


def _safe_next(path: str | None) -> str:
    """Where to go after the login: a console path only (never another site, never the login)."""
    if path and path.startswith(PREFIX + "/") and "\\" not in path and path != f"{PREFIX}/login":
        return path
    return f"{PREFIX}/"


def _same_origin(request: Request) -> bool:
    """A login posted from another site is refused (login CSRF); browsers send Origin on POST."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")} - {""}
    return origin.split("://", 1)[-1] in hosts


async def login_form(request: Request) -> Response:
    return HTMLResponse(_login_html(next_path=_safe_next(request.query_params.get("next"))))


async def login_post(request: Request) -> Response:
    """The contract: a form posting ``username`` and ``password`` to ``/console/login``."""
    if not _same_origin(request):
        return HTMLResponse(_login_html("登录请求来源不明，已拒绝。"), status_code=403)
    form = await form_data(request)
    name, password = form.get("username", "").strip(), form.get("password", "")
    settings = config_of(request).console
    try:
        done = await with_store(request, lambda s: auth_store.login(s, name, password, settings))
    except auth_store.AccountLocked as exc:
        until = local_time(request, exc.until_ms)
        message = f"连续登录失败次数过多，账号已锁定至 {until}。"
        return HTMLResponse(_login_html(message, name), status_code=423)
    except auth_store.LoginRefused:
        return HTMLResponse(_login_html("用户名或密码错误。", name), status_code=401)
    response = redirect(_safe_next(form.get("next")))
    response.set_cookie(
        COOKIE,
        done.session_id,
        max_age=int(settings.session_hours * 3600),  # the store ends it sooner when idle
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=config_of(request).http.tls,
    )
    return response


async def logout(request: Request) -> Response:
    person, session_id = person_of(request), request.state.session_id
    await with_store(request, lambda s: auth_store.logout(s, session_id, person))
    response = redirect(f"{PREFIX}/login")
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


async def home(request: Request) -> Response:
    person = person_of(request)
    pages: Sequence[Page] = request.state.console_pages
    links = "".join(
        f'<li><a href="{PREFIX}{esc(p.path)}">{esc(p.nav)}</a></li>'
        for p in pages
        if p.nav and p.path != "/" and (p.action is None or can(person, p.action))
    )
    body = f"<section><p>欢迎，{esc(person.name)}。您可以打开：</p><ul>{links or '<li>（暂无）</li>'}</ul></section>"
    return render_page(request, "首页", body)


SHELL_PAGES: list[Page] = [
    Page("/", home, None, "首页"),
    Page("/logout", logout, None, methods=("POST",)),
]


def console_routes(pages: Sequence[Page]) -> list[BaseRoute]:
    """Routes of the console: login (open to all) and every page behind the guard."""
    every = [*SHELL_PAGES, *pages]
    routes: list[BaseRoute] = [
        Route(f"{PREFIX}/login", login_form, methods=["GET"]),
        Route(f"{PREFIX}/login", login_post, methods=["POST"]),
        Route(PREFIX, lambda request: redirect(f"{PREFIX}/"), methods=["GET"]),
    ]
    routes += [Route(PREFIX + p.path, _guard(p, every), methods=list(p.methods)) for p in every]
    return routes
