"""Commands from the hub on the terminal's ``cmd`` topic: invitations, cancels, staff sign-in.

An invitation carries its remaining lifetime (``ttl_ms``) measured by the hub when it sent it,
and the hub's wall time then (``sent_ms``). A terminal with a synchronised clock subtracts the
time the command spent queued at the broker; one without trusts ``ttl_ms`` as it arrives.
"""

from __future__ import annotations

import logging
from typing import Any

from .clock import Clock
from .evaluator import Evaluator

_LOG = logging.getLogger(__name__)


class CommandRouter:
    def __init__(self, evaluator: Evaluator, clock: Clock) -> None:
        self.evaluator = evaluator
        self.clock = clock
        self.counts = {"invite": 0, "expired": 0, "cancel": 0, "unknown": 0}

    def handle(self, cmd: dict[str, Any]) -> None:
        """paho network thread."""
        name = cmd.get("cmd")
        if name == "invite":
            self._invite(cmd)
        elif name == "cancel":
            self.counts["cancel"] += 1
            self.evaluator.cancel(cmd.get("case"))
        elif name == "staff":
            staff = cmd.get("staff")
            if staff is not None and not (isinstance(staff, str) and 0 < len(staff) <= 64):
                raise ValueError(f"bad staff id in {cmd!r}")
            self.evaluator.sign_in(staff)
        else:
            self.counts["unknown"] += 1
            _LOG.warning("unknown command %r", name)

    def _invite(self, cmd: dict[str, Any]) -> None:
        case, ttl_ms, sent_ms = cmd.get("case"), cmd.get("ttl_ms"), cmd.get("sent_ms")
        if not isinstance(case, str) or type(ttl_ms) is not int:
            raise ValueError(f"invitation without case or ttl_ms: {cmd!r}")
        if self.clock.synced() and type(sent_ms) is int:
            ttl_ms -= max(0, self.clock.wall_ms() - sent_ms)
        if self.evaluator.invite(case, cmd.get("item"), cmd.get("staff"), self.clock.mono_ms() + ttl_ms):
            self.counts["invite"] += 1
            _LOG.info("invitation for case %s (%d ms left)", case, ttl_ms)
        else:
            self.counts["expired"] += 1
            _LOG.info("invitation for case %s arrived after it expired", case)
