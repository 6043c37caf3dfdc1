"""Hub-side commands: hub, window, item, device, broker, stats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from .. import config as hub_config
from .. import provision, releases, stats, tlsfiles
from ..broker import BrokerRunner
from ..daemon import HubDaemon
from ..errors import AlreadyExists
from ..lock import HomeLock
from ..pages.terminals import terminals
from ..store import Store, now_ms
from ..store import registry as reg
from .common import (
    board_files,
    format_option,
    home_option,
    home_path,
    open_hub,
    own_process_group,
    print_records,
    setup_logging,
    stop_on_signals,
)


@click.group("hub")
def hub_group() -> None:
    """Create, inspect and run the hall hub."""


@hub_group.command("init")
@home_option
@click.option("--hall", required=True, help="Hall id (1-32 of A-Z a-z 0-9 _ -).")
@click.option("--broker", default="127.0.0.1:1883", show_default=True, help="Broker address HOST:PORT.")
@click.option("--http", default="127.0.0.1:8080", show_default=True, help="Where the hub serves its HTTP API.")
@click.option("--upstream", default="", help="Base URL of the regional 好差评 system.")
def hub_init(home: Path | None, hall: str, broker: str, http: str, upstream: str) -> None:
    """Create hub.toml (with fresh secrets), hub.db and the hall CA with its certificates (tls/) in --home."""
    folder = home_path(home)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (hub_config.CONFIG_NAME, hub_config.DB_NAME):
        if (folder / name).exists():
            raise AlreadyExists(f"{folder / name} exists already; hub init never overwrites a hall")
    from .. import certs  # the cryptography package: loaded by the commands that make certificates only

    cfg = hub_config.write_new(folder, hall, broker, http, upstream)
    Store(folder / hub_config.DB_NAME, create=True).close()
    certs.init_hall(folder, cfg)
    click.echo(f"hall {hall} created in {folder} (terminals trust its CA: {tlsfiles.paths(folder).ca_cert})", err=True)


@hub_group.command("token")
@click.option("--rotate", is_flag=True, help="make a new token (the old one stops at once) and print it")
@home_option
def hub_token(rotate: bool, home: Path | None) -> None:
    """Print the bearer token of the hub's HTTP API."""
    folder = home_path(home)
    if not rotate:
        click.echo(hub_config.load(folder).http.token)
        return
    token = hub_config.rotate_token(folder)
    with open_hub(folder)[1] as store, store.transaction():
        store.audit("cli", "hub.token.rotate", "http")
    click.echo(token)


@hub_group.command("run")
@home_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def hub_run(home: Path | None, verbose: bool) -> None:
    """Run the hub daemon in the foreground (SIGTERM stops it); one hub per home."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    with HomeLock(folder):  # before the database, the broker, the HTTP port or the upstream
        open_hub(folder)[1].close()
        setup_logging(verbose)
        own_process_group()
        daemon = HubDaemon(cfg, folder)
        with stop_on_signals(daemon.stop):
            daemon.run()


@click.group("window")
def window_group() -> None:
    """Register service windows."""


@window_group.command("add")
@click.argument("window")
@click.option("--name", required=True, help="Display name, e.g. 综合受理1号窗.")
@click.option("--dept", default=None, help="Department serving at the window.")
@home_option
def window_add(window: str, name: str, dept: str | None, home: Path | None) -> None:
    """Register window WINDOW."""
    with open_hub(home)[1] as store:
        reg.add_window(store, window, name, dept)


@window_group.command("list")
@home_option
@format_option
def window_list(home: Path | None, fmt: str) -> None:
    """List the windows."""
    with open_hub(home)[1] as store:
        print_records(reg.list_windows(store), fmt)


@click.group("item")
def item_group() -> None:
    """Register service items (事项)."""


@item_group.command("add")
@click.argument("code")
@click.option("--name", required=True, help="Item name.")
@home_option
def item_add(code: str, name: str, home: Path | None) -> None:
    """Register service item CODE (事项编码)."""
    with open_hub(home)[1] as store:
        reg.add_item(store, code, name)


@item_group.command("list")
@home_option
@format_option
def item_list(home: Path | None, fmt: str) -> None:
    """List the service items."""
    with open_hub(home)[1] as store:
        print_records(reg.list_items(store), fmt)


@click.group("device")
def device_group() -> None:
    """Provision terminals: broker user, password, MAC key and terminal.toml."""


@device_group.command("add")
@click.argument("device")
@click.option("--window", required=True, help="The window this terminal serves.")
@click.option(
    "--kind",
    type=click.Choice(["gpio", "modbus", "serial", "micro"]),
    default="gpio",
    show_default=True,
    help="Panel driver of the terminal.",
)
@click.option(
    "--mode",
    type=click.Choice(["free", "invited", "staff"]),
    default="free",
    show_default=True,
    help="free: lockout between presses; invited: business system; staff: staff key.",
)
@home_option
def device_add(device: str, window: str, kind: str, mode: str, home: Path | None) -> None:
    """Provision terminal DEVICE and write devices/DEVICE/terminal.toml."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    with open_hub(folder)[1] as store:
        path = provision.add_device(store, cfg, folder, device, window, kind, mode, board_files())
    click.echo(f"wrote {path} (secret: copy it to the terminal, mode 0600)", err=True)


@device_group.command("list")
@home_option
@format_option
def device_list(home: Path | None, fmt: str) -> None:
    """List terminals with their keys, stored events and health: online, last seen and last press
    (hall-local time), backlog, events not stored yet, clock, panel link, firmware (the running
    version), its newest update (release and phase), the hub's configuration version in force ("3",
    "3, pending 4", "3, refused 4: why") and `silent` (offline or not heard from for 5 minutes) —
    the devices page of the console, on a shell."""
    cfg, store_cm = open_hub(home)
    with store_cm as store:
        rows = reg.list_devices(store)
        health = {t.device: t for t in terminals(store, now_ms())}
        updates = releases.device_phases(store)
    tz = ZoneInfo(cfg.timezone)
    for row in rows:
        row.pop("state"), row.pop("state_ms")
        t = health[row["device"]]
        row |= {
            "online": t.online,
            "last_seen": _local(t.last_seen_ms, tz),
            "last_press": _local(t.last_press_ms, tz),
            "backlog": t.backlog,
            "not_stored": t.missing,
            "clock": t.clock,
            "panel": None if t.panel_ok is None else ("ok" if t.panel_ok else f"down: {t.panel_detail}"),
            "firmware": t.firmware,
            "config": t.config,
            "update": updates.get(row["device"]),
            "silent": t.silent,
        }
    print_records(rows, fmt)


def _local(ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ms is None else f"{dt.datetime.fromtimestamp(ms / 1000, tz):%Y-%m-%d %H:%M:%S}"


@device_group.command("revoke")
@click.argument("device")
@home_option
def device_revoke(device: str, home: Path | None) -> None:
    """Revoke DEVICE: its broker user (and client certificate) goes, its frames are rejected."""
    folder = home_path(home)
    with open_hub(folder)[1] as store:
        provision.revoke_device(store, folder, device)


@device_group.command("rotate")
@click.argument("device")
@click.option(
    "--now", "at_once", is_flag=True, help="the old key may have leaked: stop the old password and key at once"
)
@home_option
def device_rotate(device: str, at_once: bool, home: Path | None) -> None:
    """New password and MAC key for DEVICE; rewrites its terminal.toml.

    By default a running terminal takes the new pair up by itself (it arrives as a command) and
    frames signed with the old key are still accepted for a while; a revoked device stays
    revoked."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    with open_hub(folder)[1] as store:
        path = provision.rotate_device(store, cfg, folder, device, at_once, board_files())
    how = (
        "the old password and key stop now: copy the file to the terminal"
        if at_once
        else ("the terminal takes it up by itself when it is connected")
    )
    click.echo(f"wrote {path} ({how})", err=True)


@device_group.command("reinstate")
@click.argument("device")
@home_option
def device_reinstate(device: str, home: Path | None) -> None:
    """Provision a revoked DEVICE again: new password and MAC key; copy its terminal.toml to it."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    with open_hub(folder)[1] as store:
        path = provision.reinstate_device(store, cfg, folder, device, board_files())
    click.echo(f"wrote {path}", err=True)


@click.group("broker")
def broker_group() -> None:
    """Run the hall's Mosquitto broker."""


@broker_group.command("run")
@home_option
def broker_run(home: Path | None) -> None:
    """Run Mosquitto with a config, password file and ACL made from the device registry."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    setup_logging(False)
    own_process_group()
    runner = BrokerRunner(cfg, folder)
    with stop_on_signals(runner.stop):
        runner.run()


@click.command("stats")
@home_option
@click.option(
    "--by",
    default="window",
    show_default=True,
    help="Group by device, window, item, staff and/or day, comma-separated.",
)
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (YYYY-MM-DD).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (YYYY-MM-DD).")
@format_option
def stats_cmd(home: Path | None, by: str, start: dt.datetime | None, end: dt.datetime | None, fmt: str) -> None:
    """Cases, evaluations, levels and rates, read from the counters."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    names = stats.parse_by(by)
    if start and end and start > end:
        raise click.BadParameter(f"--from {start.date()} is after --to {end.date()}")
    with open_hub(folder)[1] as store:
        result = stats.stats(store, names, start and start.date(), end and end.date(), cfg.satisfaction_threshold)
    click.echo(stats.render(result, names, fmt))
