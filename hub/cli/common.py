"""Options and helpers shared by the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from protocol.cli import format_option
from protocol.process import own_process_group, setup_logging, stop_on_signals

from ..config import HubConfig, resolve_home
from ..spreadsheet import to_csv

if TYPE_CHECKING:
    from ..provision import BoardFiles
    from ..store import Store

__all__ = [
    "board_files",
    "format_option",
    "home_option",
    "home_path",
    "open_hub",
    "own_process_group",
    "print_records",
    "setup_logging",
    "stop_on_signals",
]

home_option = click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding hub.toml, hub.db and the broker files (default: $HAOCHA_HOME, else the current directory).",
)


def home_path(home: Path | None) -> Path:
    return resolve_home(home)


def board_files() -> BoardFiles | None:
    """The maker of a MicroPython board's files that the program ``haocha`` hands down (the
    firmware is the terminal's: :data:`hub.cli.BOARD_FILES`)."""
    from . import BOARD_FILES

    maker: BoardFiles | None = click.get_current_context().meta.get(BOARD_FILES)
    return maker


def open_hub(home: Path | None) -> tuple[HubConfig, Store]:
    """The hub's config and a store connection; a clear error when the folder is not a hub home.
    (The store is imported here, not above, so terminal commands never load it.)"""
    from .. import config as hub_config
    from ..store import Store

    folder = home_path(home)
    config = hub_config.load(folder)
    return config, Store(folder / hub_config.DB_NAME)


def print_records(rows: list[dict[str, Any]], fmt: str) -> None:
    """Rows of records as JSON, CSV (safe for spreadsheets) or tab-separated text."""
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not rows:
        return
    keys = list(rows[0])
    if fmt == "csv":
        click.echo(to_csv([keys, *([row[k] for k in keys] for row in rows)]), nl=False)
        return
    click.echo("\t".join(keys))
    for row in rows:
        click.echo("\t".join("" if row[k] is None else str(row[k]) for k in keys))
