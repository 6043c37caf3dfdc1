"""Provisioning terminals: broker user, password and MAC key, and the ``terminal.toml`` to copy.

``device add`` puts everything a terminal needs in ``{home}/devices/{DEV}/``: its config (secrets
inside, mode 0600) with the journal path relative to that folder. The settings pass the terminal's
own config check before anything is registered or written: provisioning never makes a file the
terminal would refuse to start with.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from protocol.terminal_config import KINDS, MODES, TerminalConfig, load, panel_table
from protocol.terminal_config import parse as parse_terminal_config
from protocol.topics import check_device_id

from . import tlsfiles
from .config import HubConfig
from .errors import HubError
from .secrets import mosquitto_hash, new_mac_key, new_password, write_private
from .store import Store, keys
from .store.registry import get_device, insert_device
from .store.registry import revoke_device as revoke_in_registry

_LOG = logging.getLogger(__name__)

CA_NAME = "ca.crt"
CLIENT_CERT_NAME = "client.crt"
CLIENT_KEY_NAME = "client.key"
HEADER = b"# haocha terminal config, written by `haocha device add`. Copy this folder onto the terminal.\n"
#: A MicroPython board's files (name → bytes) for its config: the firmware is the terminal's, so
#: the program above the hub hands this in (``terminal.micro_host.board_files``).
BoardFiles = Callable[[TerminalConfig], dict[str, bytes]]
JOURNAL_NAMES = {"gpio": "journal.db", "modbus": "journal.db", "serial": "journal.db", "micro": "journal"}


def device_dir(home: Path, device: str) -> Path:
    return home / "devices" / device


def terminal_settings(
    config: HubConfig,
    device: str,
    window: str,
    kind: str,
    mode: str,
    password: str,
    mac_key: str,
    kid: int = 1,
    previous_password: str | None = None,
) -> dict[str, Any]:
    """The ``terminal.toml`` contents for one device."""
    broker = {"host": config.broker.host, "port": config.broker.port, "user": device, "password": password}
    broker.update(broker_tls_settings(config))
    if previous_password is not None:
        broker["previous_password"] = previous_password
    return {
        "device": device,
        "hall": config.hall,
        "window": window,
        "kind": kind,
        "mode": mode,
        "key": mac_key,
        "key_id": kid,
        "journal": JOURNAL_NAMES[kind],
        "broker": broker,
        "timing": {"invite_s": config.invite_s},
        # The panel's table with its defaults spelled out: port, unit, timings, key map.
        **({kind: panel_table(kind)} if kind in ("modbus", "serial") else {}),
    }


def broker_tls_settings(config: HubConfig) -> dict[str, str]:
    """The ``[broker]`` keys naming the TLS files ``device add`` puts beside terminal.toml."""
    names = {"ca": CA_NAME}
    if config.tls.client_certificates:
        names |= {"client_cert": CLIENT_CERT_NAME, "client_key": CLIENT_KEY_NAME}
    return names


def add_device(
    store: Store,
    config: HubConfig,
    home: Path,
    device: str,
    window: str,
    kind: str = "gpio",
    mode: str = "free",
    board_files: BoardFiles | None = None,
) -> Path:
    """Register ``device`` at ``window`` and write its ``terminal.toml``; returns that path."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    check_device_id(device)  # a bad id gets the registry's message, before the config check
    _require_board_files(kind, board_files)
    password, mac_key = new_password(), new_mac_key()
    settings = _checked(terminal_settings(config, device, window, kind, mode, password, mac_key))
    tlsfiles.require(home)  # a hall made before TLS says what to run, before anything is registered
    insert_device(store, device, window, kind, mode, mac_key, mosquitto_hash(password))
    write_tls_files(config, home, device, new_client_cert=True)
    return _write_terminal_files(config, home, settings, board_files)


def rotate_device(
    store: Store,
    config: HubConfig,
    home: Path,
    device: str,
    at_once: bool = False,
    board_files: BoardFiles | None = None,
) -> Path:
    """New password and MAC key for ``device``; rewrites its terminal.toml.

    By default the rotation is one a running terminal survives (:mod:`hub.store.keys`): the new
    pair reaches it as a command and the old one works until it has taken the new one up; the file
    names both passwords, so a terminal given the file by hand gets in either way. ``at_once``
    (a key that may have leaked): the old password and key stop now; the terminal needs the file.
    Every kind takes the rekey, the MicroPython firmware too. A revoked device stays revoked
    (DeviceRevoked)."""
    dev = get_device(store, device)
    _require_board_files(dev.kind, board_files)
    password, mac_key = new_password(), new_mac_key()
    secrets = keys.NewSecrets(mac_key, password, mosquitto_hash(password))
    previous = None if at_once else _current_password(home, device)
    # Checked before anything changes: a rotation never leaves a file the terminal would refuse.
    _checked(terminal_settings(config, device, dev.window, dev.kind, dev.mode, password, mac_key, 2, previous))
    tlsfiles.require(home)
    rotate = keys.rotate_now if at_once else keys.start_rotation
    kid = rotate(store, device, secrets)
    write_tls_files(config, home, device)
    settings = terminal_settings(config, device, dev.window, dev.kind, dev.mode, password, mac_key, kid, previous)
    return _write_terminal_files(config, home, settings, board_files)


def reinstate_device(
    store: Store, config: HubConfig, home: Path, device: str, board_files: BoardFiles | None = None
) -> Path:
    """A revoked device provisioned again on purpose: new pair, active at once."""
    dev = get_device(store, device)
    _require_board_files(dev.kind, board_files)
    password, mac_key = new_password(), new_mac_key()
    _checked(terminal_settings(config, device, dev.window, dev.kind, dev.mode, password, mac_key, 2))
    tlsfiles.require(home)
    kid = keys.reinstate(store, device, keys.NewSecrets(mac_key, password, mosquitto_hash(password)))
    write_tls_files(config, home, device, new_client_cert=True)  # revoke put the old one on the CRL
    settings = terminal_settings(config, device, dev.window, dev.kind, dev.mode, password, mac_key, kid)
    return _write_terminal_files(config, home, settings, board_files)


def _current_password(home: Path, device: str) -> str | None:
    """The broker password in the device's current terminal.toml, if the hub still has that file."""
    path = device_dir(home, device) / "terminal.toml"
    try:
        password = tomllib.loads(path.read_text())["broker"]["password"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return None
    return password if isinstance(password, str) and password else None


def revoke_device(store: Store, home: Path, device: str) -> None:
    """Revoke ``device``: its broker user goes and, when it has a client certificate, that goes on
    the hall's revocation list (the broker reloads it)."""
    from . import certs  # the cryptography package, only where certificates are made

    revoke_in_registry(store, device)
    certs.revoke(home, device_dir(home, device) / CLIENT_CERT_NAME)


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` if the terminal would start with them; ConfigError naming the key otherwise."""
    parse_terminal_config(settings, f"the terminal.toml of device {settings['device']!r}")
    return settings


def write_tls_files(
    config: HubConfig, home: Path, device: str, new_client_cert: bool = False, days: int | None = None
) -> None:
    """The hall CA's certificate and the hall's public release key beside the device's
    terminal.toml and, when the hall requires client certificates, the device's own
    (a new one, valid ``days``, if asked or none is there)."""
    from . import release_key  # the cryptography package, only where keys are made

    folder = device_dir(home, device)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CA_NAME).write_bytes(tlsfiles.require(home).ca_cert.read_bytes())
    release_key.write_public(home, folder)  # the terminal checks releases with it (SPEC section 13)
    if config.tls.client_certificates and (new_client_cert or not (folder / CLIENT_CERT_NAME).exists()):
        from . import certs  # the cryptography package, only where certificates are made

        key, cert = certs.issue_client(home, config, device, days)
        write_private(folder / CLIENT_KEY_NAME, key)
        write_private(folder / CLIENT_CERT_NAME, cert)


def refresh_tls(
    config: HubConfig,
    home: Path,
    device: str,
    new_client_cert: bool = False,
    days: int | None = None,
    board_files: BoardFiles | None = None,
) -> Path:
    """Bring a provisioned device's folder up to the hall's TLS settings (``tls init`` for a hall
    made before TLS, ``tls renew``): its TLS files, the ``[broker]`` keys naming them in its
    terminal.toml, and a MicroPython board's files. Other settings and secrets stay as they are."""
    write_tls_files(config, home, device, new_client_cert, days)
    path = device_dir(home, device) / "terminal.toml"
    settings = tomllib.loads(path.read_text())
    settings.setdefault("broker", {}).update(broker_tls_settings(config))
    write_private(path, HEADER + tomli_w.dumps(_checked(settings)).encode())
    if settings.get("kind") == "micro":
        _write_board_files(path, board_files)
    return path


def _write_terminal_files(
    config: HubConfig, home: Path, settings: dict[str, Any], board_files: BoardFiles | None
) -> Path:
    folder = device_dir(home, settings["device"])
    path = folder / "terminal.toml"
    write_private(path, HEADER + tomli_w.dumps(settings).encode())
    if settings["kind"] == "micro":
        _write_board_files(path, board_files)
    return path


def _require_board_files(kind: str, board_files: BoardFiles | None) -> None:
    """Checked before anything is registered or written."""
    if kind == "micro" and board_files is None:
        raise HubError("a MicroPython board's files come with the terminal package: run this as `haocha`")


def _write_board_files(config_path: Path, board_files: BoardFiles | None) -> None:
    """Firmware and ``config.json`` for a MicroPython board, in ``board/`` beside terminal.toml
    (docs/micro.md: copy them with mpremote). Every file private: config.json holds secrets. What
    the technician entered by hand in the last ``config.json`` (Wi-Fi, NTP host, watchdog) is kept:
    a rotation or a renewal never sends someone to type the hall's Wi-Fi password again."""
    _require_board_files("micro", board_files)
    assert board_files is not None
    board = config_path.parent / "board"
    site = _site_settings(board / "config.json")
    for name, data in board_files(load(config_path)).items():
        if name == "config.json" and site:
            data = _with_site_settings(data, site)
        write_private(board / name, data)


#: Keys of a board's ``config.json`` a technician fills in by hand (docs/micro.md).
BOARD_SITE_KEYS = ("wifi", "ntp_host", "watchdog_s")


def _site_settings(path: Path) -> dict[str, Any]:
    """The hand-entered keys of an existing ``config.json`` (``broker.report_s`` included)."""
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _LOG.warning("%s unreadable (%s): its Wi-Fi settings must be entered again", path, exc)
        return {}
    if not isinstance(old, dict):
        return {}
    site = {key: old[key] for key in BOARD_SITE_KEYS if key in old}
    broker = old.get("broker")
    if isinstance(broker, dict) and "report_s" in broker:
        site["report_s"] = broker["report_s"]
    return site


def _with_site_settings(data: bytes, site: dict[str, Any]) -> bytes:
    cfg = json.loads(data)
    cfg.update({key: value for key, value in site.items() if key != "report_s"})
    if "report_s" in site:
        cfg["broker"]["report_s"] = site["report_s"]
    return (json.dumps(cfg, indent=1, ensure_ascii=False) + "\n").encode()
