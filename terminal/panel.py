"""The seam between the terminal's logic and its button hardware.

A panel turns physical presses into :class:`Key` values handed to a callback, and shows a
:class:`PanelSignal` state with its lights and buzzer. GPIO, Modbus RTU and serial panels implement
it; the evaluator never knows which one it drives.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class KeyKind(enum.Enum):
    LEVEL = "level"  #: a rating key; ``value`` is a level id
    REASON = "reason"  #: a bad-review reason key; ``value`` is a reason id
    STAFF = "staff"  #: the staff key; ``value`` is ""


@dataclass(frozen=True, slots=True)
class Key:
    kind: KeyKind
    value: str = ""


class PanelSignal(enum.Enum):
    """What the citizen sees and hears. Panels map these onto their lights and buzzer."""

    IDLE = "idle"  #: keys dark: no rating possible now (invited mode without an invitation)
    READY = "ready"  #: rating keys lit
    ASK_REASON = "ask_reason"  #: reason keys lit after a bad rating
    THANKS = "thanks"  #: the press is committed: thank-you light and a short beep
    REFUSED = "refused"  #: the press was recorded as ignored: a low beep, nothing lit


KeyHandler = Callable[[Key], object]
StatusHandler = Callable[[bool, str], None]


class Panel(Protocol):
    """A button panel. ``start`` hands it the callbacks; both may be called from the panel's own
    threads, and must return quickly (the key handler commits one journal row)."""

    #: Level ids of the rating keys this panel has (five, or three in the three-key layout).
    levels: frozenset[str]
    #: Reason ids of the reason keys it has; empty: no reason step after a bad rating.
    reasons: frozenset[str]

    def start(self, on_key: KeyHandler, on_status: StatusHandler) -> None:
        """Begin delivering presses. ``on_status(ok, detail)`` reports the link to the panel."""

    def show(self, signal: PanelSignal) -> None:
        """Drive lights and buzzer. Never raises for a panel that is unreachable: it logs."""

    def close(self) -> None:
        """Release pins, ports and threads; idempotent."""
