"""Options and helpers shared by the commands."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import HubConfig, resolve_home
from ..spreadsheet import to_csv

if TYPE_CHECKING:
    from ..store import Store

home_option = click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding hub.toml, hub.db and the broker files (default: $HAOCHA_HOME, else the current directory).",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format; json goes to stdout alone.",
)


def home_path(home: Path | None) -> Path:
    return resolve_home(home)


def own_process_group() -> None:
    """Long-running commands keep their children in their own process group."""
    with contextlib.suppress(OSError):
        if os.getpgrp() != os.getpid():
            os.setpgid(0, 0)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], Any]) -> Iterator[threading.Event]:
    """Call ``stop`` on SIGTERM or SIGINT; yields an Event set at the same time."""
    event = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        event.set()
        stop()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def setup_logging(verbose: bool = False) -> None:
    """Entry points only: log lines to stderr (journald under systemd)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


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
