"""Keys, lights and buzzer wired to a Raspberry Pi's GPIO, through gpiozero.

The pin factory is passed in (``MockFactory`` in tests and simulations) and handed to every
device, so no part of the panel falls back to a global factory.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from gpiozero import LED, Button, Buzzer, GPIOZeroError, PinFactoryFallback

from ..config import GpioSettings
from ..errors import PanelError
from ..panel import Key, KeyHandler, KeyKind, PanelSignal, StatusHandler

_LOG = logging.getLogger(__name__)


class GpioPanel:
    def __init__(self, settings: GpioSettings, reasons: tuple[str, ...] = (), pin_factory: Any = None) -> None:
        self.settings = settings
        self.levels = frozenset(settings.keys)
        self.reasons = frozenset(r for r in settings.reason_keys if r in reasons)
        self._factory = pin_factory
        self._on_key: KeyHandler | None = None
        self._lock = threading.Lock()
        bounce = settings.bounce_ms / 1000
        # gpiozero warns once per pin library it could not load: one log line, not a screenful.
        with warnings.catch_warnings(record=True) as fallbacks:
            warnings.simplefilter("always", PinFactoryFallback)
            try:
                self.buttons: dict[Key, Button] = {
                    key: Button(pin, pull_up=settings.pull_up, bounce_time=bounce, pin_factory=pin_factory)
                    for key, pin in self._key_pins()
                }
                self.ready_light = self._output(LED, settings.ready_light)
                self.thanks_light = self._output(LED, settings.thanks_light)
                self.buzzer = self._output(Buzzer, settings.buzzer)
            except GPIOZeroError as exc:  # no GPIO chip (not a Pi, no lgpio), a pin taken twice, …
                tried = "; ".join(str(w.message) for w in fallbacks)
                raise PanelError(
                    f"cannot open the GPIO keys and lights: {exc} ({tried or type(exc).__name__})"
                ) from None
        if fallbacks:
            _LOG.info("GPIO: %s", "; ".join(str(w.message) for w in fallbacks))

    def _key_pins(self) -> Iterator[tuple[Key, int]]:
        for level, pin in self.settings.keys.items():
            yield Key(KeyKind.LEVEL, level), pin
        for reason, pin in self.settings.reason_keys.items():
            if reason in self.reasons:
                yield Key(KeyKind.REASON, reason), pin
        if self.settings.staff_key is not None:
            yield Key(KeyKind.STAFF), self.settings.staff_key

    def _output(self, cls: Any, pin: int | None) -> Any:
        return None if pin is None else cls(pin, pin_factory=self._factory)

    def pin_of(self, key: Key) -> int:
        """The BCM pin number of ``key`` (simulators press it)."""
        return int(self.buttons[key].pin.info.number)

    def start(self, on_key: KeyHandler, on_status: StatusHandler) -> None:
        self._on_key = on_key
        for key, button in self.buttons.items():
            button.when_pressed = self._make_handler(key)
        on_status(True, "gpio")

    def _make_handler(self, key: Key) -> Any:
        def handler() -> None:
            """Runs on gpiozero's event thread (or the caller's, with mock pins)."""
            if self._on_key is None:
                return
            try:
                self._on_key(key)
            except Exception:
                _LOG.exception("press of %s was not accepted", key)

        return handler

    def show(self, signal: PanelSignal) -> None:
        with self._lock:
            self._set(self.ready_light, signal in (PanelSignal.READY, PanelSignal.ASK_REASON))
            self._set(self.thanks_light, signal is PanelSignal.THANKS)
            if self.buzzer is not None and signal is PanelSignal.THANKS:
                self.buzzer.beep(on_time=0.08, off_time=0.05, n=1, background=True)
            elif self.buzzer is not None and signal is PanelSignal.REFUSED:
                self.buzzer.beep(on_time=0.04, off_time=0.04, n=2, background=True)

    @staticmethod
    def _set(led: Any, on: bool) -> None:
        if led is not None:
            led.value = on

    def close(self) -> None:
        for dev in [*self.buttons.values(), self.ready_light, self.thanks_light, self.buzzer]:
            if dev is not None:
                dev.close()
        self.buttons = {}
        self.ready_light = self.thanks_light = self.buzzer = None
