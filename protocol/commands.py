"""``cmd`` frames, hub → terminal (SPEC sections 3, 13): invitations, cancels, staff sign-in, new
secrets, releases to install, configurations.

Built and parsed here only. The hub builds a :data:`Command`, stores its :func:`payload` with the
case it belongs to and publishes :func:`encode` of it; an invitation gets its remaining lifetime
(``ttl_ms``) and the hub's wall time (``sent_ms``) when it is sent (:func:`with_lifetime`).
:func:`parse` gives back the same object, or MalformedFrame naming the field, checked with the
rules every event value passes (:mod:`protocol.rules`).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import MalformedFrame
from .frames import MAX_KID, dumps, loads_object
from .rules import INVITE_TTL_MAX_MS, check_text_setting, valid_text
from .settings import VERSION_MAX, settings_problem
from .updates import MAX_MANIFEST_CHARS, Manifest, valid_release

#: A board's HMAC-SHA256 in hex: the one signature an update may carry without its manifest.
BOARD_SIG_HEX = 64

_KEY_RE = re.compile(r"[0-9a-f]{64}")
_SIG_RE = re.compile(r"[0-9a-f]{64}|[0-9a-f]{128}")
_URL_RE = re.compile(r"https?://[!-~]{1,192}")


class CommandName(enum.StrEnum):
    """The ``cmd`` field: what the hub asks of a terminal."""

    INVITE = "invite"  #: invite a rating for a case (its ``case``, ``item``, ``staff``)
    CANCEL = "cancel"  #: withdraw the invitation of a case closed without a rating
    STAFF = "staff"  #: who serves at the window now (``staff``; null signs out)
    REKEY = "rekey"  #: a new MAC key and broker password (``kid``, ``key``, ``password``)
    CONFIG = "config"  #: the device's effective settings (``version``, ``settings``: protocol.settings)
    UPDATE = "update"  #: a release to install (``release``, ``manifest`` (not to boards), ``sig``, ``url``)


@dataclasses.dataclass(frozen=True, slots=True)
class Invite:
    case: str
    item: str | None = None
    staff: str | None = None
    #: Milliseconds the invitation has left and the hub's wall time, set when it is sent.
    ttl_ms: int | None = None
    sent_ms: int | None = None
    name = CommandName.INVITE


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel:
    case: str
    name = CommandName.CANCEL


@dataclasses.dataclass(frozen=True, slots=True)
class StaffSignIn:
    staff: str | None  #: None signs the window's staff out
    name = CommandName.STAFF


@dataclasses.dataclass(frozen=True, slots=True)
class Rekey:
    """Secret: only the device's own ``cmd`` topic carries it (the broker's ACL)."""

    kid: int
    key: str
    password: str
    name = CommandName.REKEY

    def __repr__(self) -> str:
        return f"Rekey(kid={self.kid}, key=…, password=…)"


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    """A release to install (SPEC section 13, :mod:`protocol.updates`): ``manifest`` is the exact
    text that ``sig`` signs (ed25519 with the hall's release key for CPython terminals, HMAC-SHA256
    with the device's MAC key for boards), ``url`` the folder its files are fetched from. The
    terminal installs it when no invitation and no reason wait is live.

    For boards ``manifest`` is None: the command carries it by reference (``url`` +
    :data:`protocol.updates.MANIFEST_NAME`), so that it stays a few hundred bytes, which a board's
    heap takes in while it runs; the board's boot step downloads the text and checks the HMAC over
    the bytes it got. Only a board HMAC (64 hex digits) may come without its manifest."""

    release: str
    manifest: str | None  #: None: fetched from ``url`` + ``manifest.json`` (boards only)
    sig: str  #: lowercase hex
    url: str
    name = CommandName.UPDATE

    def parsed_manifest(self) -> Manifest | None:
        return None if self.manifest is None else Manifest.decode(self.manifest)


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """The whole effective configuration of one device (hall, window and device layers merged):
    keys it lacks take the terminal's own ``terminal.toml`` values. ``version`` grows per device."""

    version: int
    settings: dict[str, Any]
    name = CommandName.CONFIG


Command = Invite | Cancel | StaffSignIn | Rekey | Update | Config


def payload(command: Command) -> dict[str, Any]:
    """The JSON object of ``command``, ``cmd`` first (the hub's queue finds rekeys by that prefix)."""
    fields = {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}
    if isinstance(command, Invite):
        fields = {k: v for k, v in fields.items() if k not in ("ttl_ms", "sent_ms") or v is not None}
    elif isinstance(command, Update) and command.manifest is None:  # a board's: by reference
        del fields["manifest"]
    return {"cmd": command.name.value, **fields}


def encode(command: Command) -> bytes:
    return dumps(payload(command))


def with_lifetime(command: Command, ttl_ms: int, sent_ms: int) -> Command:
    """An invitation as it is sent: ``ttl_ms`` left at ``sent_ms``. Other commands do not expire."""
    if not isinstance(command, Invite):
        return command
    return dataclasses.replace(command, ttl_ms=ttl_ms, sent_ms=sent_ms)


def decode(frame: bytes) -> Command:
    return parse(loads_object(frame))


def parse(obj: Mapping[str, Any]) -> Command:
    """The command ``obj`` holds; MalformedFrame naming the first field that is wrong."""
    name = obj.get("cmd")
    try:
        which = CommandName(name) if isinstance(name, str) else None
    except ValueError:
        which = None
    if which is None:
        raise _malformed("cmd", f"unknown command {_short(name)}")
    return _PARSERS[which](obj)


def _parse_invite(obj: Mapping[str, Any]) -> Invite:
    if obj.get("case") is None:
        raise _malformed("case", "missing")
    _texts(obj, "case", "item", "staff")
    ttl_ms, sent_ms = obj.get("ttl_ms"), obj.get("sent_ms")
    if ttl_ms is not None and (type(ttl_ms) is not int or not 0 <= ttl_ms <= INVITE_TTL_MAX_MS):
        raise _malformed("ttl_ms", f"expected 0..{INVITE_TTL_MAX_MS} milliseconds, got {_short(ttl_ms)}")
    if sent_ms is not None and type(sent_ms) is not int:
        raise _malformed("sent_ms", f"expected milliseconds, got {_short(sent_ms)}")
    return Invite(obj["case"], obj.get("item"), obj.get("staff"), ttl_ms, sent_ms)


def _parse_cancel(obj: Mapping[str, Any]) -> Cancel:
    if obj.get("case") is None:
        raise _malformed("case", "missing")
    _texts(obj, "case")
    return Cancel(obj["case"])


def _parse_staff(obj: Mapping[str, Any]) -> StaffSignIn:
    _texts(obj, "staff")
    return StaffSignIn(obj.get("staff"))


def _parse_rekey(obj: Mapping[str, Any]) -> Rekey:
    kid, key, password = obj.get("kid"), obj.get("key"), obj.get("password")
    if type(kid) is not int or not 0 < kid <= MAX_KID:
        raise _malformed("kid", f"expected a key id in 1..{MAX_KID}, got {_short(kid)}")
    if type(key) is not str or _KEY_RE.fullmatch(key) is None:
        raise _malformed("key", "expected 64 lowercase hex digits")
    if not isinstance(password, str) or not valid_text(password) or len(password) < 16:
        raise _malformed("password", "expected 16-64 printable characters")
    return Rekey(kid, key, password)


def _parse_update(obj: Mapping[str, Any]) -> Update:
    release, manifest, sig, url = obj.get("release"), obj.get("manifest"), obj.get("sig"), obj.get("url")
    if not isinstance(release, str) or not valid_release(release):
        raise _malformed("release", "expected a release name of 1-32 of A-Z a-z 0-9 . _ + -")
    if not isinstance(sig, str) or _SIG_RE.fullmatch(sig) is None:
        raise _malformed("sig", "expected 64 or 128 lowercase hex digits")
    if manifest is None and "manifest" not in obj and len(sig) == BOARD_SIG_HEX:
        pass  # a board's: the manifest is fetched from url and checked against sig there
    elif not isinstance(manifest, str) or not 0 < len(manifest) <= MAX_MANIFEST_CHARS:
        raise _malformed("manifest", f"expected the manifest's text, 1..{MAX_MANIFEST_CHARS} characters")
    elif Manifest.decode(manifest).release != release:
        raise _malformed("manifest", f"names another release than {release!r}")
    if not isinstance(url, str) or _URL_RE.fullmatch(url) is None:
        raise _malformed("url", "expected an http:// or https:// address of at most 200 characters")
    return Update(release, manifest, sig, url)


def _parse_config(obj: Mapping[str, Any]) -> Config:
    version, settings = obj.get("version"), obj.get("settings")
    if type(version) is not int or not 0 < version <= VERSION_MAX:
        raise _malformed("version", f"expected 1..{VERSION_MAX}, got {_short(version)}")
    problem = settings_problem(settings)
    if problem is not None or not isinstance(settings, dict):
        raise _malformed("settings", problem or "expected an object")
    return Config(version, dict(settings))


_PARSERS: dict[CommandName, Callable[[Mapping[str, Any]], Command]] = {
    CommandName.INVITE: _parse_invite,
    CommandName.CANCEL: _parse_cancel,
    CommandName.STAFF: _parse_staff,
    CommandName.REKEY: _parse_rekey,
    CommandName.CONFIG: _parse_config,
    CommandName.UPDATE: _parse_update,
}


def _texts(obj: Mapping[str, Any], *names: str) -> None:
    for name in names:
        problem = check_text_setting(name, obj.get(name))
        if problem is not None:
            raise MalformedFrame(problem)


def _malformed(name: str, why: str) -> MalformedFrame:
    return MalformedFrame(f"field {name!r}: {why}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"
