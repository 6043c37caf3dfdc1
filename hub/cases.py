"""Cases (办件) and invitations: "one rating per service" (一次一评, SPEC section 1).

Opening a case stores it, counts it (the denominator of the evaluation rate) and queues an
invitation for the window's terminal, all in one transaction; the daemon publishes queued
commands. The HTTP API and ``haocha case open`` both call :func:`open_case`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from protocol import commands
from protocol.rules import valid_text

from .errors import AlreadyExists, NotFound
from .statuses import CaseStatus
from .store import Store, now_ms
from .store.registry import window_exists
from .store.tallies import TallyDelta, local_day

TEXT_MAX = 64  # the wire protocol's limit for case, item and staff


@dataclass(frozen=True, slots=True)
class CaseRequest:
    case: str
    window: str
    item: str | None = None
    staff: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> CaseRequest:
        """Validate a request body; ValueError (HTTP 422) names what is wrong."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        for name in ("case", "window"):
            if not isinstance(body.get(name), str):
                raise ValueError(f"'{name}' is required and must be a string")
        for name in ("item", "staff"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ValueError(f"'{name}' must be a string")
        request = cls(body["case"], body["window"], body.get("item"), body.get("staff"))
        request.check()
        return request

    def check(self) -> None:
        for name in ("case", "window", "item", "staff"):
            value = getattr(self, name)
            if value is not None and not valid_text(value):
                raise ValueError(f"'{name}' must be 1-{TEXT_MAX} characters without control characters")


def window_device(conn: sqlite3.Connection, window: str) -> str | None:
    """The terminal serving ``window`` (the first active one), if any."""
    row = conn.execute(
        "SELECT id FROM devices WHERE window = ? AND revoked = 0 ORDER BY id LIMIT 1", (window,)
    ).fetchone()
    return None if row is None else str(row[0])


def open_case(store: Store, request: CaseRequest, invite_s: float, tz: ZoneInfo, source: str = "api") -> dict[str, Any]:
    """Store and count a case and queue its invitation. NotFound for an unknown window,
    AlreadyExists for a case number seen before."""
    request.check()
    if not window_exists(store, request.window):
        raise NotFound(f"unknown window {request.window}")
    opened = now_ms()
    expires = opened + int(invite_s * 1000)
    with store.transaction() as conn:
        device = window_device(conn, request.window)
        try:
            conn.execute(
                "INSERT INTO cases (case_no, window, device, item, staff, source, status, opened_ms, expires_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                (request.case, request.window, device, request.item, request.staff, source, opened, expires),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"case {request.case} exists already") from None
        delta = TallyDelta()
        delta.add(
            (local_day(opened, tz), device or "", request.window, request.item or "", request.staff or ""), "cases"
        )
        delta.apply(conn)
        if device is not None:
            queue_command(conn, device, commands.Invite(request.case, request.item, request.staff), expires)
        store.audit(source, "case.open", request.case, window=request.window, device=device)
    return {
        "case": request.case,
        "window": request.window,
        "device": device,
        "item": request.item,
        "staff": request.staff,
        "status": CaseStatus.OPEN.value,
        "expires_ms": expires,
    }


def cancel_case(store: Store, case: str, actor: str = "api") -> dict[str, Any]:
    """Close an open case without a rating; its invitation is withdrawn from the terminal."""
    with store.transaction() as conn:
        row = conn.execute("SELECT device, status FROM cases WHERE case_no = ?", (case,)).fetchone()
        if row is None:
            raise NotFound(f"unknown case {case}")
        device, status = row
        if status != CaseStatus.OPEN:
            raise AlreadyExists(f"case {case} is {status}, not open")
        conn.execute("UPDATE cases SET status = 'cancelled', closed_ms = ? WHERE case_no = ?", (now_ms(), case))
        if device is not None:
            queue_command(conn, device, commands.Cancel(case), None)
        store.audit(actor, "case.cancel", case)
    return {"case": case, "status": CaseStatus.CANCELLED.value}


def queue_command(conn: sqlite3.Connection, device: str, command: commands.Command, expires_ms: int | None) -> None:
    """Queue ``command`` for ``device`` in the caller's transaction (the publisher sends it)."""
    conn.execute(
        "INSERT INTO commands (device, payload, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
        (device, json.dumps(commands.payload(command), ensure_ascii=False), now_ms(), expires_ms),
    )


def get_case(conn: sqlite3.Connection, case: str) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT case_no, window, device, item, staff, source, status, opened_ms, expires_ms, "
        "rated_event FROM cases WHERE case_no = ?",
        (case,),
    )
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))


def sign_in_staff(store: Store, window: str, staff: str | None, actor: str = "cli") -> str:
    """Tell the window's terminal who serves there (None signs out); returns the device id."""
    if staff is not None and not valid_text(staff):
        raise ValueError(f"staff id must be 1-{TEXT_MAX} characters without control characters")
    if not window_exists(store, window):
        raise NotFound(f"unknown window {window}")
    with store.transaction() as conn:
        device = window_device(conn, window)
        if device is None:
            raise NotFound(f"window {window} has no terminal")
        queue_command(conn, device, commands.StaffSignIn(staff), None)
        store.audit(actor, "staff.signin" if staff else "staff.signout", window, staff=staff, device=device)
    return device
