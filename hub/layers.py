"""Layered configuration (SPEC section 13): settings at hall, window and device level pushed to
the terminals as a versioned configuration they apply and report back.

A device's *effective* settings are the hall layer, overlaid by its window's, overlaid by its own
(the lower wins); keys no layer sets keep the terminal's ``terminal.toml`` values. Whenever a layer
changes, every device it reaches whose effective settings changed gets a new version (one more
than its last), stored with its body and queued on the hub's command queue (:mod:`hub.commands`)
in the same transaction. A terminal offline for days gets it when it comes back: its state then
reports an older version and :func:`on_report` queues the newest again.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from protocol import commands
from protocol.settings import SCOPES, SETTINGS, setting_problem
from protocol.state import ConfigReport

from .cases import queue_command
from .errors import HubError, NotFound
from .store import Store, now_ms
from .store.registry import window_exists

#: A state still on an older version gets the newest again, but not within this long of the last
#: send (a terminal defers a configuration while a rating is under way and says so every 30 s).
RESEND_MS = 10_000
HALL = ""  #: the target of the hall layer


class LayerError(HubError, ValueError):
    """A layer the hub can already tell is bad (one line naming the key); nothing was stored."""


@dataclass(frozen=True, slots=True)
class Effective:
    """One device's configuration: each key's value and the layer it comes from."""

    device: str
    window: str
    values: dict[str, tuple[Any, str]]  #: key → (value, "hall" | "window W" | "device T")

    @property
    def settings(self) -> dict[str, Any]:
        return {key: value for key, (value, _layer) in sorted(self.values.items())}


def _scope(window: str | None, device: str | None) -> tuple[str, str]:
    if window is not None and device is not None:
        raise LayerError("give --window or --device, not both")
    if device is not None:
        return "device", device
    if window is not None:
        return "window", window
    return "hall", HALL


def _check_target(store: Store, scope: str, target: str) -> None:
    if scope == "window" and not window_exists(store, target):
        raise NotFound(f"unknown window {target}")
    if scope == "device" and store.conn.execute("SELECT 1 FROM devices WHERE id = ?", (target,)).fetchone() is None:
        raise NotFound(f"unknown device {target}")


def set_layer(
    store: Store, key: str, value: Any, window: str | None = None, device: str | None = None, actor: str = "cli"
) -> list[tuple[str, int]]:
    """Set ``key`` at the hall (or ``window``'s, or ``device``'s) level; return the (device,
    version) pushes it made. LayerError (nothing stored) when the value is not valid."""
    problem = setting_problem(key, value)
    if problem is not None:
        raise LayerError(problem)
    scope, target = _scope(window, device)
    _check_target(store, scope, target)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO config_layers (scope, target, key, value, who, set_ms) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (scope, target, key) DO UPDATE SET value = excluded.value, who = excluded.who, "
            "set_ms = excluded.set_ms",
            (scope, target, key, json.dumps(value, ensure_ascii=False), actor, now_ms()),
        )
        store.audit(actor, "config.set", _subject(scope, target), key=key, value=value)
        return push_changed(conn, scope, target)


def unset_layer(
    store: Store, key: str, window: str | None = None, device: str | None = None, actor: str = "cli"
) -> list[tuple[str, int]]:
    """Remove ``key`` from a level (the next level up, or terminal.toml, applies again)."""
    if key not in SETTINGS:
        raise LayerError(f"unknown setting {key!r} (known: {', '.join(SETTINGS)})")
    scope, target = _scope(window, device)
    _check_target(store, scope, target)
    with store.transaction() as conn:
        gone = conn.execute(
            "DELETE FROM config_layers WHERE scope = ? AND target = ? AND key = ?", (scope, target, key)
        ).rowcount
        if not gone:
            raise NotFound(f"{key} is not set at {_subject(scope, target)}")
        store.audit(actor, "config.unset", _subject(scope, target), key=key)
        return push_changed(conn, scope, target)


def _subject(scope: str, target: str) -> str:
    return "hall" if scope == "hall" else f"{scope} {target}"


def layers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every layer row, hall first."""
    order = {scope: i for i, scope in enumerate(SCOPES)}
    cur = conn.execute("SELECT scope, target, key, value, who, set_ms FROM config_layers")
    rows = [
        {"scope": s, "target": t or None, "key": k, "value": json.loads(v), "who": w, "set_ms": ms}
        for s, t, k, v, w, ms in cur
    ]
    return sorted(rows, key=lambda r: (order[r["scope"]], r["target"] or "", r["key"]))


def effective(conn: sqlite3.Connection, device: str) -> Effective:
    """``device``'s settings from the three layers (NotFound for an unknown device)."""
    row = conn.execute("SELECT window FROM devices WHERE id = ?", (device,)).fetchone()
    if row is None:
        raise NotFound(f"unknown device {device}")
    window = str(row[0])
    return Effective(device, window, window_values(conn, window) | _values(conn, "device", device))


def window_values(conn: sqlite3.Connection, window: str) -> dict[str, tuple[Any, str]]:
    """The hall layer overlaid by ``window``'s: what a window's terminals share."""
    return _values(conn, "hall", HALL) | _values(conn, "window", window)


def _values(conn: sqlite3.Connection, scope: str, target: str) -> dict[str, tuple[Any, str]]:
    cur = conn.execute("SELECT key, value FROM config_layers WHERE scope = ? AND target = ?", (scope, target))
    return {key: (json.loads(value), _subject(scope, target)) for key, value in cur}


def _reached(conn: sqlite3.Connection, scope: str, target: str) -> list[str]:
    """The active devices a layer reaches."""
    where = {"hall": "1", "window": "window = ?", "device": "id = ?"}[scope]
    args = () if scope == "hall" else (target,)
    return [d for (d,) in conn.execute(f"SELECT id FROM devices WHERE revoked = 0 AND {where} ORDER BY id", args)]


def push_changed(conn: sqlite3.Connection, scope: str, target: str) -> list[tuple[str, int]]:
    """In the caller's transaction: a new version for each device the layer reaches whose
    effective settings differ from its last push; returns the (device, version) pushed."""
    pushed = []
    for device in _reached(conn, scope, target):
        version = push_if_changed(conn, device)
        if version is not None:
            pushed.append((device, version))
    return pushed


def push_if_changed(conn: sqlite3.Connection, device: str) -> int | None:
    """Queue ``device``'s effective configuration as a new version if it differs from the last
    one pushed (none pushed yet: if any layer reaches it); the version, or None."""
    settings = effective(conn, device).settings
    last = last_push(conn, device)
    if (last is None and not settings) or (last is not None and last[1] == settings):
        return None
    reported = conn.execute("SELECT applied, refused FROM config_reports WHERE device = ?", (device,)).fetchone()
    version = max([last[0] if last else 0, *(v or 0 for v in reported or ())]) + 1
    body = json.dumps(settings, ensure_ascii=False, sort_keys=True)
    conn.execute(
        "INSERT INTO config_pushes (device, version, body, pushed_ms) VALUES (?, ?, ?, ?)",
        (device, version, body, now_ms()),
    )
    queue_command(conn, device, commands.Config(version, settings), None)
    return version


def last_push(conn: sqlite3.Connection, device: str) -> tuple[int, dict[str, Any], int] | None:
    """(version, settings, pushed_ms) of the newest configuration pushed to ``device``."""
    row = conn.execute(
        "SELECT version, body, pushed_ms FROM config_pushes WHERE device = ? ORDER BY version DESC LIMIT 1", (device,)
    ).fetchone()
    return None if row is None else (int(row[0]), json.loads(row[1]), int(row[2]))


def on_report(conn: sqlite3.Connection, device: str, report: ConfigReport, at_ms: int) -> int | None:
    """In the ingest transaction: store what ``device``'s state says of its configuration; queue
    the newest version again when the state is older (an offline terminal, a lost command), not
    one it refused, and not within :data:`RESEND_MS` of the last send. The version queued, or None."""
    conn.execute(
        "INSERT INTO config_reports (device, applied, refused, refused_reason, reported_ms) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (device) DO UPDATE SET applied = excluded.applied, refused = excluded.refused, "
        "refused_reason = excluded.refused_reason, reported_ms = excluded.reported_ms",
        (device, report.version, report.refused_version, report.refused_reason or None, at_ms),
    )
    last = last_push(conn, device)
    if last is None:
        return push_if_changed(conn, device)  # provisioned after the layers were set
    version, settings, pushed_ms = last
    if report.version >= version or report.refused_version == version or at_ms - pushed_ms < RESEND_MS:
        return None
    conn.execute("UPDATE config_pushes SET pushed_ms = ? WHERE device = ? AND version = ?", (at_ms, device, version))
    queue_command(conn, device, commands.Config(version, settings), None)
    return version


def device_status(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per device: the version pushed, the version applied and the last refusal."""
    out: dict[str, dict[str, Any]] = {}
    for device, pushed in conn.execute("SELECT device, max(version) FROM config_pushes GROUP BY device"):
        out.setdefault(device, {})["pushed"] = pushed
    for device, applied, refused, reason in conn.execute(
        "SELECT device, applied, refused, refused_reason FROM config_reports"
    ):
        out.setdefault(device, {}).update(applied=applied, refused=refused, refused_reason=reason)
    return out


def describe(status: dict[str, Any] | None) -> str | None:
    """One cell for ``device list`` and the console: "3", "3, pending 4", "3, refused 4: why" (the
    newest it heard of was refused: pushed by this hub, or by another that has its credentials)."""
    if not status:
        return None
    applied, pushed, refused = status.get("applied"), status.get("pushed"), status.get("refused")
    text = "none" if applied is None else str(applied)
    if refused is not None and refused > (applied or 0) and (pushed is None or refused >= pushed):
        return f"{text}, refused {refused}: {status.get('refused_reason') or ''}".rstrip(": ")
    if pushed is not None and (applied is None or applied < pushed):
        return f"{text}, pending {pushed}"
    return text


def opening_for(conn: sqlite3.Connection) -> dict[str, str]:
    """Device → its effective ``opening`` hours, for the active devices a layer sets one for (two
    queries, whatever the number of terminals: the alarm rules run every few seconds)."""
    set_at = {(scope, target): json.loads(value) for scope, target, value in
              conn.execute("SELECT scope, target, value FROM config_layers WHERE key = 'opening'")}  # fmt: skip
    if not set_at:
        return {}
    out = {}
    for device, window in conn.execute("SELECT id, window FROM devices WHERE revoked = 0"):
        for layer in (("device", device), ("window", window), ("hall", HALL)):
            if layer in set_at:
                out[device] = str(set_at[layer])
                break
    return out
