"""Exceptions of the terminal program."""

from protocol.config import ConfigError
from protocol.errors import HaochaError


class TerminalError(HaochaError):
    """Root of the terminal's own errors."""


class JournalError(TerminalError, OSError):
    """The journal cannot be opened or written: the press is NOT accepted."""


class InvalidRow(TerminalError, ValueError):
    """A row that breaks a rule of :mod:`protocol.rules`: it is NOT journaled (the hub could only
    store it as invalid), and the press gets the refusal beep."""


class PanelError(TerminalError, OSError):
    """The button panel cannot be reached or configured."""


__all__ = ["ConfigError", "InvalidRow", "JournalError", "PanelError", "TerminalError"]
