"""The terminal's command group: ``terminal run``, ``terminal check`` and ``terminal journal``
(SPEC section 7)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from protocol.cli import format_option
from protocol.process import own_process_group, setup_logging, stop_on_signals

config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The terminal.toml to use.",
)


@click.group("terminal")
def terminal_group() -> None:
    """Run a terminal and read its journal."""


@terminal_group.command("run")
@config_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def terminal_run(config_path: Path, verbose: bool) -> None:
    """Run the terminal program in the foreground, driver chosen by its config."""
    from .config import load
    from .runner import Terminal

    config = load(config_path)
    setup_logging(verbose)
    own_process_group()
    if config.kind == "micro":
        raise click.ClickException("kind micro runs on the board (see docs/micro.md), or under `haocha sim terminal`")
    with Terminal(config) as term, stop_on_signals(term.stop):
        term.run()
    if term.restarting.is_set():  # an update switched slots: systemd starts the launcher again
        from .updater import RESTART_EXIT

        raise SystemExit(RESTART_EXIT)


@terminal_group.command("check")
@config_option
def terminal_check(config_path: Path) -> None:
    """Check a terminal.toml (every key and value, the files it names) without running anything;
    one line on what it sets up, or one line on what is wrong."""
    from .config import load

    config = load(config_path)
    tls = "plain MQTT" if config.broker_tls() is None else "TLS"  # loads the CA and certificate files
    click.echo(
        f"{config.device} at window {config.window} ({config.kind}, {config.mode} mode), "
        f"broker {config.broker.host}:{config.broker.port} over {tls}"
    )


@terminal_group.command("journal")
@config_option
@format_option
def terminal_journal(config_path: Path, fmt: str) -> None:
    """Print device, epoch, last_seq, acked and pending from the journal on disk."""
    from .summary import journal_summary

    summary = journal_summary(config_path)
    if fmt == "json":
        click.echo(json.dumps(summary))
    elif fmt == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([list(summary), list(summary.values())])
        click.echo(out.getvalue(), nl=False)
    else:
        for key, value in summary.items():
            click.echo(f"{key:>9}  {value}")
