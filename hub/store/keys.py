"""Device keys over time (SPEC section 11): rotation a terminal survives, and key history.

A device's MAC key and broker password travel together under a key id (``kid``, 1, 2, …). A
routine rotation (:func:`start_rotation`) adds a *pending* pair and queues a ``rekey`` command
carrying it to the terminal over its own authenticated session. The broker keeps the old
password meanwhile, so the terminal stays connected. The terminal stores the new pair, MACs with
it from then on and says so (frames name ``kid``; its retained state carries ``kid``). The first
proof that the terminal has the new pair *promotes* it (:func:`promote`): it becomes the active
pair, the broker's password file changes (Mosquitto then drops the old session and the terminal
logs in with the new password), and the old key is *retired*: still accepted for a grace period,
so frames in flight or queued at the broker are not counted as forgeries, and kept for ever, so
stored MACs stay verifiable.

A terminal whose key may have leaked is rotated at once instead (:func:`rotate_now`): the new pair
is active immediately and every older key is distrusted; the terminal needs its new file by hand.
A revoked device stays revoked through any rotation; :func:`reinstate` provisions it again on
purpose.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from protocol import commands
from protocol.errors import ProtocolError

from ..errors import HubError
from . import Store, now_ms
from .registry import get_device

REKEY = commands.CommandName.REKEY.value
#: Rekey commands among the queued commands (their payloads are JSON written by :func:`_queue`).
_REKEY_LIKE = '{"cmd": "rekey"%'


class DeviceRevoked(HubError, PermissionError):
    """A rotation of a revoked device: it stays revoked until it is reinstated on purpose."""


@dataclass(frozen=True, slots=True)
class NewSecrets:
    """A new pair for a device: the MAC key (hex), the broker password and its Mosquitto hash."""

    mac_key: str
    password: str
    password_hash: str


def _next_kid(conn: sqlite3.Connection, device: str) -> int:
    row = conn.execute("SELECT coalesce(max(kid), 0) FROM device_keys WHERE device = ?", (device,)).fetchone()
    return int(row[0]) + 1


def _insert(conn: sqlite3.Connection, device: str, kid: int, secrets: NewSecrets, state: str) -> None:
    conn.execute(
        "INSERT INTO device_keys (device, kid, mac_key, password_hash, state, created_ms, active_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (device, kid, secrets.mac_key, secrets.password_hash, state, now_ms(), now_ms() if state == "active" else None),
    )


def _drop_pending(conn: sqlite3.Connection, device: str) -> None:
    """A newer rotation supersedes a pending one: its key is never accepted, its rekey command is
    not sent, and its id is never used again (a terminal may have taken it up)."""
    conn.execute(
        "UPDATE device_keys SET state = 'superseded', trusted = 0 WHERE device = ? AND state = 'pending'", (device,)
    )
    conn.execute(
        "UPDATE commands SET published_ms = -1 WHERE device = ? AND published_ms IS NULL AND payload LIKE ?",
        (device, _REKEY_LIKE),
    )


def _queue(conn: sqlite3.Connection, device: str, command: commands.Rekey) -> None:
    """A command for the hub's publisher (hub.commands), with no expiry: it must arrive."""
    conn.execute(
        "INSERT INTO commands (device, payload, created_ms) VALUES (?, ?, ?)",
        (device, json.dumps(commands.payload(command), ensure_ascii=False), now_ms()),
    )


def _activate(conn: sqlite3.Connection, device: str, kid: int, trust_old: bool) -> None:
    """Make ``kid`` the active pair: the old active one retires (distrusted unless ``trust_old``)."""
    now = now_ms()
    conn.execute(
        "UPDATE device_keys SET state = 'retired', retired_ms = ?, trusted = trusted * ? "
        "WHERE device = ? AND state IN ('active', 'pending') AND kid != ?",
        (now, int(trust_old), device, kid),
    )
    if not trust_old:
        conn.execute("UPDATE device_keys SET trusted = 0 WHERE device = ? AND kid != ?", (device, kid))
    conn.execute(
        "UPDATE device_keys SET state = 'active', active_ms = ? WHERE device = ? AND kid = ?", (now, device, kid)
    )
    conn.execute(
        "UPDATE devices SET kid = ?, mac_key = (SELECT mac_key FROM device_keys WHERE device = ? AND kid = ?), "
        "password_hash = (SELECT password_hash FROM device_keys WHERE device = ? AND kid = ?), rotated_ms = ? "
        "WHERE id = ?",
        (kid, device, kid, device, kid, now, device),
    )


def rekey_command(kid: int, secrets: NewSecrets) -> commands.Rekey:
    """What the terminal receives: the pair and its id (secret: only its own ``cmd`` topic, which
    the broker's ACL lets no one else read)."""
    return commands.Rekey(kid, secrets.mac_key, secrets.password)


def start_rotation(store: Store, device: str, secrets: NewSecrets, actor: str = "cli") -> int:
    """Add ``secrets`` as the device's pending pair and queue its ``rekey`` command; its kid."""
    dev = get_device(store, device)
    if dev.revoked:
        raise DeviceRevoked(f"device {device} is revoked; `haocha device reinstate {device}` provisions it again")
    with store.transaction() as conn:
        _drop_pending(conn, device)
        kid = _next_kid(conn, device)
        _insert(conn, device, kid, secrets, "pending")
        _queue(conn, device, rekey_command(kid, secrets))
        store.bump_registry()
        store.audit(actor, "device.rotate", device, kid=kid)
    return kid


def rotate_now(store: Store, device: str, secrets: NewSecrets, actor: str = "cli") -> int:
    """New pair active at once, every older key distrusted: for a key that may have leaked."""
    dev = get_device(store, device)
    if dev.revoked:
        raise DeviceRevoked(f"device {device} is revoked; `haocha device reinstate {device}` provisions it again")
    return _replace_at_once(store, device, secrets, actor, "device.rotate_now")


def reinstate(store: Store, device: str, secrets: NewSecrets, actor: str = "cli") -> int:
    """Provision a revoked device again, on purpose: new pair active, old keys distrusted."""
    if not get_device(store, device).revoked:
        raise HubError(f"device {device} is not revoked; use `haocha device rotate {device}`")
    return _replace_at_once(store, device, secrets, actor, "device.reinstate")


def _replace_at_once(store: Store, device: str, secrets: NewSecrets, actor: str, action: str) -> int:
    with store.transaction() as conn:
        _drop_pending(conn, device)
        kid = _next_kid(conn, device)
        _insert(conn, device, kid, secrets, "pending")
        _activate(conn, device, kid, trust_old=False)
        conn.execute("UPDATE devices SET revoked = 0 WHERE id = ?", (device,))
        store.bump_registry()
        store.audit(actor, action, device, kid=kid)
    return kid


def promote(store: Store, device: str, kid: int) -> bool:
    """Within the caller's transaction: the terminal showed it has pending pair ``kid``; make it
    active (the old key retires, trusted for the grace period). False if ``kid`` is not pending."""
    conn = store.conn
    row = conn.execute(
        "SELECT 1 FROM device_keys WHERE device = ? AND kid = ? AND state = 'pending'", (device, kid)
    ).fetchone()
    if row is None:
        return False
    _activate(conn, device, kid, trust_old=True)
    store.bump_registry()
    store.audit("system", "device.rekeyed", device, kid=kid)
    return True


def resend_rekey(store: Store, device: str, kid: int, not_within_ms: int) -> bool:
    """Within the caller's transaction: queue pending ``kid``'s rekey command again (the broker
    may have lost it), unless one is waiting or went out less than ``not_within_ms`` ago."""
    conn = store.conn
    rows = conn.execute(
        "SELECT payload, published_ms FROM commands WHERE device = ? AND payload LIKE ? ORDER BY id DESC LIMIT 1",
        (device, _REKEY_LIKE),
    ).fetchall()
    if not rows:
        return False
    try:
        command, published_ms = commands.parse(json.loads(rows[0][0])), rows[0][1]
    except (ValueError, ProtocolError):
        return False
    if not isinstance(command, commands.Rekey) or command.kid != kid:
        return False
    if published_ms is None or published_ms > now_ms() - not_within_ms:
        return False
    _queue(conn, device, command)
    return True


def key_history(store: Store, device: str) -> list[dict[str, object]]:
    """Every key id of ``device`` with its state and times (no secrets)."""
    cur = store.conn.execute(
        "SELECT kid, state, trusted, created_ms, active_ms, retired_ms FROM device_keys WHERE device = ? ORDER BY kid",
        (device,),
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]
