"""Upstream commands: ``upstream status|parked|unpark|push-totals``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from ..upstream import outbox
from ..upstream.totals import queue_totals
from .common import format_option, home_option, open_hub, print_records


@click.group("upstream")
def upstream_group() -> None:
    """The outbox towards the regional 好差评 system."""


@upstream_group.command("status")
@home_option
@format_option
def upstream_status(home: Path | None, fmt: str) -> None:
    """Record counts of the outbox: pending, sent and parked."""
    _cfg, store = open_hub(home)
    with store:
        counts = outbox.counts(store.conn)
    if fmt == "json":
        click.echo(json.dumps(counts))
    else:
        print_records([dict(counts)], fmt)


@upstream_group.command("parked")
@home_option
@format_option
def upstream_parked(home: Path | None, fmt: str) -> None:
    """Records the regional system refused as invalid, with its reason."""
    _cfg, store = open_hub(home)
    with store:
        print_records(outbox.parked(store.conn), fmt)


@upstream_group.command("unpark")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Queue every parked record again.")
@home_option
def upstream_unpark(ids: tuple[int, ...], every: bool, home: Path | None) -> None:
    """Queue parked records (outbox IDS, or --all) again, e.g. after fixing the reason code table."""
    if not ids and not every:
        raise click.UsageError("name outbox ids or pass --all")
    _cfg, store = open_hub(home)
    with store, store.transaction() as conn:
        n = outbox.unpark(conn, None if every else list(ids))
        store.audit("cli", "upstream.unpark", "outbox", ids=list(ids), all=every, count=n)
    click.echo(f"{n} records queued again", err=True)


@upstream_group.command("push-totals")
@click.option(
    "--period",
    type=click.Choice(["day", "week", "month", "quarter", "year"]),
    default="day",
    show_default=True,
    help="Which period's totals to send.",
)
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="A day in the period (default today)."
)
@home_option
def upstream_push_totals(period: str, day: dt.datetime | None, home: Path | None) -> None:
    """Queue totals per window and item for a period; the hub's sender posts them."""
    cfg, store = open_hub(home)
    when = day.date() if day else dt.datetime.now(cfg.tz).date()
    with store:
        n = queue_totals(store, cfg, period, when)
    click.echo(f"{n} totals rows queued for the {period} of {when}", err=True)
