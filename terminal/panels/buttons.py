"""Numbered buttons of a bus panel ↔ the terminal's keys.

Modbus and serial panels report button numbers (1..16); ``terminal.toml`` says which level,
reason or staff key sits on which number. Drivers and simulators share this one mapping.
"""

from __future__ import annotations

from ..config import ModbusSettings, SerialSettings
from ..panel import Key, KeyKind

#: Delivery order inside one poll: the staff key opens a case, a rating needs it, a reason needs
#: the rating. Counters say how many presses each key had, not in which order they came.
KIND_ORDER = {KeyKind.STAFF: 0, KeyKind.LEVEL: 1, KeyKind.REASON: 2}


def button_map(settings: ModbusSettings | SerialSettings, reasons: tuple[str, ...]) -> dict[Key, int]:
    """Key → button number; reason keys only for the reasons this hall offers."""
    out = {Key(KeyKind.LEVEL, level): n for level, n in settings.keys.items()}
    out.update({Key(KeyKind.REASON, r): n for r, n in settings.reason_keys.items() if r in reasons})
    if settings.staff_key is not None:
        out[Key(KeyKind.STAFF)] = settings.staff_key
    return out


def delivery_order(keys: dict[Key, int]) -> list[tuple[Key, int]]:
    """(key, button) pairs in the order a poll delivers them."""
    return sorted(keys.items(), key=lambda kv: (KIND_ORDER[kv[0].kind], kv[1]))
