"""Shared by the panel tests: waiting for conditions, terminal configs that reach simulated panels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
