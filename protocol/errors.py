"""Exceptions raised while building or parsing wire frames."""


class HaochaError(Exception):
    """Root of every error this project raises on purpose."""


class ProtocolError(HaochaError, ValueError):
    """A frame that cannot be accepted; ``reason`` is the short code counted by the hub."""

    reason = "malformed"


class MalformedFrame(ProtocolError):
    """Not JSON, wrong shape, a field of the wrong type or out of range."""

    reason = "malformed"


class OversizeFrame(ProtocolError):
    """Larger than :data:`protocol.frames.MAX_FRAME_BYTES`."""

    reason = "oversize"


class BadMac(ProtocolError):
    """The MAC does not match the device's key: forged, corrupted or keyed for another device."""

    reason = "bad_mac"


class BadTopic(ProtocolError):
    """A topic outside ``haocha/v1/{hall}/{device}/…`` or with an invalid id."""

    reason = "bad_topic"


class UnknownKey(ProtocolError):
    """The frame names a key id its device may not use now: unknown, retired past its grace
    period, or distrusted by a rotation at once (SPEC section 11)."""

    reason = "unknown_key"
