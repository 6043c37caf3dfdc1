"""The field rules every event obeys (SPEC sections 3 and 10), shared by the terminal and the hub.

:mod:`protocol.frames` checks a frame's *shape*: what the dedupe key, the MAC and the canonical
encoding need. This module checks what the fields *mean*: known kinds, levels and triggers, text
lengths, times in range, which fields each kind needs. The terminal runs :func:`event_problem` on
every row before it journals it, so it never lights "thank you" for a row the hub would refuse;
the hub runs it on every MAC-valid event and stores one that breaks a rule as ``invalid`` (with its
raw JSON, acked, counted), so such a row never blocks its terminal's sequence.

The MicroPython firmware cannot import this module (it has no ``re`` with Unicode classes and no
dataclasses); ``terminal/micro/`` carries the same rules and both are tested against
``protocol/vectors/rules.json``.
"""

from __future__ import annotations

import re
from typing import Any

from .frames import MAX_SEQ, SCHEMA_VERSION, Event, Kind, Trigger
from .levels import LEVEL_IDS

#: Longest case number, item code, staff id or boot id, in characters.
TEXT_MAX = 64
#: Most reason ids in one reason event.
REASONS_MAX = 8
#: A synchronised wall clock outside [2000-01-01, 2100-01-01) UTC is wrong, not a time.
WALL_MIN_MS = 946_684_800_000
WALL_MAX_MS = 4_102_444_800_000
#: The longest an invitation may stay open: the hub's ``invite_s`` and a ``cmd``'s ``ttl_ms``.
INVITE_TTL_MAX_MS = 7 * 86_400_000
#: ``age_ms`` is measured on the terminal's monotonic clock within one boot: never years.
AGE_MAX_MS = 10 * 366 * 86_400_000
#: Free text: 1-64 characters, no control characters, line separators or lone surrogates (which
#: UTF-8 cannot encode). The OpenAPI description uses :data:`TEXT_PATTERN`, which JSON Schema's
#: Unicode strings can express (they cannot hold surrogates at all).
TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]{1,64}$"
_TEXT_RE = re.compile(r"[^\u0000-\u001f\u007f-\u009f\u2028\u2029\ud800-\udfff]{1,64}")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

_KINDS = frozenset(k.value for k in Kind)
_TRIGGERS = frozenset(t.value for t in Trigger)
_LEVELS = frozenset(LEVEL_IDS)


def valid_text(value: object) -> bool:
    """A case number, item code, staff id or boot id: see :data:`TEXT_PATTERN`."""
    return type(value) is str and _TEXT_RE.fullmatch(value) is not None


def valid_id(value: object) -> bool:
    """A window, reason, hall or device id: 1-32 of ``[A-Za-z0-9_-]``."""
    return type(value) is str and _ID_RE.fullmatch(value) is not None


def _int_in(value: object, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def _bad(name: str, value: Any, expected: str) -> str:
    shown = repr(value)
    return f"{name}: expected {expected}, got {shown[:40]}{'…' if len(shown) > 40 else ''}"


def _field_problem(ev: Event) -> str | None:
    """The first field whose value breaks its own rule, or None."""
    if ev.v != SCHEMA_VERSION or type(ev.v) is not int:
        return _bad("v", ev.v, f"schema version {SCHEMA_VERSION}")
    if ev.kind not in _KINDS or type(ev.kind) is not str:
        return _bad("kind", ev.kind, "one of " + ", ".join(sorted(_KINDS)))
    if ev.level is not None and (type(ev.level) is not str or ev.level not in _LEVELS):
        return _bad("level", ev.level, "a level id")
    if ev.trigger is not None and (type(ev.trigger) is not str or ev.trigger not in _TRIGGERS):
        return _bad("trigger", ev.trigger, "one of " + ", ".join(sorted(_TRIGGERS)))
    for name in ("case", "item", "staff"):
        value = getattr(ev, name)
        if value is not None and not valid_text(value):
            return _bad(name, value, f"1-{TEXT_MAX} characters without control characters")
    if not valid_text(ev.boot):
        return _bad("boot", ev.boot, f"1-{TEXT_MAX} characters")
    if ev.window is not None and not valid_id(ev.window):
        return _bad("window", ev.window, "a window id")
    if ev.reasons is not None and not (0 < len(ev.reasons) <= REASONS_MAX and all(valid_id(r) for r in ev.reasons)):
        return _bad("reasons", ev.reasons, f"1-{REASONS_MAX} reason ids")
    if ev.ref is not None and not _int_in(ev.ref, 1, ev.seq - 1):
        return _bad("ref", ev.ref, "an earlier seq")
    return _time_problem(ev)


def _time_problem(ev: Event) -> str | None:
    if not _int_in(ev.mono_ms, 0, MAX_SEQ):
        return _bad("mono_ms", ev.mono_ms, "milliseconds ≥ 0")
    if type(ev.synced) is not bool:
        return _bad("synced", ev.synced, "true or false")
    if not _int_in(ev.wall_ms, WALL_MIN_MS if ev.synced else 0, WALL_MAX_MS - 1 if ev.synced else MAX_SEQ):
        return _bad("wall_ms", ev.wall_ms, "a time in 2000..2099" if ev.synced else "milliseconds ≥ 0")
    if ev.age_ms is not None and not _int_in(ev.age_ms, 0, AGE_MAX_MS):
        return _bad("age_ms", ev.age_ms, "an age under ten years")
    return None


def _kind_problem(ev: Event) -> str | None:
    """Which fields each kind needs (the fields themselves are valid by now)."""
    if ev.kind in (Kind.RATING, Kind.IGNORED) and ev.level is None:
        return f"kind: a {ev.kind} event needs a level"
    if ev.kind == Kind.RATING:
        if ev.trigger is None:
            return "kind: a rating needs a trigger"
        if (ev.trigger == Trigger.FREE) != (ev.case is None):
            return "kind: a free rating has no case; an invited or staff-key rating has one"
    if ev.kind == Kind.REASON and (ev.reasons is None or ev.ref is None):
        return "kind: a reason event needs reasons and ref"
    if ev.kind == Kind.STAFF and ev.case is None:
        return "kind: a staff event needs its local case number"
    return None


def event_problem(event: Event) -> str | None:
    """Why ``event`` breaks a rule, or None if it obeys them all: one short line that starts with
    the field at fault (``kind:`` for the fields a kind needs)."""
    return _field_problem(event) or _kind_problem(event)


def check_text_setting(name: str, value: object) -> str | None:
    """For config checks: why ``value`` cannot be carried as ``name`` in an event, or None."""
    if value is None or valid_text(value):
        return None
    return _bad(name, value, f"1-{TEXT_MAX} characters without control characters")
