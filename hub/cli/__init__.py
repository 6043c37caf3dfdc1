"""``haocha``: one command-line program for the hub, the terminal and the simulators (SPEC section 7).

Each command parses its options, calls the library and lets :class:`HaochaGroup` turn the
library's exceptions into one line on stderr and a non-zero exit (a traceback only with
``HAOCHA_DEBUG=1``).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import click

from protocol.errors import HaochaError

EXPECTED_ERRORS = (HaochaError, ValueError, LookupError, OSError, sqlite3.Error)


class HaochaGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except EXPECTED_ERRORS as exc:
            if os.environ.get("HAOCHA_DEBUG") == "1":
                raise
            raise click.ClickException(_one_line(exc)) from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@click.group(cls=HaochaGroup)
@click.version_option(package_name="haocha")
def main() -> None:
    """haocha: hall evaluation (好差评) terminals and the hall hub."""


def _register() -> None:
    from . import hall_cmds, report_cmds, sim_cmds, terminal_cmds, ticket_cmds, upstream_cmds

    for module in (hall_cmds, terminal_cmds, sim_cmds, upstream_cmds, ticket_cmds, report_cmds):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
