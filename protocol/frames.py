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
from .updates import valid_update_state

SCHEMA_VERSION = 1
#: A frame larger than this is rejected before it is parsed.
MAX_FRAME_BYTES = 64 * 1024
#: Most events one ``ev`` frame may carry.
MAX_BATCH_EVENTS = 200
MAX_SEQ = 2**63 - 1
CANONICAL_MAGIC = b"haocha-ev/1\n"

#: The dedupe key and the MAC must be well-formed for a frame to be handled at all.
_EPOCH_RE = re.compile(r"[0-9a-f]{16,32}")
_MAC_RE = re.compile(r"[0-9a-f]{64}")


class Kind(enum.StrEnum):
    """What a journal row records."""

    RATING = "rating"  #: a citizen's rating
    REASON = "reason"  #: the reason keys for the bad rating named by ``ref``
    STAFF = "staff"  #: the staff key: a case finished, rating invited by the terminal itself
    IGNORED = "ignored"  #: a press that changed nothing (no invitation, lockout, after the first)


class Trigger(enum.StrEnum):
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
    #: A :class:`Kind` value once :func:`protocol.rules.event_problem` passed it (it may be unknown
    #: before: a MAC-valid event of an unknown kind is stored as invalid, not dropped). Compare
    #: with the enum: ``ev.kind == Kind.RATING`` (a StrEnum).
    kind: str
    window: str | None = None
    level: str | None = None
    reasons: tuple[str, ...] | None = None
    ref: int | None = None
    case: str | None = None
    item: str | None = None
    staff: str | None = None
    trigger: str | None = None  #: a :class:`Trigger` value, checked like ``kind``
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


def encode_batch(key: bytes, hall: str, device: str, events: Iterable[Event], kid: int | None = None) -> bytes:
    """An ``ev`` payload: ``{"v": 1, "kid": K, "ev": [...]}``, compact UTF-8 JSON. ``kid`` names
    the device key the MACs were made with (left out: the device's current key)."""
    wire = [event_to_wire(key, hall, device, e) for e in events]
    if not wire or len(wire) > MAX_BATCH_EVENTS:
        raise ValueError(f"a batch holds 1..{MAX_BATCH_EVENTS} events, not {len(wire)}")
    return dumps({"v": SCHEMA_VERSION, "ev": wire} if kid is None else {"v": SCHEMA_VERSION, "kid": kid, "ev": wire})


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads_object(payload: bytes) -> dict[str, Any]:
    """Parse a JSON object frame, enforcing the size limit first.

    Anything ``json.loads`` can raise on hostile bytes becomes :class:`MalformedFrame`: invalid
    UTF-8 and numbers over Python's 4,300-digit limit (``ValueError``), and nesting deeper than the
    interpreter's recursion limit (``RecursionError``: 60 KB of ``[`` is 60,000 levels)."""
    if len(payload) > MAX_FRAME_BYTES:
        raise OversizeFrame(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise MalformedFrame(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(obj, dict):
        raise MalformedFrame("frame is not a JSON object")
    return obj


def _malformed(name: str, why: str) -> MalformedFrame:
    return MalformedFrame(f"field {name!r}: {why}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


_WIRE_FIELDS = frozenset((*EVENT_FIELDS, "mac"))
#: Types the canonical encoding covers; anything else (floats, objects) cannot carry a MAC.
_SCALARS = frozenset((str, int, bool, type(None)))


def _reasons(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if type(value) is not list or any(type(r) not in _SCALARS for r in value):
        raise _malformed("reasons", f"expected a list of ids, got {_short(value)}")
    return tuple(value)


def parse_event(obj: Any) -> tuple[Event, str]:
    """Check one wire event's *shape* and return it with its claimed MAC (not yet verified).

    Shape is what handling needs at all: a well-formed dedupe key (epoch, seq), a well-formed MAC,
    only known fields, and values the canonical encoding covers. What the values *mean* (known
    levels, text lengths, times in range) is :func:`protocol.rules.event_problem`'s to judge, after
    the MAC: a MAC-valid event that breaks a rule is stored as invalid, never left to block its
    terminal's sequence."""
    if not isinstance(obj, dict):
        raise MalformedFrame("event is not a JSON object")
    unknown = obj.keys() - _WIRE_FIELDS
    if unknown:
        raise MalformedFrame(f"unknown event fields: {_short(sorted(unknown))}")
    get: Any = obj.get  # values of any type: the rules judge them after the MAC
    epoch, seq, mac = get("epoch"), get("seq"), get("mac")
    if type(epoch) is not str or _EPOCH_RE.fullmatch(epoch) is None:
        raise _malformed("epoch", f"expected 16-32 lowercase hex digits, got {_short(epoch)}")
    if type(seq) is not int or not 0 < seq <= MAX_SEQ:
        raise _malformed("seq", f"expected an integer in 1..{MAX_SEQ}, got {_short(seq)}")
    if type(mac) is not str or _MAC_RE.fullmatch(mac) is None:
        raise _malformed("mac", "expected 64 lowercase hex digits")
    for name, value in obj.items():  # one pass: this runs for every event the hub receives
        if type(value) not in _SCALARS and name != "reasons":
            raise _malformed(name, f"a {type(value).__name__} cannot be encoded, got {_short(value)}")
    event = Event(
        epoch=epoch,
        seq=seq,
        kind=get("kind"),
        window=get("window"),
        level=get("level"),
        reasons=_reasons(get("reasons")),
        ref=get("ref"),
        case=get("case"),
        item=get("item"),
        staff=get("staff"),
        trigger=get("trigger"),
        boot=get("boot", ""),
        mono_ms=get("mono_ms", 0),
        wall_ms=get("wall_ms", 0),
        synced=get("synced", False),
        age_ms=get("age_ms"),
        v=get("v"),
    )
    return event, mac


def verify_event(key: bytes, hall: str, device: str, event: Event, mac: str) -> None:
    """Raise :class:`BadMac` unless ``mac`` is this device's MAC of ``event``."""
    expected = hmac.digest(key, canonical_bytes(hall, device, event), "sha256")  # one C call, no HMAC object
    if not hmac.compare_digest(expected.hex(), mac):
        raise BadMac(f"bad MAC on {device} epoch {event.epoch} seq {event.seq}")


#: Key ids are small positive integers, counted per device from 1 (SPEC section 11).
MAX_KID = 2**31 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """An ``ev`` payload: its events with their claimed MACs, and the key id they name (None: the
    device's current key, as frames from before key ids say)."""

    events: list[tuple[Event, str]]
    kid: int | None = None


def parse_frame(payload: bytes) -> Batch:
    """Parse an ``ev`` payload: a batch ``{"v": 1, ["kid": K,] "ev": [...]}`` or one bare event.

    The whole frame is refused if any event in it is misshapen: a terminal never mixes good and
    bad events, so a partly bad frame is corruption or forgery.
    """
    obj = loads_object(payload)
    if "ev" not in obj:
        return Batch([parse_event(obj)])
    if not obj.keys() <= {"v", "kid", "ev"} or obj.get("v") != SCHEMA_VERSION or type(obj.get("v")) is not int:
        raise MalformedFrame('batch frame must be exactly {"v": 1, "kid": K, "ev": [...]} (kid optional)')
    kid = obj.get("kid")
    if kid is not None and (type(kid) is not int or not 0 < kid <= MAX_KID):
        raise _malformed("kid", f"expected a key id in 1..{MAX_KID}, got {_short(kid)}")
    events = obj["ev"]
    if not isinstance(events, list) or not 0 < len(events) <= MAX_BATCH_EVENTS:
        raise MalformedFrame(f"'ev' must be a list of 1..{MAX_BATCH_EVENTS} events")
    return Batch([parse_event(e) for e in events], kid)


def parse_batch(payload: bytes) -> list[tuple[Event, str]]:
    """The (event, claimed MAC) pairs of an ``ev`` payload (see :func:`parse_frame`)."""
    return parse_frame(payload).events


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
        epoch, upto = obj.get("epoch"), obj.get("upto")
        if type(epoch) is not str or _EPOCH_RE.fullmatch(epoch) is None:
            raise _malformed("epoch", f"expected 16-32 lowercase hex digits, got {_short(epoch)}")
        if type(upto) is not int or not 0 <= upto <= MAX_SEQ:
            raise _malformed("upto", f"expected an integer in 0..{MAX_SEQ}, got {_short(upto)}")
        return cls(epoch, upto)


def encode_state(online: bool, **details: Any) -> bytes:
    """A retained ``state`` payload: ``online`` plus whatever the sender reports."""
    return dumps({"online": online, **details})


def _short_str(limit: int) -> Any:
    return lambda v: type(v) is str and len(v) <= limit


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_SEQ


def _panel(value: Any) -> bool:
    return isinstance(value, dict) and type(value.get("ok")) is bool and _short_str(200)(value.get("detail", ""))


def _config(value: Any) -> bool:
    """``{"version": n, "refused": {"version": m, "reason": "..."}}``: the configuration applied
    (0: none from the hub yet) and the last one refused, if any (protocol.state.ConfigReport)."""
    if not isinstance(value, dict) or not _count(value.get("version")):
        return False
    refused = value.get("refused")
    return refused is None or (
        isinstance(refused, dict) and _count(refused.get("version")) and _short_str(200)(refused.get("reason"))
    )


#: What a ``state`` may say, and the check each value passes. Unknown keys are dropped (a newer
#: terminal may say more); a known key with a bad value refuses the whole state.
STATE_FIELDS: dict[str, Any] = {
    "online": lambda v: type(v) is bool,
    "fw": _short_str(32),
    "kind": _short_str(16),
    "mode": _short_str(16),
    "window": _short_str(32),
    "epoch": lambda v: type(v) is str and _EPOCH_RE.fullmatch(v) is not None,
    "last_seq": _count,
    "acked": _count,
    "backlog": _count,
    "boot": _short_str(64),
    "clock": _short_str(16),
    "panel": _panel,
    "kid": lambda v: type(v) is int and 0 < v <= MAX_KID,
    "config": _config,
    "update": valid_update_state,
}


def decode_state(payload: bytes) -> dict[str, Any]:
    """A terminal's retained state, reduced to :data:`STATE_FIELDS` with checked values."""
    return normalise_state(loads_object(payload))


def normalise_state(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` reduced to the known state fields; MalformedFrame if one of them is wrong."""
    if type(obj.get("online")) is not bool:
        raise _malformed("online", "expected true or false")
    state = {}
    for name, value in obj.items():
        check = STATE_FIELDS.get(name)
        if check is None:
            continue
        if not check(value):
            raise _malformed(name, f"not a valid state value: {_short(value)}")
        if name == "panel":
            value = {"ok": value["ok"], "detail": value.get("detail", "")}
        elif name == "config":
            refused = value.get("refused")
            value = {"version": value["version"]} | (
                {} if refused is None else {"refused": {"version": refused["version"], "reason": refused["reason"]}}
            )
        state[name] = value
    return state
