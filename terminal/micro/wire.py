"""Wire encoding for the firmware: canonical MAC bytes, HMAC-SHA256 and the batch JSON.

Byte for byte the same as ``protocol/frames.py`` (tested against ``protocol/vectors/events.json``).
MicroPython dicts keep no key order and its ``json`` has no ``sort_keys``, so the canonical bytes
and the batch JSON are written field by field in :data:`FIELDS` order. The canonical bytes are
streamed into the hash (``put_canonical`` takes any ``update`` function): no copy on the heap.
Strings go through ``json.dumps``, which escapes as CPython's ``ensure_ascii=False`` does.
"""

import hashlib
from binascii import hexlify
from json import dumps

#: Canonical (MAC) field order, as ``protocol.frames.EVENT_FIELDS``.
FIELDS = ("v", "epoch", "seq", "kind", "level", "reasons", "ref", "case", "item", "staff", "window",
          "trigger", "boot", "mono_ms", "wall_ms", "synced", "age_ms")


def _val(u, v):
    if v is None:
        u(b"-")
    elif v is True:
        u(b"T")
    elif v is False:
        u(b"F")
    elif isinstance(v, int):
        u(b"i%d" % v)
    elif isinstance(v, str):
        r = v.encode()
        u(b"s%d:" % len(r))
        u(r)
    else:
        u(b"l%d:" % len(v))
        for x in v:
            _val(u, x)


def put_canonical(u, hall, device, ev):
    """Feed the canonical bytes of event dict ``ev`` (missing keys: null) to function ``u``."""
    u(b"haocha-ev/1\nhall=")
    _val(u, hall)
    u(b"\ndevice=")
    _val(u, device)
    u(b"\n")
    for n in FIELDS:
        u(n.encode())
        u(b"=")
        _val(u, ev.get(n))
        u(b"\n")


class Mac:
    """HMAC-SHA256 (RFC 2104) over ``hashlib.sha256``: MicroPython has no ``hmac`` module."""

    def __init__(self, key):
        key = key + bytes(64 - len(key))  # keys are 32 bytes
        self.ipad = bytes(b ^ 0x36 for b in key)
        self.opad = bytes(b ^ 0x5C for b in key)

    def hex(self, hall, device, ev):
        inner = hashlib.sha256(self.ipad)
        put_canonical(inner.update, hall, device, ev)
        outer = hashlib.sha256(self.opad)
        outer.update(inner.digest())
        return hexlify(outer.digest())


def _json(out, v):
    if v is True:
        out.extend(b"true")
    elif v is False:
        out.extend(b"false")
    elif isinstance(v, int):
        out.extend(b"%d" % v)
    else:  # a string, or the list of reason ids
        out.extend(dumps(v).encode() if isinstance(v, str) else dumps(v).replace(", ", ",").encode())


def put_event(out, mac, hall, device, ev):
    """Append one wire event to bytearray ``out``: fields in canonical order, nulls left out,
    then ``mac``."""
    out.extend(b"{")
    for n in FIELDS:
        v = ev.get(n)
        if v is not None:
            out.extend(b'"%s":' % n)
            _json(out, v)
            out.extend(b",")
    out.extend(b'"mac":"')
    out.extend(mac.hex(hall, device, ev))
    out.extend(b'"}')


def encode_batch(mac, hall, device, events, out):
    """An ``ev`` payload ``{"v":1,"ev":[...]}`` from event dicts, appended to bytearray ``out``."""
    out.extend(b'{"v":1,"ev":[')
    for i, ev in enumerate(events):
        if i:
            out.extend(b",")
        put_event(out, mac, hall, device, ev)
    out.extend(b"]}")
    return out
