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


# -- field rules: protocol/rules.py in the MicroPython subset -------------------------------------
# Tested against the same protocol/vectors/rules.json. No ``re`` (MicroPython's has no Unicode
# classes): a loop over UTF-8 bytes. Compact on purpose: code and every new name (qstr) stay on the
# 64 KB heap.

LEVELS = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")


def valid(v, n=64):
    """n = 64: a case number, item code, staff id or boot id, 1-64 characters without control
    characters, line separators or lone surrogates. n = 32: a window, reason, hall or device id,
    1-32 of [A-Za-z0-9_-].

    Checked on the UTF-8 bytes: iterating a str would intern every character as a qstr, forever."""
    if not isinstance(v, str) or not 0 < len(v) <= n:
        return False
    p = q = 0  # the two bytes before b
    for b in v.encode():
        if (b < 32 or b == 127 or p == 0xC2 and b < 0xA0  # C0 and C1 controls (U+0080-9F: C2 80-9F)
                or q == 0xE2 and p == 0x80 and (b == 0xA8 or b == 0xA9)  # U+2028, U+2029
                or p == 0xED and b > 0x9F  # a surrogate, U+D800-DFFF: ED A0-BF xx
                or n == 32 and not (47 < b < 58 or 64 < b < 91 or 96 < b < 123 or b == 45 or b == 95)):
            return False
        p, q = b, p
    return True


def _int(v, lo, hi=2 ** 63 - 1):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def wall_ok(v):
    """A synchronised wall clock lies in [2000, 2100) (WALL_MIN_MS, WALL_MAX_MS of the rules)."""
    return _int(v, 946684800000, 4102444799999)


def event_problem(e):
    """The first field of event dict ``e`` that breaks a rule of protocol/rules.py (``kind`` also
    for the fields a kind needs), or None."""
    g = e.get
    k, t, c, rs, ref = g("kind"), g("trigger"), g("case"), g("reasons"), g("ref")
    s, w = g("synced", False), g("wall_ms", 0)
    if not _int(g("v"), 1, 1):
        return "v"
    if k not in ("rating", "reason", "staff", "ignored"):
        return "kind"
    if g("level") not in LEVELS and g("level") is not None:
        return "level"
    if t not in (None, "invite", "staff", "free"):
        return "trigger"
    for n in ("case", "item", "staff", "boot", "window"):
        if (g(n) is not None or n == "boot") and not valid(g(n), 32 if n == "window" else 64):
            return n
    if rs is not None and not (isinstance(rs, list) and 0 < len(rs) <= 8 and all(valid(r, 32) for r in rs)):
        return "reasons"
    if ref is not None and not _int(ref, 1, g("seq", 0) - 1):
        return "ref"
    if not _int(g("mono_ms", 0), 0):
        return "mono_ms"
    if not isinstance(s, bool):
        return "synced"
    if not (wall_ok(w) if s else _int(w, 0)):
        return "wall_ms"
    if g("age_ms") is not None and not _int(g("age_ms"), 0, 316224000000):  # ten years
        return "age_ms"
    if (k in ("rating", "ignored") and g("level") is None or k == "rating" and (t is None or (t == "free") != (c is None))
            or k == "reason" and (rs is None or ref is None) or k == "staff" and c is None):
        return "kind"
    return None


def row_problem(body, seq):
    """Why journal row ``body`` would break a rule once sent as event ``seq``, or None."""
    body["v"], body["seq"] = 1, seq
    e = event_problem(body)
    del body["v"], body["seq"]
    return e


def config_problem(cfg):
    """The first key of ``config.json`` whose value rows would carry and that breaks a rule, or None."""
    g = cfg.get
    for n in ("device", "window", "staff", "item"):
        if (g(n) is not None or n in ("device", "window")) and not valid(g(n), 64 if n in ("staff", "item") else 32):
            return n
    reasons = g("reasons", [])
    if not isinstance(reasons, list) or not all(valid(r, 32) for r in reasons):
        return "reasons"
    if not all(k in LEVELS for k in g("pins", {}).get("keys", ())):
        return "pins"
    return None
