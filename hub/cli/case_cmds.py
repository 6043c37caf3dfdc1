"""Cases and staff at a window: ``case open``, ``case cancel``, ``staff signin``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import cases
from .common import home_option, open_hub


@click.group("case")
def case_group() -> None:
    """Open and cancel cases (办件) by hand: the CLI twin of POST /api/v1/cases."""


@case_group.command("open")
@click.option("--window", required=True, help="Window where the case was served.")
@click.option("--case", "case_no", required=True, help="Case number (办件编号).")
@click.option("--item", default=None, help="Service item code (事项编码).")
@click.option("--staff", default=None, help="Staff member who served the case.")
@home_option
def case_open(window: str, case_no: str, item: str | None, staff: str | None, home: Path | None) -> None:
    """Open a case and invite a rating on the window's terminal (the running hub sends it)."""
    cfg, store = open_hub(home)
    with store:
        case = cases.open_case(store, cases.CaseRequest(case_no, window, item, staff), cfg.invite_s, cfg.tz, "cli")
    click.echo(json.dumps(case, ensure_ascii=False))


@case_group.command("cancel")
@click.argument("case_no", metavar="CASE")
@home_option
def case_cancel(case_no: str, home: Path | None) -> None:
    """Cancel open case CASE; its invitation is withdrawn."""
    _cfg, store = open_hub(home)
    with store:
        click.echo(json.dumps(cases.cancel_case(store, case_no, "cli")))


@click.group("staff")
def staff_group() -> None:
    """Staff at the windows."""


@staff_group.command("signin")
@click.option("--window", required=True, help="The window.")
@click.option("--staff", default=None, help="Staff id; leave out to sign the window's staff out.")
@home_option
def staff_signin(window: str, staff: str | None, home: Path | None) -> None:
    """Sign a staff member in at a window: its terminal's events carry the staff id."""
    _cfg, store = open_hub(home)
    with store:
        device = cases.sign_in_staff(store, window, staff)
    click.echo(f"{device}: staff {staff or '(none)'}", err=True)
