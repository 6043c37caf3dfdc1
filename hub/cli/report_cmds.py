"""``haocha report``: the supervisors' period report and the published window rankings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from .. import config as hub_config
from .. import rankings, rankings_render, report
from ..store import Store
from .common import home_option, home_path


@click.command("report")
@click.option(
    "--kind",
    type=click.Choice(["period", *rankings.KINDS]),
    default="period",
    show_default=True,
    help="period: rates, ranking, reasons, work queue; monthly: 窗口月度排名 of every window; "
    "difficult: 最难办窗口, the worst windows by bad-review rate.",
)
@click.option(
    "--period",
    type=click.Choice(["week", "month", "quarter"]),
    default=None,
    help="Period (default: month; quarter for --kind difficult; monthly is always a month).",
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
    help="Output format; csv is one table, UTF-8 with a byte-order mark, for spreadsheets.",
)
@click.option(
    "--out",
    type=click.Path(),  # a str: a trailing / (a folder to make) must survive
    default=None,
    help="Write to this file; with --kind period --format csv, a folder (existing, or ending in /) "
    "gets one CSV per table.",
)
@click.option(
    "--min-ratings",
    type=click.IntRange(min=1),
    default=None,
    help="--kind difficult: fewest ratings a listed window has (default [reports] difficult_min_ratings).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=None,
    help="--kind difficult: how many windows to list (default [reports] difficult_top).",
)
@home_option
def report_cmd(
    kind: str,
    period: str | None,
    day: dt.datetime | None,
    fmt: str,
    out: str | None,
    min_ratings: int | None,
    top: int | None,
    home: Path | None,
) -> None:
    """Period report, monthly window ranking (窗口月度排名) or most difficult windows (最难办窗口)."""
    folder = home_path(home)
    cfg = hub_config.load(folder)
    now = dt.datetime.now(cfg.tz)
    when = day.date() if day else now.date()
    with Store(folder / hub_config.DB_NAME) as store:
        if kind == "period":
            rep = report.build(store, cfg, period or "month", when, now.date())
            if fmt == "csv" and out is not None and (Path(out).is_dir() or out.endswith("/")):
                _write_tables(Path(out), report.csv_files(rep))
                return
            text = report.render(rep, fmt)
        else:
            text = _ranking(kind, store, cfg, when, period, min_ratings, top, fmt, now)
    if out is None:
        click.echo(text, nl=fmt != "csv")
    else:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)


def _write_tables(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    click.echo(f"wrote {len(files)} tables to {folder}", err=True)


def _ranking(
    kind: str,
    store: Store,
    cfg: hub_config.HubConfig,
    day: dt.date,
    period: str | None,
    min_ratings: int | None,
    top: int | None,
    fmt: str,
    now: dt.datetime,
) -> str:
    settings = cfg.reports
    try:
        rep = rankings.build(
            kind,
            store,
            cfg,
            day,
            period,
            min_ratings or settings.difficult_min_ratings,
            top or settings.difficult_top,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return rankings_render.render(rep, fmt, now)
