"""Where the hall's TLS files are and how the hub's processes use them, without the ``cryptography``
package (:mod:`hub.certs` makes the files): the hub daemon loads only this."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from protocol.transport import client_tls

from .config import HubConfig
from .errors import HubError

_LOG = logging.getLogger(__name__)
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


@dataclass
class RenewalWatch:
    """Loads renewed certificates into live TLS contexts (``tls renew`` while the hub runs): the
    HTTPS API's and the hub's own client certificate. Each new handshake uses the new files; the
    connections already open keep theirs. A half-written pair (renew caught mid-way) is retried at
    the next check, and the context keeps serving the old one meanwhile."""

    _watched: list[tuple[ssl.SSLContext, Path, Path]] = field(default_factory=list)
    _stamps: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def watch(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self._watched.append((context, cert, key))
        self._stamps[cert] = _stamp(cert, key)

    def check(self) -> None:
        for context, cert, key in self._watched:
            stamp = _stamp(cert, key)
            if stamp == self._stamps[cert]:
                continue
            try:
                # A pair caught between its two writes must not reach the live context, which
                # would then hold the new certificate with the old key: try it on a scratch one.
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                _LOG.warning("renewed certificate %s not loaded yet: %s", cert, exc)
                continue
            self._stamps[cert] = stamp
            _LOG.info("renewed certificate %s loaded", cert)


def _stamp(cert: Path, key: Path) -> tuple[int, int]:
    try:
        return cert.stat().st_mtime_ns, key.stat().st_mtime_ns
    except OSError:
        return 0, 0
