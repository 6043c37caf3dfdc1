"""``haocha report``: the supervisors' period report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from .. import config as hub_config
from .. import report
from ..store import Store
from .common import home_option, home_path


@click.command("report")
@click.option(
    "--period", type=click.Choice(["week", "month", "quarter"]), default="month", show_default=True, help="Period."
)
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="A day in the period (default today)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "html", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to this file.")
@home_option
def report_cmd(period: str, day: dt.datetime | None, fmt: str, out: Path | None, home: Path | None) -> None:
    """Rates per window and item, window ranking by bad-review rate, reasons, overdue tickets."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    today = dt.datetime.now(cfg.tz).date()
    with Store(folder / hub_config.DB_NAME) as store:
        text = report.render(report.build(store, cfg, period, day.date() if day else today, today), fmt)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
