"""Panel drivers, one module per bus; :func:`open_panel` picks one from ``terminal.toml``."""

from __future__ import annotations

from typing import Any

from ..config import TerminalConfig
from ..errors import PanelError
from ..panel import Panel


def open_panel(config: TerminalConfig, **options: Any) -> Panel:
    """The panel for ``config.kind``; ``options`` reach the driver (``pin_factory`` for GPIO, ``bus`` for a
    Modbus bus shared by several windows)."""
    if config.kind == "gpio":
        from .gpio import GpioPanel

        return GpioPanel(config.gpio, config.reasons, **options)
    if config.kind == "modbus":
        from .modbus import ModbusPanel

        return ModbusPanel(config, **options)
    if config.kind == "serial":
        from .serialline import SerialPanel

        return SerialPanel(config, **options)
    raise PanelError(f"kind {config.kind!r} has no driver in the terminal program")
