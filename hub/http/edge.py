"""The HTTP API's edge (SPEC section 10): who may call, how large a body may be, what a body is.

Every request passes here before a handler runs: :class:`RequireToken` asks for the token on every
path but the public ones, :class:`BodyLimit` answers 413 past 64 KiB, and handlers read their body
with :func:`json_object`, which turns anything but a plain JSON object into :class:`BadBody` (422).
"""

from __future__ import annotations

import hmac
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import HubError

MAX_BODY = 64 * 1024
#: Anyone may read these (the hall display, its figures, /metrics, the API description): they
#: hold no staff id, case number or ticket text. Every other path, all of /api/v1/, needs a token.
PUBLIC_PATHS = frozenset({"/", "/display.json", "/metrics", "/openapi.json"})
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request acts for. Today the hub's machine token is the only one (``hub``)."""

    name: str


def authenticate(authorization: bytes, token: bytes) -> Caller | None:
    """The caller an ``Authorization`` header names, or None. Compared as bytes: a token of any
    bytes (non-ASCII, not UTF-8, megabytes long) is simply not the token."""
    scheme, _, given = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token or not hmac.compare_digest(given.lstrip(b" "), token):
        return None
    return Caller("hub")


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


class RequireToken:
    """ASGI middleware: a request to a non-public path without the right bearer token gets 401
    (a WebSocket, should one come, is refused before its handshake); the caller is left in
    ``request.state.caller``."""

    def __init__(self, app: ASGIApp, token: HubToken) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _public(scope["path"]):
            caller = authenticate(_header(scope, b"authorization") or b"", self.token.current())
            if caller is None and scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if caller is None:
                await error(401, "bearer token missing or wrong")(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


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
