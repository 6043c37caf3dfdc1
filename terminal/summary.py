"""What ``terminal journal`` prints, for every kind's journal (SPEC section 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import load
from .journal import read_summary


def journal_summary(config_path: Path) -> dict[str, Any]:
    """``{"device", "epoch", "last_seq", "acked", "pending"}`` of the journal ``config_path`` names,
    the MicroPython log included."""
    config = load(config_path)
    if config.kind == "micro":
        from .micro_host import journal_summary as micro_summary

        return micro_summary(config.journal_path)
    return read_summary(config.journal_path)
