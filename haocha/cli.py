"""``haocha``: the terminal's, the hub's and the simulators' command groups in one program.

Each part's commands are imported only when used: on a Raspberry Pi (``pip install 'haocha[pi]'``)
``haocha terminal run`` loads the terminal alone, and a hub command says the hub is not installed.
"""

from __future__ import annotations

import click

from hub.cli import BOARD_FILES
from hub.cli import COMMANDS as HUB_COMMANDS
from protocol.cli import LazyGroup
from protocol.terminal_config import TerminalConfig

TERMINAL_COMMANDS = {"terminal": "terminal.cli:terminal_group"}
SIMULATOR_COMMANDS = {"sim": "simulators.cli:sim_group", "demo": "simulators.cli:demo_cmd"}


@click.group(cls=LazyGroup, lazy_commands=TERMINAL_COMMANDS | HUB_COMMANDS | SIMULATOR_COMMANDS)
@click.version_option(package_name="haocha")
@click.pass_context
def main(ctx: click.Context) -> None:
    """haocha: hall evaluation (好差评) terminals and the hall hub."""
    ctx.meta[BOARD_FILES] = board_files


def board_files(config: TerminalConfig) -> dict[str, bytes]:
    """What the hub needs from the terminal package: a MicroPython board's files (the firmware
    is the terminal's), handed down to hub commands through click's context."""
    from terminal.micro_host import board_files

    return board_files(config)
