"""MQTT topic names (SPEC section 3): ``haocha/v1/{hall}/{device}/{leaf}``."""

from __future__ import annotations

import enum
import re

from .errors import BadTopic

PREFIX = "haocha/v1"
HUB_DEVICE = "hub"
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # always fullmatch: "T9\n" is no id


class Leaf(enum.Enum):
    """The last topic level: what the message is."""

    EV = "ev"  #: terminal → hub, events (QoS 1)
    ACK = "ack"  #: hub → terminal, retained cumulative ack
    CMD = "cmd"  #: hub → terminal, invitations and commands
    STATE = "state"  #: terminal → hub, retained state with last will


def valid_id(text: str) -> bool:
    """Hall and device ids: 1-32 of ``[A-Za-z0-9_-]``."""
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def check_device_id(device: str) -> str:
    """Return ``device`` or raise ValueError; ``hub`` is reserved for the hub's own topics."""
    if not valid_id(device) or device == HUB_DEVICE:
        raise ValueError(f"invalid device id {device!r}: use 1-32 of A-Z a-z 0-9 _ -, not 'hub'")
    return device


def topic(hall: str, device: str, leaf: Leaf) -> str:
    return f"{PREFIX}/{hall}/{device}/{leaf.value}"


def hub_state_topic(hall: str) -> str:
    return f"{PREFIX}/{hall}/{HUB_DEVICE}/state"


def wildcard(hall: str, leaf: Leaf) -> str:
    """Subscription filter for one leaf of every device in the hall."""
    return f"{PREFIX}/{hall}/+/{leaf.value}"


def parse_topic(hall: str, name: str) -> tuple[str, Leaf]:
    """Split ``name`` into (device, leaf); BadTopic if it is not a device topic of ``hall``."""
    parts = name.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[2] != hall:
        raise BadTopic(f"topic {name!r} is not under {PREFIX}/{hall}/")
    device, leaf = parts[3], parts[4]
    if not valid_id(device) or device == HUB_DEVICE:
        raise BadTopic(f"topic {name!r} names no valid device")
    try:
        return device, Leaf(leaf)
    except ValueError:
        raise BadTopic(f"topic {name!r} has unknown leaf {leaf!r}") from None
