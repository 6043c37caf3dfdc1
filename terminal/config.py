"""``terminal.toml``, as the terminal reads it. The schema itself is in
:mod:`protocol.terminal_config`: the hub writes the file and checks it with the same schema."""

from protocol.terminal_config import (
    KINDS,
    MODES,
    BrokerSettings,
    GpioSettings,
    ModbusSettings,
    PanelKeySettings,
    SerialSettings,
    TerminalConfig,
    TimingSettings,
    UplinkSettings,
    load,
    panel_table,
    parse,
)

__all__ = [
    "KINDS",
    "MODES",
    "BrokerSettings",
    "GpioSettings",
    "ModbusSettings",
    "PanelKeySettings",
    "SerialSettings",
    "TerminalConfig",
    "TimingSettings",
    "UplinkSettings",
    "load",
    "panel_table",
    "parse",
]
