"""Secrets made by provisioning: broker passwords (with Mosquitto's own hash format), MAC keys,
and files that only their owner may read."""

from __future__ import annotations

import base64
import hashlib
import secrets

from protocol.files import write_private

__all__ = ["mosquitto_hash", "new_mac_key", "new_password", "write_private"]

#: Mosquitto 2.x password hash: PBKDF2-SHA512, 101 iterations, 12-byte salt (``$7$``), the
#: format ``mosquitto_passwd`` writes.
_PBKDF2_ITERATIONS = 101


def new_password() -> str:
    return secrets.token_urlsafe(24)


def new_mac_key() -> str:
    return secrets.token_hex(32)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return f"$7${_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
