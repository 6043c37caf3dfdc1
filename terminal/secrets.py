"""The terminal's MAC key and broker password, and a rotation it survives (SPEC section 11).

The hub sends a ``rekey`` command with a new pair and its key id over the terminal's own session.
The terminal writes the pair into its ``terminal.toml`` (keeping the old password as
``previous_password``), then MACs every frame with the new key and names its id, and says so in
its state. The hub switches the broker's password once it has seen the new key in use; until
then the broker only knows the old password. So on every login the terminal tries ``password``
and, when the broker refuses it, ``previous_password``: whatever moment the link drops, it gets
back in. Once it got in with the new password, the old one is forgotten.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Mapping
from typing import Any

import tomli_w

from protocol import commands
from protocol.errors import MalformedFrame
from protocol.files import write_private

from .config import TerminalConfig

_LOG = logging.getLogger(__name__)
HEADER = b"# haocha terminal config, written by `haocha device add` (secrets updated by the hub's rekey).\n"


class TerminalSecrets:
    """Thread-safe: the uplink's thread reads the key, paho's thread logs in and takes commands."""

    def __init__(self, config: TerminalConfig) -> None:
        self.source = config.source
        self._lock = threading.Lock()
        self._key = config.key_bytes
        self._kid = config.key_id
        self._password = config.broker.password
        self._previous = config.broker.previous_password
        self._trying_previous = False

    @property
    def signing(self) -> tuple[bytes, int]:
        """The key frames are MACed with, and its id."""
        with self._lock:
            return self._key, self._kid

    def login_password(self) -> str:
        with self._lock:
            return self._previous if self._trying_previous and self._previous else self._password

    def refused(self) -> str | None:
        """The broker refused the login: the other password to try next, or None if there is none."""
        with self._lock:
            if not self._previous:
                return None
            self._trying_previous = not self._trying_previous
            return self._previous if self._trying_previous else self._password

    def logged_in(self) -> None:
        """The login worked: once with the new password, the previous one is not needed again."""
        with self._lock:
            if self._trying_previous or not self._previous:
                return
            self._previous = None
            changes = {"previous_password": None}
        self._persist({"broker": changes})

    def rekey(self, obj: Mapping[str, Any]) -> str | None:
        """Take up a new pair from the hub (a ``rekey`` command, parsed by :mod:`protocol.commands`):
        why it was refused, or None once it is stored and in use."""
        try:
            command = commands.parse(obj)
        except MalformedFrame as exc:
            return str(exc)
        if not isinstance(command, commands.Rekey):
            return f"a {command.name} command is no rekey"
        kid, key, password = command.kid, command.key, command.password
        with self._lock:
            current = self._kid
        if kid <= current:
            return f"key id {kid} is not newer than the one in use ({current})"
        if self.source is None:
            return "the terminal was not started from a terminal.toml it could update"
        with self._lock:  # the password the broker takes now stays the fallback
            previous = self._previous if self._trying_previous and self._previous else self._password
        self._persist({"key": key, "key_id": kid, "broker": {"password": password, "previous_password": previous}})
        with self._lock:
            self._key, self._kid = bytes.fromhex(key), kid
            self._password, self._previous, self._trying_previous = password, previous, False
        _LOG.info("took up MAC key %d from the hub; the broker password changes when the hub has seen it", kid)
        return None

    def _persist(self, changes: dict[str, Any]) -> None:
        """Write ``changes`` into terminal.toml atomically (a power cut leaves the old or the new file)."""
        if self.source is None:
            return
        data = tomllib.loads(self.source.read_text())
        for name, value in changes.items():
            if isinstance(value, dict):
                table = data.setdefault(name, {})
                for sub, sub_value in value.items():
                    if sub_value is None:
                        table.pop(sub, None)
                    else:
                        table[sub] = sub_value
            else:
                data[name] = value
        write_private(self.source, HEADER + tomli_w.dumps(data).encode())
