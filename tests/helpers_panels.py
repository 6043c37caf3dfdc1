"""Shared by the panel tests: waiting for conditions, terminal configs that reach simulated panels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from simulators.hall import wait_for
from terminal.config import BrokerSettings, TerminalConfig, TimingSettings

#: Nobody listens on TCP port 1: the uplink keeps retrying, which panel tests do not mind.
NO_BROKER = 1


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true; TimeoutError after ``timeout`` s."""
    return wait_for(predicate, timeout, what, interval=0.01)


def terminal_config(
    folder: Path, kind: str, device: str = "T01", window: str = "W01", mode: str = "free", **table: Any
) -> TerminalConfig:
    """A config in ``folder`` (journal and panel state there); ``table`` overrides [kind] keys."""
    base = TerminalConfig(
        device=device,
        hall="H1",
        window=window,
        key="ab" * 32,
        kind=kind,
        mode=mode,
        clock="unsynced",
        broker=BrokerSettings(port=NO_BROKER),
        timing=TimingSettings(lockout_s=0.0),
        base=folder,
    )
    settings = dataclasses.replace(getattr(base, kind), **table)
    return dataclasses.replace(base, **{kind: settings})


def level_rows(journal_bodies: list[dict[str, Any]]) -> list[str]:
    return [b["level"] for b in journal_bodies if b.get("kind") == "rating"]


#: Fast timing for the bus drivers in terminal.toml (loopback simulators answer in ~1 ms).
TABLES: dict[str, dict[str, Any]] = {
    "modbus": {"poll_s": 0.01, "timeout_s": 0.5, "retries": 0, "reconnect_s": 0.2, "baudrate": 115200},
    "serial": {"read_s": 0.01, "link_timeout_s": 1.0, "reconnect_s": 0.1, "refresh_s": 0.5},
}


def write_config(folder: Path, kind: str, url: str) -> Path:
    """``folder/terminal.toml`` of a free-mode terminal whose panel is at ``url`` (no broker)."""
    data = {
        "device": "T01", "hall": "H1", "window": "W01", "key": "ab" * 32, "kind": kind, "clock": "unsynced",
        "broker": {"port": NO_BROKER}, "timing": {"lockout_s": 0.0}, kind: {"port": url, **TABLES[kind]},
    }  # fmt: skip
    path = folder / "terminal.toml"
    path.write_text(tomli_w.dumps(data))
    return path
