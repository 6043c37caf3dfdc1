"""The wire format shared by the terminals and the hub (SPEC section 3)."""

from .errors import BadMac, BadTopic, HaochaError, MalformedFrame, OversizeFrame, ProtocolError
from .frames import Ack, Event, Kind, Trigger
from .levels import DEFAULT_REASONS, LEVEL_IDS, THREE_KEY_LEVELS, UNSPECIFIED_REASON, Level
from .topics import Leaf

__all__ = [
    "Ack", "BadMac", "BadTopic", "DEFAULT_REASONS", "Event", "HaochaError", "Kind", "LEVEL_IDS",
    "Leaf", "Level", "MalformedFrame", "OversizeFrame", "ProtocolError", "THREE_KEY_LEVELS",
    "Trigger", "UNSPECIFIED_REASON",
]  # fmt: skip
