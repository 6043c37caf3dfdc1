"""Wire frames (SPEC section 3): events, batches, acks and states; built and parsed here only.

An event's MAC is HMAC-SHA256, keyed with the device's own key, over :func:`canonical_bytes`: a
line-oriented encoding with a fixed field order and length-prefixed strings. It is deliberately
not JSON, so that MicroPython (whose dicts keep no order and whose ``json`` escapes differently)
produces the same bytes with a few lines of code. The hall and device ids are part of the MACed
bytes but not of the payload: the hub takes them from the topic, which the broker ties to the
authenticated user.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import BadMac, MalformedFrame, OversizeFrame
from .levels import LEVEL_IDS

SCHEMA_VERSION = 1
#: A frame larger than this is rejected before it is parsed.
MAX_FRAME_BYTES = 64 * 1024
#: Most events one ``ev`` frame may carry.
MAX_BATCH_EVENTS = 200
MAX_SEQ = 2**63 - 1
CANONICAL_MAGIC = b"haocha-ev/1\n"

_EPOCH_RE = re.compile(r"^[0-9a-f]{16,32}$")
_MAC_RE = re.compile(r"^[0-9a-f]{64}\Z")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TEXT_MAX = 64
#: Free text (case, item, staff): 1-64 characters, no control characters or line separators; the
#: OpenAPI description uses this pattern. Python strings may also hold lone surrogates (which
#: UTF-8 cannot encode, and which JSON Schema's Unicode strings cannot hold): refused too.
TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]{1,64}$"
_TEXT_RE = re.compile(r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029\ud800-\udfff]{1,64}\Z")


def valid_text(value: object) -> bool:
    return isinstance(value, str) and _TEXT_RE.match(value) is not None


class Kind(enum.Enum):
    """What a journal row records."""

    RATING = "rating"  #: a citizen's rating
    REASON = "reason"  #: the reason keys for the bad rating named by ``ref``
    STAFF = "staff"  #: the staff key: a case finished, rating invited by the terminal itself
    IGNORED = "ignored"  #: a press that changed nothing (no invitation, lockout, after the first)


class Trigger(enum.Enum):
    """What made the terminal accept a rating."""

    INVITE = "invite"  #: an invitation from the hub (a case opened by the business system)
    STAFF = "staff"  #: the staff key on the terminal (local case number)
    FREE = "free"  #: free mode: no case, lockout between presses


#: Fields in canonical (MAC) order. ``hall`` and ``device`` come first, from the topic.
EVENT_FIELDS: tuple[str, ...] = (
    "v", "epoch", "seq", "kind", "level", "reasons", "ref", "case", "item", "staff", "window",
    "trigger", "boot", "mono_ms", "wall_ms", "synced", "age_ms",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One journal row as it travels. ``age_ms`` is None when the row was made in an earlier boot
    (its age is then unknown without a synchronised clock)."""

    epoch: str
    seq: int
    kind: str
    window: str | None = None
    level: str | None = None
    reasons: tuple[str, ...] | None = None
    ref: int | None = None
    case: str | None = None
    item: str | None = None
    staff: str | None = None
    trigger: str | None = None
    boot: str = ""
    mono_ms: int = 0
    wall_ms: int = 0
    synced: bool = False
    age_ms: int | None = None
    v: int = SCHEMA_VERSION

    def fields(self) -> dict[str, Any]:
        """Every field by name, lists for tuples (JSON-ready, nulls kept)."""
        out = {name: getattr(self, name) for name in EVENT_FIELDS}
        if self.reasons is not None:
            out["reasons"] = list(self.reasons)
        return out


_FIELD_PREFIXES = tuple((name.encode() + b"=", name) for name in EVENT_FIELDS)


def _encode_value(value: Any) -> bytes:
    kind = type(value)  # exact types, most common first: this runs for every field of every event
    if kind is str:
        raw = value.encode("utf-8")
        return b"s%d:%b" % (len(raw), raw)
    if value is None:
        return b"-"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        return b"i%d" % value
    if kind in (list, tuple):
        return b"l%d:%b" % (len(value), b"".join(_encode_value(v) for v in value))
    raise TypeError(f"cannot encode {kind.__name__} canonically")


def canonical_bytes(hall: str, device: str, event: Event) -> bytes:
    """The bytes the MAC covers: magic, then ``name=value`` lines in :data:`EVENT_FIELDS` order.

    Values: ``-`` null, ``T``/``F`` booleans, ``i<decimal>`` integers, ``s<len>:<utf-8>`` strings,
    ``l<count>:<values>`` lists.
    """
    parts = [CANONICAL_MAGIC, b"hall=", _encode_value(hall), b"\ndevice=", _encode_value(device), b"\n"]
    for prefix, name in _FIELD_PREFIXES:
        parts += (prefix, _encode_value(getattr(event, name)), b"\n")
    return b"".join(parts)


def compute_mac(key: bytes, hall: str, device: str, event: Event) -> str:
    return hmac.digest(key, canonical_bytes(hall, device, event), "sha256").hex()


def event_to_wire(key: bytes, hall: str, device: str, event: Event) -> dict[str, Any]:
    """The JSON object for one event: its fields (nulls left out) and ``mac``."""
    out = {k: v for k, v in event.fields().items() if v is not None}
    out["mac"] = compute_mac(key, hall, device, event)
    return out


def encode_batch(key: bytes, hall: str, device: str, events: Iterable[Event]) -> bytes:
    """An ``ev`` payload: ``{"v": 1, "ev": [...]}``, compact UTF-8 JSON."""
    wire = [event_to_wire(key, hall, device, e) for e in events]
    if not wire or len(wire) > MAX_BATCH_EVENTS:
        raise ValueError(f"a batch holds 1..{MAX_BATCH_EVENTS} events, not {len(wire)}")
    return dumps({"v": SCHEMA_VERSION, "ev": wire})


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads_object(payload: bytes) -> dict[str, Any]:
    """Parse a JSON object frame, enforcing the size limit first."""
    if len(payload) > MAX_FRAME_BYTES:
        raise OversizeFrame(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedFrame("frame is not a JSON object")
    return obj


def _malformed(name: str, why: str) -> MalformedFrame:
    return MalformedFrame(f"field {name!r}: {why}")


def _int(obj: Mapping[str, Any], name: str, lo: int, hi: int, optional: bool = False) -> int | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if type(value) is not int or not lo <= value <= hi:
        raise _malformed(name, f"expected an integer in {lo}..{hi}, got {value!r}")
    return value


def _text(
    obj: Mapping[str, Any], name: str, optional: bool = True, pattern: re.Pattern[str] | None = None
) -> str | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not valid_text(value):
        raise _malformed(name, f"expected 1..{_TEXT_MAX} characters without control characters, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise _malformed(name, f"{value!r} does not match {pattern.pattern}")
    return value


def _choice(obj: Mapping[str, Any], name: str, allowed: frozenset[str], optional: bool = True) -> str | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if type(value) is not str or value not in allowed:
        raise _malformed(name, f"expected one of {', '.join(sorted(allowed))}, got {value!r}")
    return value


def _reasons(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = obj.get("reasons")
    if value is None:
        return None
    if not isinstance(value, list) or not 0 < len(value) <= 8:
        raise _malformed("reasons", "expected a list of 1..8 reason ids")
    for item in value:
        if not isinstance(item, str) or not _ID_RE.match(item):
            raise _malformed("reasons", f"invalid reason id {item!r}")
    return tuple(value)


_WIRE_FIELDS = frozenset((*EVENT_FIELDS, "mac"))
_KINDS = frozenset(k.value for k in Kind)
_TRIGGERS = frozenset(t.value for t in Trigger)
_LEVELS = frozenset(LEVEL_IDS)
_RATING, _IGNORED, _REASON = Kind.RATING.value, Kind.IGNORED.value, Kind.REASON.value


def _check_kind_rules(event: Event) -> None:
    """Which optional fields each kind requires."""
    if event.kind in (_RATING, _IGNORED) and event.level is None:
        raise _malformed("level", f"a {event.kind} event needs a level")
    if event.kind == _RATING and event.trigger is None:
        raise _malformed("trigger", "a rating needs a trigger")
    if event.kind == _REASON and (event.reasons is None or event.ref is None):
        raise _malformed("reasons", "a reason event needs reasons and ref")
    if event.ref is not None and event.ref >= event.seq:
        raise _malformed("ref", "ref must point at an earlier seq")


def parse_event(obj: Any) -> tuple[Event, str]:
    """Validate one wire event; return it with its claimed MAC (not yet checked)."""
    if not isinstance(obj, dict):
        raise MalformedFrame("event is not a JSON object")
    unknown = obj.keys() - _WIRE_FIELDS
    if unknown:
        raise MalformedFrame(f"unknown event fields: {', '.join(sorted(unknown))}")
    if obj.get("v") != SCHEMA_VERSION or type(obj.get("v")) is not int:
        raise _malformed("v", f"unsupported schema version {obj.get('v')!r}")
    synced = obj.get("synced", False)
    if not isinstance(synced, bool):
        raise _malformed("synced", "expected true or false")
    event = Event(
        epoch=str(_text(obj, "epoch", optional=False, pattern=_EPOCH_RE)),
        seq=int(_int(obj, "seq", 1, MAX_SEQ) or 0),
        kind=str(_choice(obj, "kind", _KINDS, optional=False)),
        window=_text(obj, "window", pattern=_ID_RE),
        level=_choice(obj, "level", _LEVELS),
        reasons=_reasons(obj),
        ref=_int(obj, "ref", 1, MAX_SEQ, optional=True),
        case=_text(obj, "case"),
        item=_text(obj, "item"),
        staff=_text(obj, "staff"),
        trigger=_choice(obj, "trigger", _TRIGGERS),
        boot=str(_text(obj, "boot", optional=False)),
        mono_ms=int(_int(obj, "mono_ms", 0, MAX_SEQ) or 0),
        wall_ms=int(_int(obj, "wall_ms", 0, MAX_SEQ) or 0),
        synced=synced,
        age_ms=_int(obj, "age_ms", 0, MAX_SEQ, optional=True),
    )
    _check_kind_rules(event)
    mac = _text(obj, "mac", optional=False, pattern=_MAC_RE)
    return event, str(mac)


def verify_event(key: bytes, hall: str, device: str, event: Event, mac: str) -> None:
    """Raise :class:`BadMac` unless ``mac`` is this device's MAC of ``event``."""
    expected = hmac.digest(key, canonical_bytes(hall, device, event), "sha256")  # one C call, no HMAC object
    if not hmac.compare_digest(expected.hex(), mac):
        raise BadMac(f"bad MAC on {device} epoch {event.epoch} seq {event.seq}")


def parse_batch(payload: bytes) -> list[tuple[Event, str]]:
    """Parse an ``ev`` payload (a batch, or one bare event) into (event, mac) pairs.

    The whole frame is refused if any event in it is malformed: a terminal never mixes good and
    bad events, so a partly bad frame is corruption or forgery.
    """
    obj = loads_object(payload)
    if "ev" not in obj:
        return [parse_event(obj)]
    if set(obj) != {"v", "ev"} or obj["v"] != SCHEMA_VERSION:
        raise MalformedFrame('batch frame must be exactly {"v": 1, "ev": [...]}')
    events = obj["ev"]
    if not isinstance(events, list) or not 0 < len(events) <= MAX_BATCH_EVENTS:
        raise MalformedFrame(f"'ev' must be a list of 1..{MAX_BATCH_EVENTS} events")
    return [parse_event(e) for e in events]


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """Every event of ``epoch`` with seq ≤ ``upto`` is committed at the hub."""

    epoch: str
    upto: int

    def encode(self) -> bytes:
        return dumps({"epoch": self.epoch, "upto": self.upto})

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        obj = loads_object(payload)
        epoch = _text(obj, "epoch", optional=False, pattern=_EPOCH_RE)
        upto = _int(obj, "upto", 0, MAX_SEQ)
        return cls(str(epoch), int(upto or 0))


def encode_state(online: bool, **details: Any) -> bytes:
    """A retained ``state`` payload: ``online`` plus whatever the sender reports."""
    return dumps({"online": online, **details})


def decode_state(payload: bytes) -> dict[str, Any]:
    obj = loads_object(payload)
    if not isinstance(obj.get("online"), bool):
        raise _malformed("online", "expected true or false")
    return obj
