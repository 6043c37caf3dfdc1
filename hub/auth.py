"""Who may do what: people, roles and the one permission table (SPEC section 12).

Both the HTTP API (:mod:`hub.http`) and the console (:mod:`hub.http.console`) ask :func:`can`,
so a role acting outside its rights gets 403 from both. The table is data: an action is a
string such as ``"ticket.assign"``, and :data:`PERMISSIONS` lists the actions of each role.
Some roles only act within their department (:data:`SCOPED`): a handler reads and moves only the
tickets whose department is theirs.

The hub's machine token (``haocha hub token``) is the business system: it acts as
:data:`MACHINE`, opens and cancels cases, reads stats, and nothing else. Its actions are
audited under ``system``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import HubError


class Role(enum.StrEnum):
    """A person's role (contract names), and ``machine`` for the hub token."""

    SUPERVISOR = "supervisor"
    HANDLER = "handler"
    TECHNICIAN = "technician"
    AUDITOR = "auditor"
    MACHINE = "machine"


#: Roles a person account can have (``haocha user add --role``).
PERSON_ROLES: tuple[str, ...] = tuple(r.value for r in (Role.SUPERVISOR, Role.HANDLER, Role.TECHNICIAN, Role.AUDITOR))
ROLE_NAMES_ZH = {
    Role.SUPERVISOR: "大厅主管",
    Role.HANDLER: "承办人",
    Role.TECHNICIAN: "技术员",
    Role.AUDITOR: "审计员",
    Role.MACHINE: "业务系统",
}
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Person:
    """Whom a request acts for: a person from their login or token, or the machine token."""

    name: str
    role: Role
    dept: str | None = None

    @property
    def is_machine(self) -> bool:
        return self.role is Role.MACHINE


MACHINE = Person(SYSTEM, Role.MACHINE)

#: Every action, with what it lets one do. Pages and routes name one of these.
ACTIONS: dict[str, str] = {
    "case.open": "open a case and invite a rating (POST /api/v1/cases)",
    "case.cancel": "cancel a case",
    "case.read": "read a case and its status",
    "stats.read": "figures per window, item and day",
    "stats.staff": "per-staff figures",
    "today.read": "the Today page",
    "windows.read": "windows and their figures",
    "ticket.read": "bad-review tickets and their text",
    "ticket.assign": "转办: assign a ticket",
    "ticket.appeal": "申诉: appeal a ticket",
    "ticket.verify": "核实: verify a ticket",
    "ticket.feedback": "反馈: give a ticket's feedback",
    "alerts.read": "alerts and their rules",
    "alerts.change": "acknowledge and close alerts",
    "reports.read": "reports",
    "devices.read": "terminals and their health",
    "devices.change": "terminal actions",
    "upstream.read": "the upstream queue",
    "upstream.change": "unpark upstream records",
    "audit.read": "the audit log",
    "users.read": "the list of people",
}
_READS = frozenset(a for a in ACTIONS if a.endswith(".read")) | {"stats.staff"}
_TICKET_ACTIONS = frozenset({"ticket.read", "ticket.assign", "ticket.appeal", "ticket.verify", "ticket.feedback"})

#: The permission table (SPEC section 12).
PERMISSIONS: dict[Role, frozenset[str]] = {
    # The business system: its cases (reading one back is part of opening it) and the stats.
    Role.MACHINE: frozenset({"case.open", "case.cancel", "case.read", "stats.read", "stats.staff"}),
    Role.SUPERVISOR: (_READS - {"audit.read"}) | _TICKET_ACTIONS | {"alerts.change", "upstream.change"},
    Role.HANDLER: frozenset({"ticket.read", "ticket.assign", "ticket.appeal", "ticket.feedback"}),
    Role.TECHNICIAN: frozenset(
        {"stats.read", "devices.read", "devices.change", "upstream.read", "upstream.change", "alerts.read"}
    ),
    Role.AUDITOR: _READS,
}
#: Roles that act only within their department, on targets that carry a ``department``.
SCOPED: frozenset[Role] = frozenset({Role.HANDLER})


class Forbidden(HubError, PermissionError):
    """An action outside the person's role or department (HTTP 403)."""


def can(person: Person, action: str, target: Mapping[str, Any] | None = None) -> bool:
    """May ``person`` do ``action`` (on ``target``, a record with a ``department``, if given)?"""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if action not in PERMISSIONS[person.role]:
        return False
    if target is not None and person.role in SCOPED:
        return person.dept is not None and target.get("department") == person.dept
    return True


def require(person: Person, action: str, target: Mapping[str, Any] | None = None) -> None:
    """:func:`can`, raising :class:`Forbidden` when not."""
    if not can(person, action, target):
        where = f" in department {target.get('department')!r}" if target is not None else ""
        raise Forbidden(f"{person.name} ({person.role}) may not {ACTIONS[action]}{where}")


def in_scope(person: Person, department: str | None) -> bool:
    """Whether a record of ``department`` is within the person's reach (always, unless scoped)."""
    return person.role not in SCOPED or (person.dept is not None and department == person.dept)
