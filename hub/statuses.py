"""The statuses the hub stores, one enum each. They are ``str`` enums: the values are the very
strings in ``hub.db`` (and in SQL literals such as ``status = 'pending'``), so comparing a column
with a member, or storing a member, works as the bare string did."""

from __future__ import annotations

import enum


class EventStatus(enum.StrEnum):
    """What the hub made of a stored event (``events.status``)."""

    ACCEPTED = "accepted"  #: counted as given
    REFUSED = "refused"  #: stored and counted apart, never as a rating (a second rating of a case)
    FLAGGED = "flagged"  #: a rating counted, but left out of the rates (misuse: burst, unknown case)
    INVALID = "invalid"  #: MAC-valid but breaking a field rule (SPEC section 10)


class CaseStatus(enum.StrEnum):
    """Where a case (办件) stands (``cases.status``)."""

    OPEN = "open"  #: invitation out, no rating yet
    RATED = "rated"  #: rated: a second rating is refused
    CANCELLED = "cancelled"  #: closed without a rating


class OutboxStatus(enum.StrEnum):
    """Where an upstream record stands (``outbox.status``)."""

    PENDING = "pending"  #: waiting to be sent, or to be sent again
    SENT = "sent"  #: the regional system took it
    PARKED = "parked"  #: refused by the regional system for good: an operator looks at it


class TicketState(enum.StrEnum):
    """A bad-review ticket's step in the work queue: 登记 → 转办 → (申诉) → 核实 → 反馈."""

    REGISTERED = "registered"
    ASSIGNED = "assigned"
    APPEALED = "appealed"
    VERIFIED = "verified"
    FEEDBACK = "feedback"  #: the rectification given back (not a light on the terminal)
