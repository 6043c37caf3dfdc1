"""Ed25519 signature verification (RFC 8032, section 5.1.7), in pure Python.

The terminal checks a release's signature with the hall's public release key before it installs
anything (SPEC section 13). The ``cryptography`` package would do it, but PyPI has no wheel of it
for 32-bit Raspberry Pi OS (armv7l), and a terminal never builds Rust code: this is the RFC's
reference arithmetic, verification only (no secret is handled, so constant time does not matter).
It takes a few milliseconds; tests/test_updates.py checks it against ``cryptography``.
"""

from __future__ import annotations

import hashlib

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

#: A point in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
Point = tuple[int, int, int, int]


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)  # the neutral element
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(data: bytes) -> Point | None:
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return x, y, 1, x * y % _P


_G_Y = 4 * pow(5, _P - 2, _P) % _P
_G = _decompress(_G_Y.to_bytes(32, "little"))
assert _G is not None


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Is ``signature`` (64 bytes) ``message`` signed with the key whose public half is
    ``public_key`` (32 bytes)? Never raises for malformed input: it is just not valid."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    digest = hashlib.sha512(signature[:32] + public_key + message).digest()
    h = int.from_bytes(digest, "little") % _L
    assert _G is not None
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))
