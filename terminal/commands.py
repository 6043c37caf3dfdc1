"""Commands from the hub on the terminal's ``cmd`` topic: invitations, cancels, staff sign-in.

An invitation carries its remaining lifetime (``ttl_ms``) measured by the hub when it sent it,
and the hub's wall time then (``sent_ms``). A terminal with a synchronised clock subtracts the
time the command spent queued at the broker; one without trusts ``ttl_ms`` as it arrives.

Every value a command brings that later rows carry (an invitation's case, item and staff, a signed-in
staff id) is checked with :mod:`protocol.rules` before it changes anything: a bad command is refused
with one WARNING line and the terminal keeps its state, so no invalid row can come from it.
"""

from __future__ import annotations

import logging
from typing import Any

from protocol.rules import INVITE_TTL_MAX_MS, check_text_setting

from .clock import Clock
from .evaluator import Evaluator

_LOG = logging.getLogger(__name__)
#: The longest invitation a terminal accepts (the hub never sends longer: its invite_s is capped too).
TTL_MAX_MS = INVITE_TTL_MAX_MS


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _texts_problem(cmd: dict[str, Any], *names: str) -> str | None:
    """The first of ``names`` whose value could not be carried by an event (None is fine)."""
    for name in names:
        problem = check_text_setting(name, cmd.get(name))
        if problem is not None:
            return problem
    return None


class CommandRouter:
    def __init__(self, evaluator: Evaluator, clock: Clock) -> None:
        self.evaluator = evaluator
        self.clock = clock
        self.counts = {"invite": 0, "repeated": 0, "expired": 0, "cancel": 0, "staff": 0, "refused": 0, "unknown": 0}

    def handle(self, cmd: dict[str, Any]) -> None:
        """paho network thread. Never raises for a bad command: it is refused and logged."""
        name = cmd.get("cmd") if isinstance(cmd, dict) else None
        handler = {"invite": self._invite, "cancel": self._cancel, "staff": self._staff}.get(
            name if isinstance(name, str) else ""
        )
        if handler is None:
            self.counts["unknown"] += 1
            _LOG.warning("unknown command %s", _short(name))
            return
        problem = handler(cmd)
        if problem is not None:
            self.counts["refused"] += 1
            _LOG.warning("refused a %s command from the hub: %s", name, problem)

    def _invite(self, cmd: dict[str, Any]) -> str | None:
        case, ttl_ms, sent_ms = cmd.get("case"), cmd.get("ttl_ms"), cmd.get("sent_ms")
        if case is None:
            return "case: missing"
        if type(ttl_ms) is not int or not 0 <= ttl_ms <= TTL_MAX_MS:
            return f"ttl_ms: expected 0..{TTL_MAX_MS} milliseconds, got {_short(ttl_ms)}"
        problem = _texts_problem(cmd, "case", "item", "staff")
        if problem is not None:
            return problem
        if self.clock.synced() and type(sent_ms) is int:
            ttl_ms -= max(0, self.clock.wall_ms() - sent_ms)
        if self.evaluator.invite(case, cmd.get("item"), cmd.get("staff"), self.clock.mono_ms() + ttl_ms):
            self.counts["invite"] += 1
            _LOG.info("invitation for case %s (%d ms left)", case, ttl_ms)
        elif self.evaluator.has_rated(case):
            self.counts["repeated"] += 1
            _LOG.info("invitation for case %s again: rated here already, ignored", case)
        else:
            self.counts["expired"] += 1
            _LOG.info("invitation for case %s arrived after it expired", case)
        return None

    def _cancel(self, cmd: dict[str, Any]) -> str | None:
        problem = _texts_problem(cmd, "case")
        if problem is None:
            self.counts["cancel"] += 1
            self.evaluator.cancel(cmd.get("case"))
        return problem

    def _staff(self, cmd: dict[str, Any]) -> str | None:
        """Sign-in (a staff id) or sign-out (null): later events carry this staff id."""
        problem = _texts_problem(cmd, "staff")
        if problem is None:
            self.counts["staff"] += 1
            self.evaluator.sign_in(cmd.get("staff"))
        return problem
