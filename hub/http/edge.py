"""The HTTP API's edge (SPEC section 10): who may call, how large a body may be, what a body is.

Every request passes here before a handler runs: :class:`RequireToken` asks for a bearer token on
every path but the public ones and the console's (which has its own sessions), and names the
person it belongs to (the hub's machine token, or a person's own, SPEC section 12); handlers
declare the action they need with :func:`requires` (403 otherwise, :func:`hub.auth.can`);
:class:`BodyLimit` answers 413 past 64 KiB, and handlers read their body with
:func:`json_object`, which turns anything but a plain JSON object into :class:`BadBody` (422).
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import ACTIONS, MACHINE, Person, can
from ..config import DB_NAME
from ..errors import HubError

MAX_BODY = 64 * 1024
MAX_TOKEN = 256
#: Anyone may read these (the hall display, its figures, /metrics, the API description): they
#: hold no staff id, case number or ticket text. Every other path, all of /api/v1/, needs a token.
PUBLIC_PATHS = frozenset({"/", "/display.json", "/metrics", "/openapi.json"})
#: The console checks its own session cookie (:mod:`hub.http.console.shell`), not bearer tokens.
CONSOLE_PREFIX = "/console"
PersonLookup = Callable[[bytes], "Person | None"]
#: The wheelhouse terminals install from (hub/http/fleet.py): public, holds no secret.
PUBLIC_PREFIXES = ("/fleet/",)


class BadBody(HubError, ValueError):
    """A request body that is not a JSON object of the shape the route takes (HTTP 422)."""


class BodyTooLarge(HubError):
    """Raised from ``receive`` past the limit, through the handler, to :class:`BodyLimit`."""


def error(status: int, message: str) -> Response:
    """A JSON error; ASCII-escaped, since a message may quote input that UTF-8 cannot encode."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = json.dumps({"error": message}, ensure_ascii=True)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def authenticate(authorization: bytes, token: bytes, people: PersonLookup | None = None) -> Person | None:
    """Whom an ``Authorization`` header names: the hub's machine token (:data:`hub.auth.MACHINE`),
    a person's own token (looked up by ``people``), or None. Compared as bytes: a token of any
    bytes (non-ASCII, not UTF-8, megabytes long) is simply not a token."""
    scheme, _, given = authorization.strip().partition(b" ")
    given = given.lstrip(b" ")
    if scheme.lower() != b"bearer" or not given or len(given) > MAX_TOKEN:
        return None
    if token and hmac.compare_digest(given, token):
        return MACHINE
    return people(given) if people is not None else None


def person_lookup(home: Path) -> PersonLookup:
    """A person-token lookup in ``home``'s database (run on a worker thread)."""
    from .. import auth_store
    from ..store import Store

    def lookup(given: bytes) -> Person | None:
        if not given.startswith(auth_store.TOKEN_PREFIX.encode()):
            return None
        with Store(home / DB_NAME) as store:
            return auth_store.person_for_token(store, given)

    return lookup


def person_of(request: Request) -> Person:
    """The person (or machine) the edge authenticated for this request."""
    person = request.scope.get("state", {}).get("person")
    if not isinstance(person, Person):
        raise RuntimeError("no authenticated person: the route is not behind RequireToken")
    return person


def forbidden(person: Person, action: str) -> Response:
    return error(403, f"{person.name} ({person.role}) may not {ACTIONS[action]}")


Handler = Callable[..., Awaitable[Response]]


def requires(action: str) -> Callable[[Handler], Handler]:
    """Decorate an API handler (function or method, the request last): 403 unless the
    authenticated person may do ``action`` (:func:`hub.auth.can`), before the body is read."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(*args: Any) -> Response:
            person = person_of(args[-1])
            if not can(person, action):
                return forbidden(person, action)
            return await handler(*args)

        return checked

    return wrap


class HubToken:
    """The hub's machine token as ``hub.toml`` says now: ``haocha hub token --rotate`` changes it
    under a running hub, and the next request is checked against the new one."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self._token = token.encode()
        self._mtime = self._stat()

    def _stat(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    def current(self) -> bytes:
        mtime = self._stat()
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._token = str(tomllib.loads(self.path.read_text())["http"]["token"]).encode()
            except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
                pass  # a file being rewritten: keep the last token, read it again next time
        return self._token


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key.lower() == name), None)


def _guarded(path: str) -> bool:
    console = path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
    return not _public(path) and not console


class RequireToken:
    """ASGI middleware: a request to a guarded path without a valid bearer token (the hub's or a
    person's) gets 401 (a WebSocket, should one come, is refused before its handshake); whom it
    acts for is left in ``request.state.person`` (:func:`person_of`). Roles are checked by the
    routes (:func:`hub.auth.can`)."""

    def __init__(self, app: ASGIApp, token: HubToken, people: PersonLookup | None = None) -> None:
        self.app = app
        self.token = token
        self.people = people

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and _guarded(scope["path"]):
            person = await self._authenticate(_header(scope, b"authorization") or b"")
            if person is None and scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if person is None:
                await error(401, "bearer token missing or wrong")(scope, receive, send)
                return
            scope.setdefault("state", {})["person"] = person
        await self.app(scope, receive, send)

    async def _authenticate(self, authorization: bytes) -> Person | None:
        machine = authenticate(authorization, self.token.current())
        if machine is not None or self.people is None:
            return machine
        return await run_in_threadpool(authenticate, authorization, b"", self.people)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, told by its Content-Length or, for a
    chunked body, counted as the handler reads it (so at most one chunk past the limit is held)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and not declared.isdigit():
            await error(400, "Content-Length is not a number")(scope, receive, send)
            return
        if declared is not None and (len(declared) > 12 or int(declared) > self.max_bytes):
            await error(413, f"body over {self.max_bytes} bytes")(scope, receive, send)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await error(413, f"body over {self.max_bytes} bytes")(scope, receive, send)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object; BadBody for anything else: bytes that are not UTF-8, text that
    is not JSON, nesting past the parser's depth, numbers past float range or int's digit limit,
    NaN or Infinity, strings holding lone surrogates (no database or reply could encode them)."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_float=_finite, parse_constant=_no_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise BadBody("the body nests too deeply") from None
    except UnicodeError:
        raise BadBody("the body is not UTF-8 text, or escapes a lone surrogate") from None
    except ValueError:
        raise BadBody("the body is not JSON, or holds a number out of range") from None
    if not isinstance(value, dict):
        raise BadBody("the body must be a JSON object")
    return value


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (BadBody, answered 422, otherwise)."""
    return parse_object(await request.body())


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
