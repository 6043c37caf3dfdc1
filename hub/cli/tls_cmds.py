"""``haocha tls``: the hall CA and its certificates (SPEC section 11; docs/tls.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from .. import certs, provision
from .. import config as hub_config
from ..store import registry as reg
from .common import board_files, format_option, home_option, home_path, open_hub, print_records


@click.group("tls")
def tls_group() -> None:
    """The hall CA and its certificates: MQTT over TLS, HTTPS, client certificates."""


def _live_devices(home: Path) -> list[str]:
    with open_hub(home)[1] as store:
        return sorted(d.id for d in reg.all_devices(store).values() if not d.revoked)


@tls_group.command("init")
@home_option
def tls_init(home: Path | None) -> None:
    """Make the CA and certificates of a hall made before TLS; puts ca.crt in every device folder."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    certs.init_hall(folder, cfg)
    devices = _live_devices(folder)
    for device in devices:
        provision.refresh_tls(cfg, folder, device, new_client_cert=True, board_files=board_files())
    click.echo(f"made the hall CA {certs.paths(folder).ca_cert} and the broker's certificate", err=True)
    if devices:
        click.echo(
            f"copy each devices/DEV/ folder onto its terminal again ({', '.join(devices)}): ca.crt is new", err=True
        )


@tls_group.command("renew")
@home_option
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Validity of the new certificates (default: [tls] cert_days).",
)
def tls_renew(home: Path | None, days: int | None) -> None:
    """Issue the broker's, the API's and the hub's certificates again (with the current names), and
    the terminals' client certificates when the hall requires them. The CA stays: terminals keep
    their ca.crt. A running broker reloads its certificate within a second."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    renewed = certs.renew_hub_side(folder, cfg, days)
    for path in renewed:
        click.echo(f"renewed {path} (valid until {certs.expires(path):%Y-%m-%d})", err=True)
    if cfg.tls.client_certificates:
        devices = _live_devices(folder)
        for device in devices:
            provision.refresh_tls(cfg, folder, device, new_client_cert=True, days=days, board_files=board_files())
        if devices:
            click.echo(
                f"renewed the client certificates of {', '.join(devices)}: copy client.crt and client.key "
                "(board: client.der, client-key.der) of each devices/DEV/ folder onto its terminal",
                err=True,
            )


@tls_group.command("status")
@home_option
@format_option
def tls_status(home: Path | None, fmt: str) -> None:
    """The hall's certificates with their names and expiry dates."""
    folder = home_path(home)
    p = certs.require(folder)
    files = [("ca", p.ca_cert)] + [(name, p.cert(name)) for name in ("broker", "http", "hub")]
    files += [
        (f"device {d}", provision.device_dir(folder, d) / provision.CLIENT_CERT_NAME) for d in _live_devices(folder)
    ]
    print_records([_row(name, path) for name, path in files if path.exists()], fmt)


def _row(name: str, path: Path) -> dict[str, Any]:
    cert = certs.load_cert(path)
    expires = cert.not_valid_after_utc
    return {
        "certificate": name,
        "file": str(path),
        "names": ",".join(certs.names_of(cert)),
        "expires": f"{expires:%Y-%m-%d}",
        "days_left": (expires - dt.datetime.now(dt.UTC)).days,
    }
