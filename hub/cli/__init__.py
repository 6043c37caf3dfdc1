"""The hub's command group: every hub-side command of ``haocha`` (SPEC section 7).

Each command parses its options, calls the library and lets :class:`protocol.cli.LazyGroup` turn
the library's exceptions into one line on stderr and a non-zero exit. The program ``haocha``
(:mod:`haocha.cli`) puts these commands beside the terminal's and the simulators'.
"""

from __future__ import annotations

import click

from protocol.cli import LazyGroup

#: Command name → "module:attribute" under hub.cli, imported only when the command is used.
LAZY_COMMANDS = {
    "hub": "hall_cmds:hub_group",
    "window": "hall_cmds:window_group",
    "item": "hall_cmds:item_group",
    "device": "hall_cmds:device_group",
    "broker": "hall_cmds:broker_group",
    "stats": "hall_cmds:stats_cmd",
    "case": "case_cmds:case_group",
    "staff": "case_cmds:staff_group",
    "upstream": "upstream_cmds:upstream_group",
    "ticket": "ticket_cmds:ticket_group",
    "report": "report_cmds:report_cmd",
    "tls": "tls_cmds:tls_group",
    "alerts": "alert_cmds:alerts_group",
    "user": "user_cmds:user_group",
    "audit": "user_cmds:audit_cmd",
    "fleet": "fleet_cmds:fleet_group",
    "config": "config_cmds:config_group",
    "release": "release_cmds:release_group",
}

#: Where the program above puts the function that makes a MicroPython board's files, in
#: ``click.Context.meta`` (the firmware belongs to the terminal, which the hub does not import).
BOARD_FILES = "haocha.board_files"

#: The same, as targets :class:`LazyGroup` imports from anywhere.
COMMANDS = {name: f"{__name__}.{target}" for name, target in LAZY_COMMANDS.items()}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
@click.version_option(package_name="haocha")
def main() -> None:
    """haocha's hub commands (the program ``haocha`` has the terminal's and the simulators' too)."""
