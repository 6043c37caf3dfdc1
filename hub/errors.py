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


class TicketStateError(HubError, ValueError):
    """A ticket change that breaks 登记 → 转办 → 核实 → 反馈 (registered → assigned → verified → feedback)."""


class UpstreamError(HubError, RuntimeError):
    """The regional system cannot be reached or configured (unknown adapter or signing scheme)."""


__all__ = [
    "AlreadyExists",
    "BrokerError",
    "ConfigError",
    "HubError",
    "NotFound",
    "StoreError",
    "TicketStateError",
    "UpstreamError",
]
