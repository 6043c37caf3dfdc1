"""Commands from the hub on the terminal's ``cmd`` topic: invitations, cancels, staff sign-in,
configurations.

A command is parsed by :mod:`protocol.commands` (the one parser of ``cmd`` frames: every field
checked, a refusal names the field); what a valid one does is :meth:`terminal.core.Rules.handle`
(the rules the firmware runs too): an invitation's remaining lifetime ``ttl_ms``, less the time
it spent at the broker when the clock is synchronised. A configuration is
:mod:`terminal.conf`'s (SPEC section 13). This router counts and logs: a bad command is refused
with one WARNING line and the terminal keeps its state, so no invalid row can come from it; a
bad configuration is also kept as the last refused and reported in the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from protocol import commands
from protocol.errors import MalformedFrame
from protocol.rules import check_text_setting

from .clock import Clock
from .evaluator import Evaluator
from .hubconfig import HubConfigFile

_LOG = logging.getLogger(__name__)


def _valid(name: str, value: object) -> bool:
    return check_text_setting(name, value) is None


class CommandRouter:
    def __init__(
        self,
        evaluator: Evaluator,
        clock: Clock,
        hub_config: HubConfigFile | None = None,
        on_update: Callable[[commands.Update], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.clock = clock
        self.hub_config = hub_config
        self.on_report = lambda: None  # the configuration report changed (the uplink republishes)
        self.on_update = on_update  #: ``update`` commands go to the updater (terminal.updater)
        names = ("invite", "repeated", "expired", "cancel", "staff", "config", "refused", "unknown", "update")
        self.counts = dict.fromkeys(names, 0)

    def handle(self, obj: Mapping[str, Any]) -> None:
        """paho network thread. Never raises for a bad command: it is refused and logged."""
        name = obj.get("cmd")
        try:
            command = commands.parse(obj)
        except MalformedFrame as exc:
            if name == commands.CommandName.CONFIG:
                self._refuse_config(obj.get("version"), str(exc))
                return
            known = isinstance(name, str) and name in commands.CommandName.__members__.values()
            self.counts["refused" if known else "unknown"] += 1
            _LOG.warning("refused a command from the hub: %s", exc)
            return
        if isinstance(command, commands.Invite) and command.ttl_ms is None:
            self.counts["refused"] += 1  # the hub sets it when it sends: without it, no deadline
            _LOG.warning("refused an invite command from the hub: field 'ttl_ms': missing")
            return
        if isinstance(command, commands.Config):
            self._config(command)
            return
        if isinstance(command, commands.Update):
            self.counts["update"] += 1
            if self.on_update is not None:
                self.on_update(command)
            return
        self._apply(command)

    def _apply(self, command: commands.Command) -> None:
        problem, done = self.evaluator.command(commands.payload(command), _valid)
        if problem is not None:  # the parser checked every field already: a rule of core's own
            self.counts["refused"] += 1
            _LOG.warning("refused a %s command from the hub: field %r", command.name, problem)
        elif isinstance(command, commands.Invite):
            self._invited(command.case, done is not None)
        else:
            self.counts[command.name.value] += 1

    def _config(self, command: commands.Config) -> None:
        """A configuration (checked in full by the parser): taken up by the rules once no rating
        is under way (:meth:`applied` follows)."""
        problem, done = self.evaluator.command(commands.payload(command), _valid)
        if problem is not None:  # the small form agrees with protocol.settings (tests): never here
            self._refuse_config(command.version, f"field {problem!r}: not valid")
        elif done is None:
            _LOG.info("configuration %d from the hub again: in force already", command.version)
        else:
            self.counts["config"] += 1
            if self.evaluator.config_pending:
                _LOG.info("configuration %d from the hub waits for the rating under way", command.version)

    def _refuse_config(self, version: object, reason: str) -> None:
        """A bad configuration: refused, kept as the last refused and reported; the one in force stays."""
        self.counts["refused"] += 1
        _LOG.warning("refused configuration %s from the hub: %s", str(version)[:40], reason)
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
