"""The lights and buzzer a bus panel should show, handed from ``show()`` to the driver's thread.

``show()`` runs on the evaluator's thread and must never block on the bus, so it only records
what is wanted; the driver's thread writes it when it is next on the bus. A beep is sounded once;
the lights are written again when they change, when the panel forgot them (``forget``), and every
``refresh_s`` in case the panel lost them without saying so.
"""

from __future__ import annotations

import threading
import time

from ..panel import PanelSignal
from .modbusmap import Beep

Lamps = tuple[bool, bool, bool]  # ready, reason, thanks

#: The lamps and the beep of each signal.
LIGHTS: dict[PanelSignal, tuple[Lamps, Beep]] = {
    PanelSignal.IDLE: ((False, False, False), Beep.NONE),
    PanelSignal.READY: ((True, False, False), Beep.NONE),
    PanelSignal.ASK_REASON: ((False, True, False), Beep.NONE),
    PanelSignal.THANKS: ((False, False, True), Beep.THANKS),
    PanelSignal.REFUSED: ((False, False, False), Beep.REFUSED),
}


class PanelLights:
    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._want: Lamps = (False, False, False)
        self._beep = Beep.NONE
        self._version = 0  # bumped by show(); the panel shows _shown
        self._shown = -1
        self._next_refresh = 0.0

    def show(self, signal: PanelSignal) -> None:
        """Any thread: record what the panel should show (a beep waits until it is sounded)."""
        lamps, beep = LIGHTS[signal]
        with self._lock:
            self._want = lamps
            if beep is not Beep.NONE:
                self._beep = beep
            self._version += 1

    def due(self) -> tuple[int, Lamps, Beep] | None:
        """Driver thread: (version, lamps, beep) to write now, or None. Takes the beep: give it
        back with :meth:`failed` if the write does not go through."""
        with self._lock:
            version, want, beep = self._version, self._want, self._beep
            self._beep = Beep.NONE
        if version == self._shown and beep is Beep.NONE and time.monotonic() < self._next_refresh:
            return None
        return version, want, beep

    def written(self, version: int) -> None:
        """Driver thread: the panel now shows ``version``."""
        self._shown = version
        self._next_refresh = time.monotonic() + self.refresh_s

    def failed(self, beep: Beep) -> None:
        """Driver thread: the write failed; sound ``beep`` when the panel answers again."""
        with self._lock:
            if beep is not Beep.NONE and self._beep is Beep.NONE:
                self._beep = beep

    def forget(self) -> None:
        """Driver thread: the panel lost its lights (reboot, reopened port): write them again."""
        self._shown = -1
