"""An alert's life in the store: open → acknowledged (a person's comment) → closed.

The evaluation loop reports, rule by rule, every subject whose condition holds now
(:func:`sync`): a new subject opens an alert and queues one delivery per webhook in the same
transaction; a subject whose condition cleared gets its alert closed. A condition that comes back
opens a new alert, notified again. People acknowledge and close alerts (:func:`acknowledge`,
:func:`close`); an alert closed by hand while its condition still holds stays closed (``held``)
until the condition clears. Every change goes to the audit log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import HubError, NotFound
from ..store import Store, now_ms

STATES = ("open", "acknowledged", "closed")
_COLUMNS = (
    "id", "rule", "subject", "state", "summary", "detail", "opened_ms", "updated_ms", "acked_ms", "acked_by",
    "comment", "closed_ms", "closed_by", "close_reason",
)  # fmt: skip
MAX_COMMENT = 500


class AlertStateError(HubError, ValueError):
    """An alert change that does not fit its state (acknowledging a closed alert, …)."""


class BadComment(HubError, ValueError):
    """An acknowledgement without a comment, or a comment too long."""


@dataclass(frozen=True)
class Finding:
    """A rule's condition holds for ``subject`` (a window, a device, ``outbox``, ``writer``)."""

    rule: str
    subject: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


def sync(
    store: Store,
    rule: str,
    findings: Iterable[Finding],
    webhooks: Iterable[str],
    at_ms: int,
    already_sent: Callable[[str], set[str]] = lambda subject: set(),
    lingering: frozenset[str] = frozenset(),
) -> list[int]:
    """Bring ``rule``'s alerts in line with its ``findings`` (all subjects whose condition holds);
    returns the ids of alerts opened. One transaction, and none when nothing changes.
    ``already_sent(subject)`` names webhooks that got the alert while the store could not take it:
    their deliveries are stored as sent. ``lingering`` subjects are clear, but not for long enough
    to close their alerts (or to let one closed by hand open again)."""
    found = {f.subject: f for f in findings}
    if _plan(store.conn, rule, found, lingering).empty:
        return []
    opened = []
    with store.transaction() as conn:
        plan = _plan(conn, rule, found, lingering)  # again inside: a person may have closed one meanwhile
        for finding in plan.to_open:
            opened.append(_open(store, finding, list(webhooks), at_ms, already_sent(finding.subject)))
        for alert_id in plan.to_close:
            _set_closed(store, alert_id, "system", "cleared", held=False, at_ms=at_ms)
        for subject in plan.to_unhold:
            conn.execute("UPDATE alerts SET held = 0 WHERE rule = ? AND subject = ? AND held = 1", (rule, subject))
        for alert_id, finding in plan.to_update:
            conn.execute(
                "UPDATE alerts SET detail = ?, updated_ms = ? WHERE id = ?", (_detail(finding), at_ms, alert_id)
            )
    return opened


@dataclass
class _Plan:
    to_open: list[Finding]
    to_close: list[int]
    to_unhold: set[str]
    to_update: list[tuple[int, Finding]]

    @property
    def empty(self) -> bool:
        return not (self.to_open or self.to_close or self.to_unhold or self.to_update)


def _plan(conn: sqlite3.Connection, rule: str, found: dict[str, Finding], lingering: frozenset[str]) -> _Plan:
    cur = conn.execute("SELECT id, subject, detail FROM alerts WHERE rule = ? AND state != 'closed'", (rule,))
    live = {subject: (alert_id, detail) for alert_id, subject, detail in cur}
    held = {s for (s,) in conn.execute("SELECT subject FROM alerts WHERE rule = ? AND held = 1", (rule,))}
    return _Plan(
        to_open=[f for s, f in found.items() if s not in live and s not in held],
        to_close=[alert_id for s, (alert_id, _d) in live.items() if s not in found and s not in lingering],
        to_unhold=held - found.keys() - lingering,
        to_update=[(live[s][0], f) for s, f in found.items() if s in live and _detail(f) != live[s][1]],
    )


def _detail(finding: Finding) -> str:
    return json.dumps(finding.detail, ensure_ascii=False, sort_keys=True)


def _open(store: Store, finding: Finding, webhooks: list[str], at_ms: int, sent: set[str]) -> int:
    cur = store.conn.execute(
        "INSERT INTO alerts (rule, subject, summary, detail, opened_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
        (finding.rule, finding.subject, finding.summary, _detail(finding), at_ms, at_ms),
    )
    alert_id = int(cur.lastrowid or 0)
    store.conn.executemany(
        "INSERT INTO alert_deliveries (alert_id, webhook, next_ms, state, sent_ms) VALUES (?, ?, ?, ?, ?)",
        [(alert_id, name, at_ms, *(("sent", at_ms) if name in sent else ("pending", None))) for name in webhooks],
    )
    store.audit("system", "alert.open", f"alert:{alert_id}", rule=finding.rule, about=finding.subject,
                summary=finding.summary)  # fmt: skip
    return alert_id


def _set_closed(
    store: Store, alert_id: int, actor: str, reason: str, held: bool, at_ms: int, comment: str = ""
) -> None:
    store.conn.execute(
        "UPDATE alerts SET state = 'closed', closed_ms = ?, closed_by = ?, close_reason = ?, held = ?, updated_ms = ? "
        "WHERE id = ?",
        (at_ms, actor, reason, int(held), at_ms, alert_id),
    )
    store.audit(actor, "alert.close", f"alert:{alert_id}", reason=reason, **({"comment": comment} if comment else {}))


def _comment(text: str, required: bool) -> str:
    text = text.strip()
    if required and not text:
        raise BadComment("an acknowledgement needs a comment (what is being done about it)")
    if len(text) > MAX_COMMENT:
        raise BadComment(f"the comment is longer than {MAX_COMMENT} characters")
    return text


def acknowledge(store: Store, alert_id: int, actor: str, comment: str) -> dict[str, Any]:
    """open → acknowledged, with the person's comment; AlertStateError from any other state."""
    text = _comment(comment, required=True)
    with store.transaction() as conn:
        alert = _load(conn, alert_id)
        if alert["state"] != "open":
            raise AlertStateError(f"alert {alert_id} is {alert['state']}: only an open alert can be acknowledged")
        at = now_ms()
        conn.execute(
            "UPDATE alerts SET state = 'acknowledged', acked_ms = ?, acked_by = ?, comment = ?, updated_ms = ? "
            "WHERE id = ?",
            (at, actor, text, at, alert_id),
        )
        store.audit(actor, "alert.ack", f"alert:{alert_id}", comment=text)
        return _load(conn, alert_id)


def close(store: Store, alert_id: int, actor: str, comment: str = "") -> dict[str, Any]:
    """Close by hand; it stays closed while its condition holds (a new alert once it cleared)."""
    text = _comment(comment, required=False)
    with store.transaction() as conn:
        alert = _load(conn, alert_id)
        if alert["state"] == "closed":
            raise AlertStateError(f"alert {alert_id} is closed already")
        _set_closed(store, alert_id, actor, "manual", held=True, at_ms=now_ms(), comment=text)
        return _load(conn, alert_id)


def _load(conn: sqlite3.Connection, alert_id: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return _view(row)


def _view(row: tuple[Any, ...]) -> dict[str, Any]:
    alert = dict(zip(_COLUMNS, row, strict=True))
    alert["detail"] = json.loads(alert["detail"])
    return alert


def get(store: Store, alert_id: int) -> dict[str, Any]:
    return _load(store.conn, alert_id)


def list_alerts(store: Store, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Newest first. ``state``: one of :data:`STATES`, ``live`` (open or acknowledged), None: all."""
    where = ""
    args: tuple[str, ...] = ()
    if state == "live":
        where = "WHERE state != 'closed'"
    elif state is not None:
        where, args = "WHERE state = ?", (state,)
    cur = store.conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM alerts {where} ORDER BY id DESC LIMIT ?", (*args, limit)
    )
    return [_view(row) for row in cur]
