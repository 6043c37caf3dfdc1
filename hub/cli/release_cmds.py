"""``haocha release``: signed releases and their staged rollout (SPEC section 13, hub/releases.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from protocol.updates import ReleaseKind

from .. import release_key, releases
from .common import format_option, home_option, home_path, open_hub, print_records


@click.group("release")
def release_group() -> None:
    """Signed releases of the terminal and the firmware, rolled out in stages."""


@release_group.command("key")
@home_option
def release_key_cmd(home: Path | None) -> None:
    """Print the hall's public release key (made on first use); `device add` puts it in each
    device's folder as release.pub. For folders made before: save it there as release.pub."""
    click.echo(release_key.public_hex(home_path(home)))


@release_group.command("build")
@home_option
@click.option(
    "--kind",
    type=click.Choice([k.value for k in ReleaseKind]),
    default=ReleaseKind.TERMINAL.value,
    show_default=True,
    help="terminal: the haocha wheel (CPython terminals); micro: the MicroPython firmware's modules.",
)
@click.option("--release", default=None, help="The release's name (terminal: its wheel's version, the default).")
@click.option(
    "--wheel", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None, help="A haocha wheel."
)
@click.option(
    "--source",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The haocha source tree (default: the one this hub runs from).",
)
def release_build(home: Path | None, kind: str, release: str | None, wheel: Path | None, source: Path | None) -> None:
    """Make HOME/releases/RELEASE/: the files, manifest.json and (terminal) its ed25519 signature.
    `hub run` serves it at /fleet/releases/RELEASE/."""
    folder = home_path(home)
    with open_hub(home)[1] as store:
        manifest = releases.build(store, folder, ReleaseKind(kind), release, wheel, source or releases.SOURCE)
    click.echo(manifest.release)
    click.echo(f"{len(manifest.files)} files in {releases.release_dir(folder, manifest.release)}", err=True)


@release_group.command("rollout")
@click.argument("release")
@home_option
@click.option("--device", "devices", multiple=True, help="A device (repeat for more).")
@click.option("--window", default=None, help="Every device at this window.")
@click.option("--share", type=float, default=None, help="This percent of the hall's devices (the same ones each time).")
@click.option("--all", "everyone", is_flag=True, help="Every device of the release's kind.")
@click.option("--force", is_flag=True, help="Widen a rollout that a rollback paused.")
@click.option("--url", default=None, help="The hub's address as terminals reach it (default: from hub.toml).")
def release_rollout(
    release: str, home: Path | None, devices: tuple[str, ...], window: str | None, share: float | None,
    everyone: bool, force: bool, url: str | None,
) -> None:  # fmt: skip
    """Announce RELEASE to more devices: each call widens the set. A device that is away gets it
    when it is back. A rollback anywhere pauses the rollout until --force."""
    chosen = sum((bool(devices), window is not None, share is not None, everyone))
    if chosen != 1:
        raise click.UsageError("name exactly one of --device, --window, --share, --all")
    scope = releases.Scope(devices, window, share, everyone)
    cfg, store_cm = open_hub(home)
    with store_cm as store:
        fresh = releases.rollout(store, cfg, release, scope, force, url)
    click.echo(f"{release} announced to {len(fresh)} more device(s): {', '.join(fresh) or 'none'}", err=True)


@release_group.command("status")
@click.argument("release", required=False)
@home_option
@format_option
def release_status(release: str | None, home: Path | None, fmt: str) -> None:
    """Per device: the release, its phase (announced, downloading, verified, switched, confirmed,
    rolled_back, failed), why, when, and the version it runs; on stderr, a rollout a rollback paused."""
    cfg, store_cm = open_hub(home)
    with store_cm as store:
        rows = releases.status(store, release)
        paused = {r["release"]: r["paused"] for r in releases.list_releases(store) if r["paused"]}
    tz = ZoneInfo(cfg.timezone)
    for row in rows:
        row["at"] = _local(row.pop("at_ms"), tz)
    print_records(rows, fmt)
    for name, why in paused.items():
        if release in (None, name):
            click.echo(f"rollout of {name} paused: {why}", err=True)


@release_group.command("list")
@home_option
@format_option
def release_list(home: Path | None, fmt: str) -> None:
    """Releases with their kind, files, devices announced, confirmed, rolled back, failed, and
    why a rollout is paused."""
    cfg, store_cm = open_hub(home)
    with store_cm as store:
        rows = releases.list_releases(store)
    tz = ZoneInfo(cfg.timezone)
    for row in rows:
        row["created"] = _local(row.pop("created_ms"), tz)
    print_records(rows, fmt)


def _local(ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ms is None else f"{dt.datetime.fromtimestamp(ms / 1000, tz):%Y-%m-%d %H:%M:%S}"
