"""Windows, service items and devices: the hall's registry, with an audit entry per change."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import ProtocolError
from protocol.frames import normalise_state
from protocol.topics import check_device_id, valid_id

from ..errors import AlreadyExists, NotFound
from . import Store, now_ms


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    window: str
    kind: str
    mode: str
    mac_key: bytes  #: the active key
    password_hash: str
    revoked: bool
    kid: int = 1  #: the active key's id
    #: Every key a frame may name now: active, pending (a rotation the terminal has not taken up
    #: yet) and retired ones within the grace period (see :mod:`hub.store.keys`).
    keys: dict[int, bytes] = field(default_factory=dict)
    pending_kid: int | None = None

    def key_for(self, kid: int | None) -> bytes | None:
        """The key a frame naming ``kid`` must be MACed with (None: the active one), or None if
        that key is unknown, retired past its grace period, or distrusted."""
        if kid is None or kid == self.kid:
            return self.mac_key
        return self.keys.get(kid)


def _check_id(kind: str, value: str) -> None:
    if not valid_id(value):
        raise ValueError(f"invalid {kind} id {value!r}: use 1-32 of A-Z a-z 0-9 _ -")


def add_window(store: Store, window: str, name: str, dept: str | None, actor: str = "cli") -> None:
    _check_id("window", window)
    with store.transaction():
        try:
            store.conn.execute(
                "INSERT INTO windows (id, name, dept, created_ms) VALUES (?, ?, ?, ?)", (window, name, dept, now_ms())
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"window {window} exists already") from None
        store.audit(actor, "window.add", window, name=name, dept=dept)


def add_item(store: Store, code: str, name: str, actor: str = "cli") -> None:
    if not code or len(code) > 64 or not code.isprintable():
        raise ValueError(f"invalid item code {code!r}: 1-64 printable characters")
    with store.transaction():
        try:
            store.conn.execute("INSERT INTO items (code, name, created_ms) VALUES (?, ?, ?)", (code, name, now_ms()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"item {code} exists already") from None
        store.audit(actor, "item.add", code, name=name)


def window_exists(store: Store, window: str) -> bool:
    return store.conn.execute("SELECT 1 FROM windows WHERE id = ?", (window,)).fetchone() is not None


def list_windows(store: Store) -> list[dict[str, Any]]:
    cur = store.conn.execute("SELECT id, name, dept FROM windows ORDER BY id")
    return [{"window": w, "name": n, "dept": d} for w, n, d in cur]


def list_items(store: Store) -> list[dict[str, Any]]:
    return [{"item": c, "name": n} for c, n in store.conn.execute("SELECT code, name FROM items ORDER BY code")]


def insert_device(
    store: Store, device: str, window: str, kind: str, mode: str, mac_key: str, password_hash: str, actor: str = "cli"
) -> None:
    check_device_id(device)
    if not window_exists(store, window):
        raise NotFound(f"unknown window {window} (add it with `haocha window add`)")
    with store.transaction():
        try:
            store.conn.execute(
                "INSERT INTO devices (id, window, kind, mode, mac_key, password_hash, revoked, created_ms, kid)"
                " VALUES (?, ?, ?, ?, ?, ?, 0, ?, 1)",
                (device, window, kind, mode, mac_key, password_hash, now_ms()),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"device {device} exists already (use `device rotate` for new secrets)") from None
        store.conn.execute(
            "INSERT INTO device_keys (device, kid, mac_key, password_hash, state, created_ms, active_ms) "
            "VALUES (?, 1, ?, ?, 'active', ?, ?)",
            (device, mac_key, password_hash, now_ms(), now_ms()),
        )
        store.bump_registry()
        store.audit(actor, "device.add", device, window=window, kind=kind, mode=mode)


_DEVICE_COLUMNS = "id, window, kind, mode, mac_key, password_hash, revoked, kid"


def get_device(store: Store, device: str) -> Device:
    row = store.conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device,)).fetchone()
    if row is None:
        raise NotFound(f"unknown device {device}")
    return _device(row)


def _device(row: tuple[Any, ...], keys: dict[int, bytes] | None = None, pending: int | None = None) -> Device:
    return Device(
        row[0], row[1], row[2], row[3], bytes.fromhex(row[4]), row[5], bool(row[6]), row[7], keys or {}, pending
    )


def all_devices(store: Store, grace_ms: int = 0) -> dict[str, Device]:
    """Every device with the keys its frames may name now (``grace_ms``: how long a retired key
    is still accepted)."""
    keys: dict[str, dict[int, bytes]] = {}
    pending: dict[str, int] = {}
    cur = store.conn.execute(
        "SELECT device, kid, mac_key, state FROM device_keys WHERE state IN ('active', 'pending') "
        "OR (state = 'retired' AND trusted = 1 AND retired_ms > ?)",
        (now_ms() - grace_ms,),
    )
    for device, kid, mac_key, state in cur:
        keys.setdefault(device, {})[kid] = bytes.fromhex(mac_key)
        if state == "pending":
            pending[device] = kid
    cur = store.conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices")
    return {row[0]: _device(row, keys.get(row[0]), pending.get(row[0])) for row in cur}


def list_devices(store: Store) -> list[dict[str, Any]]:
    cur = store.conn.execute("""
        SELECT d.id, d.window, d.kind, d.mode, d.revoked, d.state, d.state_ms,
               (SELECT coalesce(sum(n), 0) FROM frame_counts f WHERE f.device = d.id AND f.outcome = 'stored'),
               d.kid, (SELECT k.kid FROM device_keys k WHERE k.device = d.id AND k.state = 'pending')
        FROM devices d ORDER BY d.id""")
    return [
        {
            "device": r[0],
            "window": r[1],
            "kind": r[2],
            "mode": r[3],
            "revoked": bool(r[4]),
            "state": r[5],
            "state_ms": r[6],
            "events": r[7],
            "kid": r[8],
            "pending_kid": r[9],
        }
        for r in cur
    ]


def revoke_device(store: Store, device: str, actor: str = "cli") -> None:
    get_device(store, device)
    with store.transaction():
        store.conn.execute("UPDATE devices SET revoked = 1 WHERE id = ?", (device,))
        store.bump_registry()
        store.audit(actor, "device.revoke", device)


def set_device_state(store: Store, device: str, state: dict[str, Any], at_ms: int) -> None:
    """Store a terminal's state. An offline one (its last will says only that) keeps the fields
    last known, so a technician still sees the version, backlog and clock of a silent terminal."""
    if state.get("online") is False:
        row = store.conn.execute("SELECT state FROM devices WHERE id = ?", (device,)).fetchone()
        state = stored_state(row[0] if row else None) | state
    store.conn.execute("UPDATE devices SET state = ?, state_ms = ? WHERE id = ?", (json.dumps(state), at_ms, device))


def stored_state(text: str | None) -> dict[str, Any]:
    """A device's stored state as checked fields; {} when there is none or it cannot be read
    (a row written before states were checked on ingest)."""
    if not text:
        return {}
    try:
        obj = json.loads(text)
        return normalise_state(obj) if isinstance(obj, dict) else {}
    except (ValueError, RecursionError, ProtocolError):
        return {}
