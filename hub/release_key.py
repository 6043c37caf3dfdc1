"""The hall's release key (SPEC section 13): an ed25519 key that signs every release of the CPython
terminal. Made on first use and kept with the hub's secrets (``{home}/release.key``, 0600); its
public half goes into every device's folder as ``release.pub`` (64 hex digits), which the install
script copies beside the terminal's terminal.toml."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .secrets import write_private

KEY_FILE = "release.key"
PUB_NAME = "release.pub"


def _private(home: Path) -> Ed25519PrivateKey:
    path = home / KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 key")
    return loaded


def public_hex(home: Path) -> str:
    """The public half, 64 lowercase hex digits (made with the key on first use)."""
    raw = _private(home).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign(home: Path, data: bytes) -> str:
    """``data`` signed with the hall's release key: 128 lowercase hex digits."""
    return _private(home).sign(data).hex()


def write_public(home: Path, folder: Path) -> None:
    """``release.pub`` into a device's folder (not secret, but kept like the folder's other files)."""
    write_private(folder / PUB_NAME, (public_hex(home) + "\n").encode())
