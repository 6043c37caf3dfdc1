"""People's accounts, personal API tokens and console sessions in ``hub.db`` (SPEC section 12).

Passwords are kept as scrypt hashes (n=2**14, r=8, p=1: tens of milliseconds and 16 MiB a guess);
tokens and session ids are long random strings, kept only as their SHA-256. Repeated failed
logins lock an account for a while (``[console]`` in ``hub.toml``). Every login, failed login,
lockout and change is in the audit log under the person's name (``system`` for the hub's own
command line).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from .auth import PERSON_ROLES, SYSTEM, Person, Role
from .config import ConsoleSettings
from .errors import AlreadyExists, HubError, NotFound
from .store import Store, now_ms

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
TOKEN_PREFIX = "hcp_"
MAX_NAME = 64


class LoginRefused(HubError, PermissionError):
    """A wrong name or password, or a disabled account (one message for all: no hint which)."""


class AccountLocked(LoginRefused):
    """Too many failed logins in a row: the account waits until ``until_ms``."""

    def __init__(self, until_ms: int) -> None:
        super().__init__("account locked after repeated failed logins")
        self.until_ms = until_ms


# -- secrets -------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        given = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, UnicodeError):
        return False
    return hmac.compare_digest(given, bytes.fromhex(digest))


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def secret_hash(secret: bytes | str) -> str:
    """SHA-256 of a token or session id (random strings: no salt or stretching needed)."""
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).hexdigest()


def csrf_token(session_id: str) -> str:
    """The synchroniser token of a console session: derived from the session id, so it dies
    with the session and needs no storage."""
    return hmac.new(session_id.encode(), b"haocha-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_id: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(session_id).encode(), str(given).encode())


# -- accounts ------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    from .audit import SYSTEM_ACTORS

    if not name or len(name) > MAX_NAME or not name.isprintable() or any(c.isspace() for c in name):
        raise ValueError(f"a user name is 1-{MAX_NAME} printable characters without spaces")
    if name in SYSTEM_ACTORS:
        raise ValueError(f"{name!r} names the hub itself in the audit log; choose another user name")
    return name


def add_user(store: Store, name: str, role: str, dept: str | None, password: str, actor: str = SYSTEM) -> None:
    check_name(name)
    if role not in PERSON_ROLES:
        raise ValueError(f"unknown role {role!r}; choose from {', '.join(PERSON_ROLES)}")
    if role == Role.HANDLER and not dept:
        raise ValueError("a handler needs --dept: the department whose tickets they handle")
    if not password:
        raise ValueError("the password is empty")
    hashed = hash_password(password)
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise AlreadyExists(f"user {name} exists")
        conn.execute(
            "INSERT INTO users (name, role, dept, password_hash, created_ms) VALUES (?, ?, ?, ?, ?)",
            (name, role, dept or None, hashed, now_ms()),
        )
        store.audit(actor, "user.add", name, role=role, dept=dept)


def _user(store: Store, name: str) -> dict[str, Any]:
    cur = store.conn.execute("SELECT * FROM users WHERE name = ?", (name,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"unknown user {name}")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def issue_token(store: Store, name: str, actor: str = SYSTEM) -> str:
    """A new personal API token for ``name`` (earlier ones stay valid until revoked one by one or
    the account is disabled)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as conn:
        if _user(store, name)["disabled"]:
            raise ValueError(f"user {name} is disabled")
        conn.execute(
            "INSERT INTO user_tokens (token_hash, user, created_ms) VALUES (?, ?, ?)", (secret_hash(token), name,
                                                                                       now_ms())
        )  # fmt: skip
        store.audit(actor, "user.token", name)
    return token


def set_password(store: Store, name: str, password: str, actor: str = SYSTEM) -> None:
    """A new password for ``name``; it also lifts a lockout and ends the person's console sessions."""
    if not password:
        raise ValueError("the password is empty")
    hashed = hash_password(password)
    with store.transaction() as conn:
        _user(store, name)
        conn.execute(
            "UPDATE users SET password_hash = ?, failed = 0, locked_until_ms = NULL WHERE name = ?", (hashed, name)
        )
        conn.execute("DELETE FROM console_sessions WHERE user = ?", (name,))
        store.audit(actor, "user.password", name)


def disable_user(store: Store, name: str, actor: str = SYSTEM) -> None:
    """Disable an account: its tokens and sessions stop at once."""
    with store.transaction() as conn:
        _user(store, name)
        conn.execute("UPDATE users SET disabled = 1 WHERE name = ?", (name,))
        conn.execute("DELETE FROM user_tokens WHERE user = ?", (name,))
        conn.execute("DELETE FROM console_sessions WHERE user = ?", (name,))
        store.audit(actor, "user.disable", name)


#: Hex digits of a token's hash that name it in ``user tokens`` (safe to show: no way back to it).
TOKEN_ID_DIGITS = 12


def list_tokens(store: Store, name: str) -> list[dict[str, Any]]:
    """``name``'s personal tokens: their ids and when each was issued (ms)."""
    _user(store, name)
    cur = store.conn.execute(
        "SELECT substr(token_hash, 1, ?), created_ms FROM user_tokens WHERE user = ? ORDER BY created_ms",
        (TOKEN_ID_DIGITS, name),
    )
    return [{"id": token_id, "created_ms": created} for token_id, created in cur]


def revoke_token(store: Store, name: str, token_id: str, actor: str = SYSTEM) -> None:
    """End one of ``name``'s tokens (a leaked one), the others stay."""
    if not (len(token_id) == TOKEN_ID_DIGITS and all(c in "0123456789abcdef" for c in token_id)):
        raise ValueError(f"a token id is {TOKEN_ID_DIGITS} hex digits, as `haocha user tokens` shows")
    with store.transaction() as conn:
        _user(store, name)
        gone = conn.execute(
            "DELETE FROM user_tokens WHERE user = ? AND substr(token_hash, 1, ?) = ?", (name, TOKEN_ID_DIGITS, token_id)
        ).rowcount
        if gone == 0:
            raise NotFound(f"{name} has no token {token_id}")
        store.audit(actor, "user.token.revoke", name, token=token_id)


def list_users(store: Store) -> list[dict[str, Any]]:
    now = now_ms()
    cur = store.conn.execute(
        "SELECT name, role, dept, disabled, locked_until_ms, created_ms, "
        "(SELECT count(*) FROM user_tokens t WHERE t.user = u.name) FROM users u ORDER BY name"
    )
    return [
        {"name": n, "role": r, "dept": d, "disabled": bool(off), "locked": bool(lock and lock > now),
         "created_ms": c, "tokens": t}
        for n, r, d, off, lock, c, t in cur
    ]  # fmt: skip


def _person(name: str, role: str, dept: str | None) -> Person:
    return Person(name, Role(role), dept)


def person_for_token(store: Store, token: bytes) -> Person | None:
    """The enabled person a personal token belongs to, or None."""
    row = store.conn.execute(
        "SELECT u.name, u.role, u.dept FROM user_tokens t JOIN users u ON u.name = t.user "
        "WHERE t.token_hash = ? AND u.disabled = 0",
        (secret_hash(token),),
    ).fetchone()
    return None if row is None else _person(*row)


# -- console logins ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    person: Person
    session_id: str
    expires_ms: int


def login(store: Store, name: str, password: str, settings: ConsoleSettings) -> Login:
    """Check a console login; a session on success. Raises LoginRefused (AccountLocked while locked)."""
    name = name[:MAX_NAME]
    try:
        user = _user(store, name)
    except NotFound:
        check_password(password, _DUMMY_HASH)  # the same time as for a known name
        with store.transaction():
            store.audit(SYSTEM, "login.failed", name, reason="unknown user")
        raise LoginRefused("wrong user name or password") from None
    now = now_ms()
    if user["locked_until_ms"] and user["locked_until_ms"] > now:
        with store.transaction():
            store.audit(name, "login.failed", name, reason="locked")
        raise AccountLocked(user["locked_until_ms"])
    if not check_password(password, user["password_hash"]) or user["disabled"]:
        _failed(store, name, "disabled" if user["disabled"] else "wrong password", settings)
    session_id = secrets.token_urlsafe(32)
    expires = _session_expiry(now, now, settings)
    with store.transaction() as conn:
        conn.execute("UPDATE users SET failed = 0, locked_until_ms = NULL WHERE name = ?", (name,))
        conn.execute("DELETE FROM console_sessions WHERE expires_ms <= ?", (now,))
        conn.execute(
            "INSERT INTO console_sessions (session_hash, user, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
            (secret_hash(session_id), name, now, expires),
        )
        store.audit(name, "login", name)
    return Login(_person(name, user["role"], user["dept"]), session_id, expires)


def _failed(store: Store, name: str, reason: str, settings: ConsoleSettings) -> None:
    """Count a failed login; the last one allowed locks the account. Always raises."""
    until = None
    with store.transaction() as conn:
        failed = conn.execute("UPDATE users SET failed = failed + 1 WHERE name = ? RETURNING failed", (name,))
        count = int(failed.fetchone()[0])
        store.audit(name, "login.failed", name, reason=reason, count=count)
        if count >= settings.max_failed_logins:
            until = now_ms() + int(settings.lockout_minutes * 60_000)
            conn.execute("UPDATE users SET failed = 0, locked_until_ms = ? WHERE name = ?", (until, name))
            store.audit(name, "user.lockout", name, failed=count, minutes=settings.lockout_minutes)
    if until is not None:
        raise AccountLocked(until)
    raise LoginRefused("wrong user name or password")


def _session_expiry(created_ms: int, now: int, settings: ConsoleSettings) -> int:
    """A session ends ``idle_minutes`` after its last use, and ``session_hours`` after the login
    at the latest."""
    return min(created_ms + int(settings.session_hours * 3_600_000), now + int(settings.idle_minutes * 60_000))


def session_person(store: Store, session_id: str, settings: ConsoleSettings) -> Person | None:
    """The enabled person of a live console session, or None; using it keeps it alive."""
    now, key = now_ms(), secret_hash(session_id)
    row = store.conn.execute(
        "SELECT u.name, u.role, u.dept, s.created_ms FROM console_sessions s JOIN users u ON u.name = s.user "
        "WHERE s.session_hash = ? AND s.expires_ms > ? AND u.disabled = 0",
        (key, now),
    ).fetchone()
    if row is None:
        return None
    expires = _session_expiry(row[3], now, settings)
    store.conn.execute("UPDATE console_sessions SET expires_ms = ? WHERE session_hash = ?", (expires, key))
    return _person(*row[:3])


def logout(store: Store, session_id: str, person: Person) -> None:
    with store.transaction() as conn:
        conn.execute("DELETE FROM console_sessions WHERE session_hash = ?", (secret_hash(session_id),))
        store.audit(person.name, "logout", person.name)
