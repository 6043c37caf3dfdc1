"""The command-line conventions every part's command group shares (SPEC section 7).

:class:`LazyGroup` imports a command's module only when that command runs, so ``haocha terminal
run`` on a Raspberry Pi never loads the hub (which a terminal install does not even have), and
turns the library's exceptions into one line on stderr and a non-zero exit (a traceback only
with ``HAOCHA_DEBUG=1``)."""

from __future__ import annotations

import importlib
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

import click

from .errors import HaochaError

EXPECTED_ERRORS = (HaochaError, ValueError, LookupError, OSError, sqlite3.Error)
#: The project's own packages: a module of theirs missing is a bug, not a part left out.
PARTS = ("protocol", "terminal", "hub", "simulators", "haocha")

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format; json goes to stdout alone.",
)


class LazyGroup(click.Group):
    """A group whose commands are "module:attribute" targets in ``lazy_commands``."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if ctx.resilient_parsing or exc.name is None or exc.name.split(".")[0] in PARTS:
                raise
            return _missing(cmd_name, exc.name)
        command: click.Command = getattr(loaded, attribute)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except EXPECTED_ERRORS as exc:
            if os.environ.get("HAOCHA_DEBUG") == "1":
                raise
            raise click.ClickException(one_line(exc)) from exc
        except ModuleNotFoundError as exc:  # a part this install leaves out (pip install 'haocha[pi]')
            if os.environ.get("HAOCHA_DEBUG") == "1" or exc.name is None or exc.name.split(".")[0] in PARTS:
                raise
            raise click.ClickException(_not_installed(ctx.invoked_subcommand or "", exc.name)) from exc


def _missing(name: str, package: str) -> click.Command:
    """Stands in for a command whose part is not installed here (``pip install '.[pi]'`` has no
    hub): its help says so and running it fails with one line."""

    def fail(**_: Any) -> None:
        raise click.ClickException(_not_installed(name, package))

    return click.Command(
        name,
        callback=fail,
        help=f"(not installed here: needs {package})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )


def _not_installed(name: str, package: str) -> str:
    return f"`haocha {name}` needs {package}, not installed here: pip install 'haocha[hub]' (or [sim]: every part)"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
