"""``haocha fleet``: what terminals install from the hub (docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import fleet
from .common import home_option, home_path


@click.group("fleet")
def fleet_group() -> None:
    """Terminals installed and updated from the hub."""


@fleet_group.command("wheelhouse")
@home_option
@click.option(
    "--arch",
    type=click.Choice([*fleet.PLATFORMS, "native"]),
    default="aarch64",
    show_default=True,
    help="The terminals' CPU: aarch64 (64-bit Raspberry Pi OS), armv7l (32-bit), native (this machine's).",
)
@click.option("--python", "python", default="3.11", show_default=True, help="The terminals' Python, major.minor.")
@click.option(
    "--extra-index",
    default=None,
    help="A second package index, e.g. https://www.piwheels.org/simple for armv7l (PyPI lacks some of its wheels).",
)
@click.option(
    "--source",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The haocha source tree (default: the one this hub runs from).",
)
def fleet_wheelhouse(home: Path | None, arch: str, python: str, extra_index: str | None, source: Path | None) -> None:
    """Make HOME/wheelhouse/ (needs PyPI once): the haocha wheel and every wheel haocha[pi] needs,
    the install script and the terminal's unit. `hub run` serves it at /fleet/."""
    folder = home_path(home)
    wheels = fleet.build_wheelhouse(folder, fleet.Target(arch, python, extra_index), source or fleet.SOURCE)
    click.echo(f"{len(wheels)} wheels in {fleet.wheelhouse_dir(folder)} ({arch}, Python {python})", err=True)
    script = f"http://HUB:PORT/fleet/{fleet.SCRIPT_NAME}"
    click.echo(f"on each Pi: curl -fsS {script} | sudo sh -s -- DEVICE-FOLDER", err=True)
