"""Exceptions of the hub. The CLI turns each into one line on stderr and a non-zero exit."""

from protocol.config import ConfigError
from protocol.errors import HaochaError


class HubError(HaochaError):
    """Root of the hub's own errors."""


class NotFound(HubError, LookupError):
    """An unknown window, item, device or case."""


class AlreadyExists(HubError, ValueError):
    """The thing to create is there already."""


class StoreError(HubError, OSError):
    """The hub database cannot be opened or written (disk full, locked, corrupt)."""


class BrokerError(HubError, RuntimeError):
    """Mosquitto cannot be configured or started."""


__all__ = ["AlreadyExists", "BrokerError", "ConfigError", "HubError", "NotFound", "StoreError"]
