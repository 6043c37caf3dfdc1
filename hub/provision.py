"""Provisioning terminals: broker user, password and MAC key, and the ``terminal.toml`` to copy.

``device add`` puts everything a terminal needs in ``{home}/devices/{DEV}/``: its config (secrets
inside, mode 0600) with the journal path relative to that folder. The settings pass the terminal's
own config check before anything is registered or written: provisioning never makes a file the
terminal would refuse to start with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from protocol.topics import check_device_id
from terminal.config import KINDS, MODES, panel_table
from terminal.config import parse as parse_terminal_config

from .config import HubConfig
from .secrets import mosquitto_hash, new_mac_key, new_password, write_private
from .store import Store
from .store.registry import get_device, insert_device, set_device_secrets

JOURNAL_NAMES = {"gpio": "journal.db", "modbus": "journal.db", "serial": "journal.db", "micro": "journal"}


def device_dir(home: Path, device: str) -> Path:
    return home / "devices" / device


def terminal_settings(
    config: HubConfig, device: str, window: str, kind: str, mode: str, password: str, mac_key: str
) -> dict[str, Any]:
    """The ``terminal.toml`` contents for one device."""
    return {
        "device": device,
        "hall": config.hall,
        "window": window,
        "kind": kind,
        "mode": mode,
        "key": mac_key,
        "journal": JOURNAL_NAMES[kind],
        "broker": {"host": config.broker.host, "port": config.broker.port, "user": device, "password": password},
        "timing": {"invite_s": config.invite_s},
        # The panel's table with its defaults spelled out: port, unit, timings, key map.
        **({kind: panel_table(kind)} if kind in ("modbus", "serial") else {}),
    }


def add_device(
    store: Store, config: HubConfig, home: Path, device: str, window: str, kind: str = "gpio", mode: str = "free"
) -> Path:
    """Register ``device`` at ``window`` and write its ``terminal.toml``; returns that path."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    check_device_id(device)  # a bad id gets the registry's message, before the config check
    password, mac_key = new_password(), new_mac_key()
    settings = _checked(terminal_settings(config, device, window, kind, mode, password, mac_key))
    insert_device(store, device, window, kind, mode, mac_key, mosquitto_hash(password))
    return _write_terminal_files(config, home, settings)


def rotate_device(store: Store, config: HubConfig, home: Path, device: str) -> Path:
    """New password and MAC key for ``device`` (also un-revokes it); rewrites its terminal.toml."""
    dev = get_device(store, device)
    password, mac_key = new_password(), new_mac_key()
    settings = _checked(terminal_settings(config, device, dev.window, dev.kind, dev.mode, password, mac_key))
    set_device_secrets(store, device, mac_key, mosquitto_hash(password))
    return _write_terminal_files(config, home, settings)


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` if the terminal would start with them; ConfigError naming the key otherwise."""
    parse_terminal_config(settings, f"the terminal.toml of device {settings['device']!r}")
    return settings


def _write_terminal_files(config: HubConfig, home: Path, settings: dict[str, Any]) -> Path:
    folder = device_dir(home, settings["device"])
    path = folder / "terminal.toml"
    header = b"# haocha terminal config, written by `haocha device add`. Copy this folder onto the terminal.\n"
    write_private(path, header + tomli_w.dumps(settings).encode())
    if settings["kind"] == "micro":
        _write_board_files(path)
    return path


def _write_board_files(config_path: Path) -> None:
    """Firmware and ``config.json`` for a MicroPython board, in ``board/`` beside terminal.toml
    (docs/micro.md: copy them with mpremote). Every file private: config.json holds secrets."""
    from terminal.config import load
    from terminal.micro_host import board_files

    board = config_path.parent / "board"
    for name, data in board_files(load(config_path)).items():
        write_private(board / name, data)
