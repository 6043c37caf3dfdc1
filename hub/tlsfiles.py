"""Where the hall's TLS files are and how the hub's processes use them, without the ``cryptography``
package (:mod:`hub.certs` makes the files): the hub daemon loads only this."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from protocol.transport import client_tls

from .config import HubConfig
from .errors import HubError

TLS_DIR = "tls"
#: Addresses that mean "every interface": no client connects to them by that name.
ANY_ADDRESS = ("0.0.0.0", "::", "")


class TlsFilesMissing(HubError, FileNotFoundError):
    """A hall made before TLS: its CA and certificates are not there yet."""


def tls_dir(home: Path) -> Path:
    return home / TLS_DIR


@dataclass(frozen=True)
class Paths:
    """The files of ``{home}/tls/``."""

    folder: Path

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    def cert(self, name: str) -> Path:
        """``broker``, ``http`` or ``hub`` (the hub's client certificate)."""
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    @property
    def crl(self) -> Path:
        return self.folder / "crl.pem"


def paths(home: Path) -> Paths:
    return Paths(tls_dir(home))


def require(home: Path) -> Paths:
    """The hall's TLS files; TlsFilesMissing (one line saying what to run) when the hall was made
    before TLS."""
    p = paths(home)
    missing = [f for f in (p.ca_cert, p.cert("broker"), p.key("broker")) if not f.exists()]
    if missing:
        raise TlsFilesMissing(
            f"{missing[0]} is missing: this hall was made before MQTT over TLS; "
            f"run `haocha tls init --home {home}` once, then copy each devices/DEV/ folder to its terminal again"
        )
    return p


def mqtt_context(home: Path, config: HubConfig) -> ssl.SSLContext:
    """The hub's TLS context for its broker: the hall CA, and its client certificate when the hall
    requires them."""
    p = require(home)
    if config.tls.client_certificates:
        return client_tls(p.ca_cert, p.cert("hub"), p.key("hub"))
    return client_tls(p.ca_cert)


def local_host(host: str) -> str:
    """How a client on the hub's machine reaches a server listening at ``host``."""
    return "127.0.0.1" if host in ANY_ADDRESS else host
