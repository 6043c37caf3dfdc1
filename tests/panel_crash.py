"""A terminal's panel driver that dies like ``kill -9`` at a chosen step of its first delivery.

``python -m tests.panel_crash CONFIG before-commit|after-commit``: the real driver of the
config's kind, the real evaluator and journal; the first press it hands on ends the process with
``os._exit`` (no cleanup, no ``finally``) either before its journal commit or right after it,
that is between the ledger's intent and its mark.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from terminal.clock import Clock
from terminal.config import load
from terminal.evaluator import Evaluator
from terminal.journal import Journal
from terminal.panel import Key
from terminal.panels import open_panel

STEPS = ("before-commit", "after-commit")


def main(config_path: str, step: str) -> None:
    if step not in STEPS:
        raise SystemExit(f"step must be one of {STEPS}")
    config = load(Path(config_path))
    journal = Journal(config.journal_path, config.device)
    panel = open_panel(config)
    evaluator = Evaluator(config, journal, panel, Clock("unsynced"))

    def on_key(key: Key) -> None:
        if step == "before-commit":
            os._exit(9)
        evaluator.press(key)
        os._exit(9)

    panel.start(on_key, lambda ok, detail: None)
    threading.Event().wait()  # until the first press ends the process


if __name__ == "__main__":
    main(*sys.argv[1:])
