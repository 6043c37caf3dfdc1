"""``haocha``: one command-line program for the hub, the terminal and the simulators (SPEC section 7).

Each command parses its options, calls the library and lets :class:`HaochaGroup` turn the
library's exceptions into one line on stderr and a non-zero exit (a traceback only with
``HAOCHA_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from typing import Any

import click

from protocol.errors import HaochaError

EXPECTED_ERRORS = (HaochaError, ValueError, LookupError, OSError, sqlite3.Error)


#: Command name → "module:attribute" under hub.cli, imported only when the command is used, so
#: that ``haocha terminal run`` on a Raspberry Pi never loads the hub, its web stack or SQLite utils.
LAZY_COMMANDS = {
    "hub": "hall_cmds:hub_group",
    "window": "hall_cmds:window_group",
    "item": "hall_cmds:item_group",
    "device": "hall_cmds:device_group",
    "broker": "hall_cmds:broker_group",
    "stats": "hall_cmds:stats_cmd",
    "case": "case_cmds:case_group",
    "staff": "case_cmds:staff_group",
    "terminal": "terminal_cmds:terminal_group",
    "sim": "sim_cmds:sim_group",
    "demo": "sim_cmds:demo_cmd",
    "upstream": "upstream_cmds:upstream_group",
    "ticket": "ticket_cmds:ticket_group",
    "report": "report_cmds:report_cmd",
    "tls": "tls_cmds:tls_group",
    "user": "user_cmds:user_group",
    "audit": "user_cmds:audit_cmd",
}


class HaochaGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        return command

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
