"""Wire encoding for the firmware (MicroPython subset): canonical MAC bytes, HMAC-SHA256, batch JSON.

Byte for byte the same as ``protocol/frames.py`` (checked against ``protocol/vectors/events.json``).
MicroPython dicts keep no key order and its ``json`` has no ``sort_keys``, so the canonical bytes
and the batch JSON are written field by field in :data:`FIELDS` order. The canonical bytes are
streamed straight into the hash: no copy of them is kept on the heap.
"""

import hashlib

MAGIC = b"haocha-ev/1\n"
#: Canonical (MAC) field order, as ``protocol.frames.EVENT_FIELDS``.
FIELDS = ("v", "epoch", "seq", "kind", "level", "reasons", "ref", "case", "item", "staff", "window",
          "trigger", "boot", "mono_ms", "wall_ms", "synced", "age_ms")
SCHEMA_VERSION = 1
_HEX = b"0123456789abcdef"


def _put_value(sink, value):
    if value is None:
        sink.update(b"-")
    elif value is True:
        sink.update(b"T")
    elif value is False:
        sink.update(b"F")
    elif isinstance(value, int):
        sink.update(b"i")
        sink.update(str(value).encode())
    elif isinstance(value, str):
        raw = value.encode()
        sink.update(b"s")
        sink.update(str(len(raw)).encode())
        sink.update(b":")
        sink.update(raw)
    elif isinstance(value, (list, tuple)):
        sink.update(b"l")
        sink.update(str(len(value)).encode())
        sink.update(b":")
        for item in value:
            _put_value(sink, item)
    else:
        raise TypeError("cannot encode canonically")


def put_canonical(sink, hall, device, ev):
    """Feed the canonical bytes of event dict ``ev`` to ``sink.update`` (missing keys are null)."""
    sink.update(MAGIC)
    sink.update(b"hall=")
    _put_value(sink, hall)
    sink.update(b"\ndevice=")
    _put_value(sink, device)
    sink.update(b"\n")
    for name in FIELDS:
        sink.update(name.encode())
        sink.update(b"=")
        _put_value(sink, ev.get(name))
        sink.update(b"\n")


class _Collect:
    def __init__(self):
        self.buf = bytearray()

    def update(self, data):
        self.buf.extend(data)


def canonical_bytes(hall, device, ev):
    """The canonical bytes as one object (tests and tools; the MAC path streams them)."""
    c = _Collect()
    put_canonical(c, hall, device, ev)
    return bytes(c.buf)


class Mac:
    """HMAC-SHA256 (RFC 2104) over ``hashlib.sha256``: MicroPython has no ``hmac`` module."""

    def __init__(self, key):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key + bytes(64 - len(key))
        self._ipad = bytes(b ^ 0x36 for b in key)
        self._opad = bytes(b ^ 0x5C for b in key)

    def digest(self, hall, device, ev):
        inner = hashlib.sha256(self._ipad)
        put_canonical(inner, hall, device, ev)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, hall, device, ev):
        return hexlify(self.digest(hall, device, ev))


def hexlify(raw):
    out = bytearray(2 * len(raw))
    for i, b in enumerate(raw):
        out[2 * i] = _HEX[b >> 4]
        out[2 * i + 1] = _HEX[b & 15]
    return out.decode()


def _put_json_str(out, text):
    """Append ``text`` as a JSON string the way CPython ``json.dumps(ensure_ascii=False)`` does."""
    out.extend(b'"')
    raw = text.encode()
    plain = True
    for b in raw:
        if b < 0x20 or b == 0x22 or b == 0x5C:
            plain = False
            break
    if plain:
        out.extend(raw)
    else:
        for ch in text:
            c = ord(ch)
            if ch == '"':
                out.extend(b'\\"')
            elif ch == "\\":
                out.extend(b"\\\\")
            elif ch == "\n":
                out.extend(b"\\n")
            elif ch == "\r":
                out.extend(b"\\r")
            elif ch == "\t":
                out.extend(b"\\t")
            elif ch == "\b":
                out.extend(b"\\b")
            elif ch == "\f":
                out.extend(b"\\f")
            elif c < 0x20:
                out.extend(b"\\u00")
                out.append(_HEX[c >> 4])
                out.append(_HEX[c & 15])
            else:
                out.extend(ch.encode())
    out.extend(b'"')


def _put_json_value(out, value):
    if value is True:
        out.extend(b"true")
    elif value is False:
        out.extend(b"false")
    elif isinstance(value, int):
        out.extend(str(value).encode())
    elif isinstance(value, str):
        _put_json_str(out, value)
    else:  # a list of strings (reasons)
        out.extend(b"[")
        first = True
        for item in value:
            if not first:
                out.extend(b",")
            first = False
            _put_json_value(out, item)
        out.extend(b"]")


def put_wire_event(out, mac, hall, device, ev):
    """Append one wire event (fields in canonical order, nulls left out, then ``mac``)."""
    out.extend(b"{")
    for name in FIELDS:
        value = ev.get(name)
        if value is None:
            continue
        out.extend(b'"')
        out.extend(name.encode())
        out.extend(b'":')
        _put_json_value(out, value)
        out.extend(b",")
    out.extend(b'"mac":"')
    out.extend(mac.hexdigest(hall, device, ev).encode())
    out.extend(b'"}')


def encode_batch(mac, hall, device, events, out=None):
    """An ``ev`` payload ``{"v":1,"ev":[...]}`` from event dicts, into bytearray ``out``."""
    if out is None:
        out = bytearray()
    out.extend(b'{"v":1,"ev":[')
    first = True
    for ev in events:
        if not first:
            out.extend(b",")
        first = False
        put_wire_event(out, mac, hall, device, ev)
    out.extend(b"]}")
    return out


def json_str(text):
    """``text`` as a JSON string literal (str)."""
    out = bytearray()
    _put_json_str(out, text)
    return out.decode()
