"""Exceptions of the terminal program."""

from protocol.config import ConfigError
from protocol.errors import HaochaError


class TerminalError(HaochaError):
    """Root of the terminal's own errors."""


class JournalError(TerminalError, OSError):
    """The journal cannot be opened or written: the press is NOT accepted."""


class PanelError(TerminalError, OSError):
    """The button panel cannot be reached or configured."""


__all__ = ["ConfigError", "JournalError", "PanelError", "TerminalError"]
