"""The hub's configuration on a CPython terminal (SPEC section 13): kept beside the journal.

A ``config`` command carries the device's whole effective settings (protocol/settings.py) and a
version. :mod:`terminal.commands` checks it with :mod:`protocol.commands` (a hostile or newer hub
may send anything) and refuses a bad one with the reason; :class:`terminal.core.Rules` takes a
good one up once no invitation and no reason wait is live. The one in force and the last one
refused are written to ``hub-config.json`` in the journal's folder (a temp file renamed over it),
so they survive a restart; ``terminal.toml`` stays the base under them. The retained state
reports both (:class:`protocol.state.ConfigReport`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from protocol.settings import VERSION_MAX, settings_problem
from protocol.state import ConfigReport

_LOG = logging.getLogger(__name__)
FILE_NAME = "hub-config.json"


class HubConfigFile:
    """The configuration in force (version, settings) and the last refusal, on disk."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        self.version = 0
        self.settings: dict[str, Any] = {}
        self.refused: tuple[int, str] | None = None
        self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            _LOG.error("%s cannot be read (%s): running on terminal.toml alone", self.path, exc)
            return
        version, settings, refused = data.get("version"), data.get("settings"), data.get("refused")
        problem = settings_problem(settings)
        if type(version) is not int or not 0 <= version <= VERSION_MAX or problem is not None:
            _LOG.error("%s is not valid (%s): running on terminal.toml alone", self.path, problem or "version")
            return
        self.version, self.settings = version, dict(settings)
        if isinstance(refused, dict) and type(refused.get("version")) is int and isinstance(refused.get("reason"), str):
            self.refused = (refused["version"], refused["reason"])

    @property
    def report(self) -> ConfigReport:
        if self.refused is None:
            return ConfigReport(self.version)
        return ConfigReport(self.version, self.refused[0], self.refused[1])

    def applied(self, version: int, settings: dict[str, Any]) -> None:
        self.version, self.settings = version, dict(settings)
        self._write()

    def refuse(self, version: int, reason: str) -> None:
        self.refused = (min(max(version, 0), VERSION_MAX), reason[:200])
        self._write()

    def _write(self) -> None:
        body: dict[str, Any] = {"version": self.version, "settings": self.settings}
        if self.refused is not None:
            body["refused"] = {"version": self.refused[0], "reason": self.refused[1]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(body, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
