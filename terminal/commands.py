"""Commands from the hub on the terminal's ``cmd`` topic: invitations, cancels, staff sign-in,
configurations.

What a command does, and when it is refused, is :meth:`terminal.core.Rules.handle` (the rules the
firmware runs too): an invitation's remaining lifetime ``ttl_ms``, less the time it spent at the
broker when the clock is synchronised; every text a command brings that later rows carry checked
with :mod:`protocol.rules` before it changes anything. This router counts and logs: a bad command
is refused with one WARNING line and the terminal keeps its state, so no invalid row can come
from it.
"""

from __future__ import annotations

import logging
from typing import Any

from protocol import commands
from protocol.errors import MalformedFrame
from protocol.rules import INVITE_TTL_MAX_MS, check_text_setting

from .clock import Clock
from .evaluator import Evaluator
from .hubconfig import HubConfigFile

_LOG = logging.getLogger(__name__)
#: The longest invitation a terminal accepts (the hub never sends longer: its invite_s is capped too).
TTL_MAX_MS = INVITE_TTL_MAX_MS


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _valid(name: str, value: object) -> bool:
    return check_text_setting(name, value) is None


def _problem(cmd: dict[str, Any], field: str) -> str:
    """The refusal of ``cmd`` for ``field``, in words."""
    value = cmd.get(field)
    if field == "ttl_ms":
        return f"ttl_ms: expected 0..{TTL_MAX_MS} milliseconds, got {_short(value)}"
    if value is None:
        return f"{field}: missing"
    return check_text_setting(field, value) or f"{field}: {_short(value)}"


class CommandRouter:
    def __init__(self, evaluator: Evaluator, clock: Clock, hub_config: HubConfigFile | None = None) -> None:
        self.evaluator = evaluator
        self.clock = clock
        self.hub_config = hub_config
        self.on_report = lambda: None  # the configuration report changed (the uplink republishes)
        self.counts = {
            "invite": 0, "repeated": 0, "expired": 0, "cancel": 0, "staff": 0, "config": 0, "refused": 0, "unknown": 0,
        }  # fmt: skip

    def handle(self, cmd: dict[str, Any]) -> None:
        """paho network thread. Never raises for a bad command: it is refused and logged."""
        if isinstance(cmd, dict) and cmd.get("cmd") == commands.CommandName.CONFIG.value:
            self._config(cmd)
            return
        problem, done = self.evaluator.command(cmd, _valid)
        name = cmd.get("cmd") if isinstance(cmd, dict) else None
        if problem == "cmd":
            self.counts["unknown"] += 1
            _LOG.warning("unknown command %s", _short(name))
        elif problem is not None:
            self.counts["refused"] += 1
            _LOG.warning("refused a %s command from the hub: %s", name, _problem(cmd, problem))
        elif name == "invite":
            self._invited(cmd["case"], done is not None)
        else:
            self.counts[str(name)] += 1

    def _config(self, cmd: dict[str, Any]) -> None:
        """A configuration: checked in full (protocol.settings), then taken up by the rules once no
        rating is under way. A bad one is refused, kept on disk and reported; the old one stays."""
        version = cmd.get("version")
        try:
            commands.parse(cmd)
        except MalformedFrame as exc:
            self._refuse(version, str(exc))
            return
        problem, done = self.evaluator.command(cmd, _valid)
        if problem is not None:  # the core's small form agrees with protocol.settings (tests): never here
            self._refuse(version, f"{problem}: not valid")
        elif done is None:
            _LOG.info("configuration %s from the hub again: in force already", version)
        else:
            self.counts["config"] += 1
            if self.evaluator.config_pending:
                _LOG.info("configuration %s from the hub waits for the rating under way", version)

    def _refuse(self, version: object, reason: str) -> None:
        self.counts["refused"] += 1
        _LOG.warning("refused configuration %s from the hub: %s", _short(version), reason)
        if self.hub_config is not None:
            self.hub_config.refuse(version if type(version) is int else 0, reason)
            self.on_report()

    def applied(self, version: int, settings: dict[str, Any]) -> None:
        """The rules took configuration ``version`` up (any thread): kept on disk and reported."""
        if self.hub_config is not None:
            self.hub_config.applied(version, settings)
            self.on_report()

    def _invited(self, case: str, opened: bool) -> None:
        if opened:
            self.counts["invite"] += 1
            inv = self.evaluator.invitation
            left = inv.expires_mono_ms - self.clock.mono_ms() if inv is not None else 0
            _LOG.info("invitation for case %s (%d ms left)", case, left)
        elif self.evaluator.has_rated(case):
            self.counts["repeated"] += 1
            _LOG.info("invitation for case %s again: rated here already, ignored", case)
        else:
            self.counts["expired"] += 1
            _LOG.info("invitation for case %s arrived after it expired", case)
