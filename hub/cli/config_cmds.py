"""``haocha config``: settings at hall, window and device level pushed to terminals (SPEC section 13)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import click

from protocol.settings import SETTINGS, SettingError, parse_value

from .. import layers
from ..store.registry import window_exists
from .common import format_option, home_option, open_hub, print_records

_KEYS = ", ".join(SETTINGS)
window_option = click.option("--window", default=None, help="Set at this window's level (over the hall's).")
device_option = click.option("--device", default=None, help="Set at this device's level (over its window's).")


@click.group("config")
def config_group() -> None:
    """Layered settings pushed to terminals: hall, window, device (the lower wins)."""


def _pushed(pushes: list[tuple[str, int]]) -> None:
    if pushes:
        click.echo("pushed " + ", ".join(f"{device} v{version}" for device, version in pushes), err=True)
    else:
        click.echo("no terminal's configuration changed", err=True)


@config_group.command(
    "set",
    help=f"Set KEY to VALUE at the hall's level, or a window's or a device's. Keys: {_KEYS}. `reasons` takes "
    "ids separated by commas (an empty string: no reason step); `opening` HH:MM-HH:MM, hall time.",
)
@click.argument("key")
@click.argument("value")
@window_option
@device_option
@home_option
def config_set(key: str, value: str, window: str | None, device: str | None, home: Path | None) -> None:
    try:
        parsed = parse_value(key, value)
    except SettingError as exc:
        raise click.UsageError(str(exc)) from None
    _cfg, store_cm = open_hub(home)
    with store_cm as store:
        try:
            pushes = layers.set_layer(store, key, parsed, window, device)
        except layers.LayerError as exc:
            raise click.UsageError(str(exc)) from None
    _pushed(pushes)


@config_group.command("unset")
@click.argument("key")
@window_option
@device_option
@home_option
def config_unset(key: str, window: str | None, device: str | None, home: Path | None) -> None:
    """Remove KEY from a level: the level above (or the terminal's own terminal.toml) applies again."""
    _cfg, store_cm = open_hub(home)
    with store_cm as store:
        try:
            pushes = layers.unset_layer(store, key, window, device)
        except layers.LayerError as exc:
            raise click.UsageError(str(exc)) from None
    _pushed(pushes)


@config_group.command("show")
@window_option
@device_option
@home_option
@format_option
def config_show(window: str | None, device: str | None, home: Path | None, fmt: str) -> None:
    """The layers (the hall's, a window's with the hall's under it), or a device's effective
    settings with the layer each comes from, the version pushed and the version it applied."""
    _cfg, store_cm = open_hub(home)
    with store_cm as store:
        conn = store.conn
        if device is not None:
            rows = _device_rows(conn, device)
        elif window is not None:
            if not window_exists(store, window):
                raise click.ClickException(f"unknown window {window}")
            rows = [
                {"key": k, "value": v, "layer": layer} for k, (v, layer) in layers.window_values(conn, window).items()
            ]
        else:
            rows = layers.layers(conn)
    print_records(rows, fmt)


def _device_rows(conn: sqlite3.Connection, device: str) -> list[dict[str, Any]]:
    eff = layers.effective(conn, device)
    status = layers.device_status(conn).get(device, {})
    base = {"device": device, "pushed": status.get("pushed"), "applied": status.get("applied"),
            "status": layers.describe(status)}  # fmt: skip
    rows = [{**base, "key": k, "value": v, "layer": layer} for k, (v, layer) in sorted(eff.values.items())]
    return rows or [{**base, "key": None, "value": None, "layer": "terminal.toml"}]
