"""People and the audit log: ``user add|token|tokens|revoke-token|password|list|disable`` and ``audit``
(SPEC section 12)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from .. import auth_store
from ..audit import read_audit
from ..auth import PERSON_ROLES
from .common import format_option, home_option, open_hub, print_records


@click.group("user")
def user_group() -> None:
    """People who use the console and the API: supervisor, handler, technician, auditor."""


@user_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(PERSON_ROLES), help="What the person may do.")
@click.option("--dept", default=None, help="Department (a handler handles this department's tickets).")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Read the password from standard input.")
@home_option
def user_add(name: str, role: str, dept: str | None, password_stdin: bool, home: Path | None) -> None:
    """Add the person NAME with a role and a password (read from stdin: never on the command line)."""
    if not password_stdin:
        raise click.UsageError("give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    _cfg, store = open_hub(home)
    with store:
        auth_store.add_user(store, name, role, dept, password)
    if len(password) < 8:
        click.echo("warning: a password under 8 characters is easy to guess", err=True)


@user_group.command("token")
@click.argument("name")
@home_option
def user_token(name: str, home: Path | None) -> None:
    """Print a new personal API bearer token for NAME, alone on one line (only its hash is kept)."""
    _cfg, store = open_hub(home)
    with store:
        click.echo(auth_store.issue_token(store, name))


@user_group.command("tokens")
@click.argument("name")
@home_option
@format_option
def user_tokens(name: str, home: Path | None, fmt: str) -> None:
    """NAME's personal tokens: the id of each (from its hash) and when it was issued."""
    cfg, store = open_hub(home)
    with store:
        rows = auth_store.list_tokens(store, name)
    for row in rows:
        row["issued"] = f"{dt.datetime.fromtimestamp(row.pop('created_ms') / 1000, cfg.tz):%Y-%m-%d %H:%M:%S}"
    print_records(rows, fmt)


@user_group.command("revoke-token")
@click.argument("name")
@click.argument("token_id")
@home_option
def user_revoke_token(name: str, token_id: str, home: Path | None) -> None:
    """End one of NAME's tokens (TOKEN_ID from `user tokens`): a leaked token, the others stay."""
    _cfg, store = open_hub(home)
    with store:
        auth_store.revoke_token(store, name, token_id)


@user_group.command("password")
@click.argument("name")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Read the new password from standard input.")
@home_option
def user_password(name: str, password_stdin: bool, home: Path | None) -> None:
    """Set a new password for NAME (read from stdin); lifts a lockout and ends their console sessions."""
    if not password_stdin:
        raise click.UsageError("give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    _cfg, store = open_hub(home)
    with store:
        auth_store.set_password(store, name, password)


@user_group.command("list")
@home_option
@format_option
def user_list(home: Path | None, fmt: str) -> None:
    """List people with role, department, and whether disabled or locked."""
    _cfg, store = open_hub(home)
    with store:
        rows = auth_store.list_users(store)
    print_records(rows, fmt)


@user_group.command("disable")
@click.argument("name")
@home_option
def user_disable(name: str, home: Path | None) -> None:
    """Disable NAME: their tokens and console sessions stop at once."""
    _cfg, store = open_hub(home)
    with store:
        auth_store.disable_user(store, name)


@click.command("audit")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (hall time).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (hall time).")
@home_option
@format_option
def audit_cmd(start: dt.datetime | None, end: dt.datetime | None, home: Path | None, fmt: str) -> None:
    """The audit log: at, actor (a person or system), action, target, detail."""
    cfg, store = open_hub(home)
    with store:
        rows = read_audit(store, cfg.tz, start.date() if start else None, end.date() if end else None)
    if fmt == "json":
        click.echo(json.dumps({"rows": rows}, ensure_ascii=False))
    else:
        flat = [{**r, "detail": json.dumps(r["detail"], ensure_ascii=False)} for r in rows]
        print_records(flat, fmt)
