"""A GPIO button panel made of gpiozero mock pins, pressed like a person would press it."""

from __future__ import annotations

import time
from typing import Any

from gpiozero.pins.mock import MockFactory

from terminal.config import TerminalConfig
from terminal.panel import Key, KeyKind


class SimGpioPanel:
    """Owns a :class:`MockFactory`; the terminal's GpioPanel builds its keys on it."""

    def __init__(self, config: TerminalConfig) -> None:
        self.config = config
        self.factory = MockFactory()
        self.panel_options: dict[str, Any] = {"pin_factory": self.factory}
        self._last_press: dict[int, float] = {}

    def _pin_number(self, key: Key) -> int:
        gpio = self.config.gpio
        if key.kind is KeyKind.LEVEL:
            return gpio.keys[key.value]
        if key.kind is KeyKind.REASON:
            return gpio.reason_keys[key.value]
        if gpio.staff_key is None:
            raise ValueError("this terminal has no staff key")
        return gpio.staff_key

    def press(self, key: Key) -> None:
        """Close and open the key's contact; never faster than its debounce time allows."""
        number = self._pin_number(key)
        gap = self.config.gpio.bounce_ms / 1000 + 0.002
        wait = self._last_press.get(number, 0.0) + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        pin = self.factory.pin(number)
        if self.config.gpio.pull_up:
            pin.drive_low()
            pin.drive_high()
        else:
            pin.drive_high()
            pin.drive_low()
        self._last_press[number] = time.monotonic()

    def close(self) -> None:
        self.factory.reset()
