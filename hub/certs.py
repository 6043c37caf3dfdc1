"""The hall's certificate authority (SPEC section 11): made by ``hub init`` (or ``tls init`` for a
hall made before TLS), renewed by ``tls renew``.

Everything lives in ``{home}/tls/``: the CA's key and certificate (10 years), the broker's
certificate (its names: the ``[broker] host`` terminals use, ``[tls] names``, and the loopback
names), one for the hub's HTTPS API, the hub's own client certificate and, when the hall asks for
per-device client certificates (``[tls] client_certificates``), a revocation list. Keys are
ECDSA P-256 (small and quick to check, also for mbedtls on a microcontroller) and only their owner
may read them. Made with the ``cryptography`` package, never by running openssl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import HubConfig
from .errors import HubError
from .secrets import write_private
from .tlsfiles import ANY_ADDRESS, Paths, TlsFilesMissing, paths, require

__all__ = ["ANY_ADDRESS", "Paths", "TlsFilesMissing", "paths", "require"]

CA_DAYS = 3650
#: The names every broker and HTTPS certificate also carries: the hub reaches its own broker, and
#: a technician its API, over loopback.
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")

Key = ec.EllipticCurvePrivateKey
#: A CA signs certificates and revocation lists, nothing else.
CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


# -- making keys and certificates ---------------------------------------------------------------
def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, hall: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"haocha hall {hall}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_ca(hall: str, days: int = CA_DAYS) -> tuple[Key, x509.Certificate]:
    key = new_key()
    name = _name(f"haocha hall {hall} CA", hall)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    """IP addresses as IP entries (TLS clients match an address only against those), the rest as DNS names."""
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(n for n in names if n not in ANY_ADDRESS):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue(
    ca_key: Key,
    ca_cert: x509.Certificate,
    common_name: str,
    days: int,
    names: Iterable[str] = (),
    client: bool = False,
) -> tuple[Key, x509.Certificate]:
    """A key and a certificate signed by the hall CA: a server's (with ``names``) or a client's."""
    key = new_key()
    now = _now()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    hall = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(hall)),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if not client:
        builder = builder.add_extension(san(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_pair(key_path: Path, cert_path: Path, key: Key, cert: x509.Certificate) -> None:
    write_private(key_path, key_pem(key))
    write_private(cert_path, cert_pem(cert))


def load_ca(home: Path) -> tuple[Key, x509.Certificate]:
    p = paths(home)
    if not p.ca_key.exists():
        raise TlsFilesMissing(f"{p.ca_key} is missing: run `haocha tls init --home {home}` first")
    key = serialization.load_pem_private_key(p.ca_key.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise HubError(f"{p.ca_key} is not an ECDSA key made by haocha")
    return key, x509.load_pem_x509_certificate(p.ca_cert.read_bytes())


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- the hall's certificates --------------------------------------------------------------------
def broker_names(config: HubConfig) -> list[str]:
    """What terminals may call the broker: ``[broker] host``, ``[tls] names``, loopback, and this
    machine's host name when the broker listens on every interface."""
    extra = [socket.gethostname()] if config.broker.host in ANY_ADDRESS else []
    return [config.broker.host, *config.tls.names, *extra, *LOOPBACK_NAMES]


def http_names(config: HubConfig) -> list[str]:
    extra = [socket.gethostname()] if config.http.host in ANY_ADDRESS else []
    return [config.http.host, *config.tls.names, *extra, *LOOPBACK_NAMES]


def init_hall(home: Path, config: HubConfig) -> Paths:
    """Make the hall CA and every certificate the hub side needs; refuses to replace a CA (every
    terminal trusts it)."""
    p = paths(home)
    if p.ca_key.exists() or p.ca_cert.exists():
        raise HubError(f"{p.ca_cert} exists already: the hall has its CA (`haocha tls renew` renews certificates)")
    ca_key, ca_cert = make_ca(config.hall)
    write_private(p.ca_key, key_pem(ca_key))
    p.ca_cert.write_bytes(cert_pem(ca_cert))  # public: what terminals and browsers trust
    renew_hub_side(home, config)
    return p


def renew_hub_side(home: Path, config: HubConfig, days: int | None = None) -> list[Path]:
    """Issue the broker's, the HTTPS API's and the hub's client certificates again (current names,
    ``days`` or ``[tls] cert_days`` of validity) and, with client certificates, the revocation list.
    Returns the certificates written."""
    ca_key, ca_cert = load_ca(home)
    p = paths(home)
    days = days or config.tls.cert_days
    made = {
        "broker": issue(ca_key, ca_cert, f"{config.hall} broker", days, broker_names(config)),
        "http": issue(ca_key, ca_cert, f"{config.hall} hub API", days, http_names(config)),
        "hub": issue(ca_key, ca_cert, config.broker.user, days, client=True),
    }
    for name, (key, cert) in made.items():
        _write_pair(p.key(name), p.cert(name), key, cert)
    if config.tls.client_certificates or p.crl.exists():
        write_crl(home, revoked_serials(home))
    return [p.cert(name) for name in made]


def issue_client(home: Path, config: HubConfig, device: str, days: int | None = None) -> tuple[bytes, bytes]:
    """A device's client key and certificate (PEM), its broker user name as common name."""
    ca_key, ca_cert = load_ca(home)
    key, cert = issue(ca_key, ca_cert, device, days or config.tls.cert_days, client=True)
    return key_pem(key), cert_pem(cert)


# -- revocation (client certificates) -----------------------------------------------------------
def revoked_serials(home: Path) -> list[int]:
    p = paths(home)
    if not p.crl.exists():
        return []
    return [entry.serial_number for entry in x509.load_pem_x509_crl(p.crl.read_bytes())]


def write_crl(home: Path, serials: Iterable[int]) -> Path:
    """The revocation list Mosquitto checks client certificates against; valid as long as the CA
    (an expired list would lock every terminal out)."""
    ca_key, ca_cert = load_ca(home)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(ca_cert.not_valid_after_utc)
    )
    for serial in dict.fromkeys(serials):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    path = paths(home).crl
    write_private(path, crl.public_bytes(serialization.Encoding.PEM))
    return path


def revoke(home: Path, cert_path: Path) -> bool:
    """Put the certificate at ``cert_path`` on the revocation list; False when there is none."""
    if not cert_path.exists() or not paths(home).ca_key.exists():
        return False
    write_crl(home, [*revoked_serials(home), load_cert(cert_path).serial_number])
    return True


def expires(path: Path) -> dt.datetime:
    return load_cert(path).not_valid_after_utc


#: ``broker run`` warns when the broker's certificate has less than this left.
RENEW_WARNING = dt.timedelta(days=30)


def warn_if_expiring(home: Path, log: logging.Logger) -> None:
    """One warning when the broker's certificate expires soon (terminals would then refuse it)."""
    until = expires(paths(home).cert("broker"))
    if until - _now() < RENEW_WARNING:
        log.warning(
            "the broker's certificate expires on %s: run `haocha tls renew --home %s`", f"{until:%Y-%m-%d}", home
        )


def names_of(cert: x509.Certificate) -> list[str]:
    """The host names and addresses a server certificate is valid for (none for a client's)."""
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in (*alt.get_values_for_type(x509.DNSName), *alt.get_values_for_type(x509.IPAddress))]
