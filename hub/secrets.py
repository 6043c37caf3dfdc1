"""Secrets made by provisioning: broker passwords (with Mosquitto's own hash format), MAC keys,
and files that only their owner may read."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

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


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` atomically into a file with ``mode`` (by default: readable by its owner only).
    The temporary file has a name of its own, so two processes may write the same file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")  # mode 0600
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # a full disk must not leave a temporary file a second
        raise
