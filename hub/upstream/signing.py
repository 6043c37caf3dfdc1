"""Request signing for the regional system.

Schemes differ by province: HMAC-SHA256 over timestamp, nonce and body is built in; a scheme such
as SM2 plugs in as another :class:`Signer` registered in :data:`SIGNERS` (it needs a provincial
key pair and a GM/T library, so it is not shipped).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from ..errors import UpstreamError


class Signer(Protocol):
    def headers(self, body: bytes) -> dict[str, str]:
        """Headers that authenticate ``body``."""
        ...


def hmac_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What HMAC-SHA256 signs: ``timestamp \\n nonce \\n body``."""
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body


class HmacSigner:
    def __init__(self, app_id: str, secret: str) -> None:
        if not secret:
            raise UpstreamError("[upstream] signing = 'hmac-sha256' needs a secret")
        self.app_id = app_id
        self.secret = secret.encode()

    def headers(self, body: bytes) -> dict[str, str]:
        ts, nonce = str(int(time.time() * 1000)), secrets.token_hex(8)
        mac = hmac.new(self.secret, hmac_message(ts, nonce, body), hashlib.sha256).hexdigest()
        return {"X-App-Id": self.app_id, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": mac}


class NoSigner:
    def __init__(self, app_id: str, secret: str) -> None:
        self.app_id = app_id

    def headers(self, body: bytes) -> dict[str, str]:
        return {"X-App-Id": self.app_id} if self.app_id else {}


SIGNERS: dict[str, Callable[[str, str], Signer]] = {"hmac-sha256": HmacSigner, "none": NoSigner}


def verify_hmac(secret: str, timestamp: str, nonce: str, body: bytes, signature: str) -> bool:
    expected = hmac.new(secret.encode(), hmac_message(timestamp, nonce, body), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def make_signer(scheme: str, app_id: str, secret: str) -> Signer:
    try:
        factory = SIGNERS[scheme]
    except KeyError:
        raise UpstreamError(f"unknown signing scheme {scheme!r}; known: {', '.join(SIGNERS)}") from None
    return factory(app_id, secret)
