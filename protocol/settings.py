"""Layered settings a hall pushes to its terminals (SPEC section 13): what each key means, its
type and range, in one place used by the hub (before it stores a layer), by the CPython terminal
(before it applies a configuration) and, in a small form, by the firmware (``terminal/core.py``
:func:`config_problem`, tested against :data:`VECTORS` to agree with this module).

Keys (the lower layer wins: device over window over hall; a key no layer sets keeps the
terminal's own ``terminal.toml`` value):

- ``invite_s``, ``lockout_s``, ``reason_s``: seconds of an invitation, of the free-mode lockout,
  of the wait for a reason key after a bad rating;
- ``reasons``: the reason ids offered (from :data:`protocol.levels.DEFAULT_REASONS`; [] : no
  reason step);
- ``layout``: 3 or 5, which level keys count (3: satisfied, basic, dissatisfied, SPEC section 1);
- ``opening``: the window's opening hours ``HH:MM-HH:MM``, hall local time, for the hub's
  inactivity alarm; terminals only carry it (they have no time zone and may have no clock).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .levels import DEFAULT_REASONS
from .rules import INVITE_TTL_MAX_MS

#: The longest lockout and reason wait, in seconds (an hour, ten minutes).
LOCKOUT_MAX_S = 3600
REASON_MAX_S = 600
INVITE_MAX_S = INVITE_TTL_MAX_MS // 1000
#: Versions are positive and below 2**31 (the firmware's small ints).
VERSION_MAX = 2**31 - 1
_HOURS_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)")


def _seconds(lo: float, hi: float, zero_ok: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if type(value) not in (int, float):
            return "must be a number of seconds"
        if not (lo <= value <= hi) or (value == 0 and not zero_ok):
            return f"must be {'0' if zero_ok else 'more than 0'} to {hi:g} seconds"
        return None

    return check


def _reasons(value: Any) -> str | None:
    if not isinstance(value, list) or not all(type(r) is str for r in value):
        return "must be a list of reason ids"
    unknown = [r for r in value if r not in DEFAULT_REASONS]
    if unknown:
        return f"names unknown reasons {', '.join(unknown)[:60]} (known: {', '.join(DEFAULT_REASONS)})"
    return "names a reason twice" if len(set(value)) != len(value) else None


def _layout(value: Any) -> str | None:
    return None if type(value) is int and value in (3, 5) else "must be 3 or 5 (level keys that count)"


def _opening(value: Any) -> str | None:
    if type(value) is not str or _HOURS_RE.fullmatch(value) is None:
        return "must be hours like 09:00-17:00"
    start, end = value.split("-")
    return None if start < end else "must end after it starts"


#: Each key, its check (an error text or None) and its documentation.
SETTINGS: dict[str, tuple[Callable[[Any], str | None], str]] = {
    "invite_s": (_seconds(0, INVITE_MAX_S), "seconds an invitation keeps the rating keys lit"),
    "lockout_s": (_seconds(0, LOCKOUT_MAX_S, zero_ok=True), "free mode: seconds between accepted presses"),
    "reason_s": (_seconds(0, REASON_MAX_S), "seconds to wait for a reason key after a bad rating"),
    "reasons": (_reasons, "reason ids offered after a bad rating (comma-separated; empty: none)"),
    "layout": (_layout, "3 or 5: which level keys count (3: satisfied, basic, dissatisfied)"),
    "opening": (_opening, "opening hours HH:MM-HH:MM (hall time), for the hub's inactivity alarm"),
}
SCOPES = ("hall", "window", "device")


class SettingError(ValueError):
    """A setting that cannot be stored or applied; the message is one line naming the key."""


def setting_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be setting ``key``, in one line naming the key; None if it can."""
    known = SETTINGS.get(key)
    if known is None:
        return f"unknown setting {_short(key)} (known: {', '.join(SETTINGS)})"
    problem = known[0](value)
    return None if problem is None else f"{key} {problem}, got {_short(value)}"


def settings_problem(settings: Any) -> str | None:
    """The first key of ``settings`` (a JSON object) that is wrong, in one line; None if all hold."""
    if not isinstance(settings, Mapping):
        return f"settings must be an object, got {_short(settings)}"
    for key, value in settings.items():
        problem = setting_problem(key, value)
        if problem is not None:
            return problem
    return None


def parse_value(key: str, text: str) -> Any:
    """A value as an operator types it (``90``, ``cold,lazy``, ``09:00-17:00``), checked;
    SettingError naming the key."""
    value: Any
    if key == "reasons":
        value = [r.strip() for r in text.split(",") if r.strip()]
    elif key == "opening":
        value = text
    else:
        try:
            value = json.loads(text)
        except ValueError:
            value = text
    problem = setting_problem(key, value)
    if problem is not None:
        raise SettingError(problem)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


#: Bodies both validators must judge alike: (settings, the key at fault or None).
VECTORS: list[tuple[Any, str | None]] = [
    ({}, None),
    ({"invite_s": 90, "lockout_s": 0, "reason_s": 20.5}, None),
    ({"reasons": [], "layout": 3, "opening": "09:00-17:00"}, None),
    ({"reasons": ["cold", "other"], "layout": 5, "opening": "00:00-24:00"}, None),
    ({"invite_s": 0}, "invite_s"),
    ({"invite_s": INVITE_MAX_S + 1}, "invite_s"),
    ({"invite_s": "90"}, "invite_s"),
    ({"invite_s": True}, "invite_s"),
    ({"lockout_s": -1}, "lockout_s"),
    ({"lockout_s": LOCKOUT_MAX_S + 1}, "lockout_s"),
    ({"reason_s": 0}, "reason_s"),
    ({"reason_s": None}, "reason_s"),
    ({"reasons": "cold"}, "reasons"),
    ({"reasons": ["cold", "cold"]}, "reasons"),
    ({"reasons": [1]}, "reasons"),
    ({"layout": 4}, "layout"),
    ({"layout": "3"}, "layout"),
    ({"opening": "9-17"}, "opening"),
    ({"opening": "17:00-09:00"}, "opening"),
    ({"opening": 9}, "opening"),
    ({"volume": 3}, "volume"),
]
#: Refused here, carried harmlessly by the small form: a reason id the panel has no key for counts
#: for nothing there, and terminals only carry ``opening``.
HUB_ONLY: list[dict[str, Any]] = [{"reasons": ["cold", "rude"]}, {"opening": "ab:cd-ef:gh"}]
