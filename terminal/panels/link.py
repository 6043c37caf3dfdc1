"""A panel link as the terminal reports it: logged and handed to the status handler once per
change (the handler puts it in the terminal's retained MQTT state)."""

from __future__ import annotations

import logging

from ..panel import StatusHandler

_LOG = logging.getLogger(__name__)


class LinkState:
    """Runs on the driver's poll or reader thread."""

    def __init__(self) -> None:
        self.online: bool | None = None  #: None before the first attempt
        self.handler: StatusHandler | None = None

    def up(self, detail: str) -> None:
        if self.online:
            return
        self.online = True
        _LOG.info("%s answers", detail)
        self._tell(True, detail)

    def down(self, detail: str) -> None:
        if self.online is False:
            return
        self.online = False
        _LOG.warning("%s", detail)
        self._tell(False, detail)

    def _tell(self, ok: bool, detail: str) -> None:
        if self.handler is None:
            return
        try:
            self.handler(ok, detail)
        except Exception:
            _LOG.exception("status callback failed")
