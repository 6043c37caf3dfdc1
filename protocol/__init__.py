"""The wire format shared by the terminals and the hub (SPEC section 3)."""

from .errors import BadMac, BadTopic, HaochaError, MalformedFrame, OversizeFrame, ProtocolError
from .frames import Ack, Event, Kind, Trigger
from .levels import DEFAULT_REASONS, LEVEL_IDS, THREE_KEY_LEVELS, UNSPECIFIED_REASON, Level
from .topics import Leaf

__all__ = [
    "DEFAULT_REASONS",
    "LEVEL_IDS",
    "THREE_KEY_LEVELS",
    "UNSPECIFIED_REASON",
    "Ack",
    "BadMac",
    "BadTopic",
    "Event",
    "HaochaError",
    "Kind",
    "Leaf",
    "Level",
    "MalformedFrame",
    "OversizeFrame",
    "ProtocolError",
    "Trigger",
]  # fmt: skip
