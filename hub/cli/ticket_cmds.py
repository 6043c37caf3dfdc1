"""Bad-review work queue commands: ``ticket list|show|assign|appeal|verify|feedback``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from .. import config as hub_config
from .. import tickets
from ..store import Store
from .common import format_option, home_option, open_hub, print_records

actor_option = click.option("--actor", default="cli", show_default=True, help="Who makes the change (audit log).")
LIST_KEYS = ("id", "ticket_no", "window", "item", "level", "reasons", "state", "verdict", "assignee", "dept",
             "opened_day", "deadline", "overdue")  # fmt: skip


def _today(cfg: hub_config.HubConfig) -> dt.date:
    return dt.datetime.now(cfg.tz).date()


def _show(ticket: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(ticket, ensure_ascii=False))
    else:
        print_records([{k: ticket[k] for k in LIST_KEYS}], fmt)


@click.group("ticket")
def ticket_group() -> None:
    """The bad-review work queue: 登记 → 转办 → 核实 → 反馈."""


@ticket_group.command("list")
@click.option("--state", type=click.Choice(tickets.STATES), default=None, help="Only tickets in this state.")
@click.option("--overdue", is_flag=True, help="Only open tickets past their deadline.")
@home_option
@format_option
def ticket_list(state: str | None, overdue: bool, home: Path | None, fmt: str) -> None:
    """List tickets with their deadline and overdue flag."""
    cfg, store = open_hub(home)
    with store:
        rows = tickets.list_tickets(store, cfg.tickets, _today(cfg), state, overdue)
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        print_records([{k: (",".join(r[k]) if k == "reasons" else r[k]) for k in LIST_KEYS} for r in rows], fmt)


@ticket_group.command("show")
@click.argument("ticket")
@home_option
@format_option
def ticket_show(ticket: str, home: Path | None, fmt: str) -> None:
    """Show TICKET (its id or number)."""
    cfg, store = open_hub(home)
    with store:
        _show(tickets.get_ticket(store, ticket, cfg.tickets, _today(cfg)), fmt)


def _after(cfg: hub_config.HubConfig, store: Store, row: dict[str, Any], fmt: str) -> None:
    _show(tickets.get_ticket(store, str(row["id"]), cfg.tickets, _today(cfg)), fmt)


@ticket_group.command("assign")
@click.argument("ticket")
@click.option("--to", "to", required=True, help="Person or department handling it.")
@click.option("--dept", default=None, help="Hand the ticket to this department (default: it stays in its own).")
@actor_option
@home_option
@format_option
def ticket_assign(ticket: str, to: str, dept: str | None, actor: str, home: Path | None, fmt: str) -> None:
    """转办: assign TICKET to a department or person."""
    cfg, store = open_hub(home)
    with store:
        _after(cfg, store, tickets.assign(store, ticket, to, dept, actor), fmt)


@ticket_group.command("appeal")
@click.argument("ticket")
@click.option("--reason", required=True, help="Why the review should be found invalid.")
@actor_option
@home_option
@format_option
def ticket_appeal(ticket: str, reason: str, actor: str, home: Path | None, fmt: str) -> None:
    """申诉: the assignee appeals TICKET as an invalid review."""
    cfg, store = open_hub(home)
    with store:
        _after(cfg, store, tickets.appeal(store, ticket, reason, actor), fmt)


@ticket_group.command("verify")
@click.argument("ticket")
@click.option("--valid/--invalid", required=True, help="Verdict; --invalid only after an appeal.")
@actor_option
@home_option
@format_option
def ticket_verify(ticket: str, valid: bool, actor: str, home: Path | None, fmt: str) -> None:
    """核实: record the verdict on TICKET."""
    cfg, store = open_hub(home)
    with store:
        _after(cfg, store, tickets.verify(store, ticket, valid, actor), fmt)


@ticket_group.command("feedback")
@click.argument("ticket")
@click.option("--text", required=True, help="The rectification (整改) given.")
@actor_option
@home_option
@format_option
def ticket_feedback(ticket: str, text: str, actor: str, home: Path | None, fmt: str) -> None:
    """反馈: record the rectification of TICKET; closes it."""
    cfg, store = open_hub(home)
    with store:
        _after(cfg, store, tickets.feedback(store, ticket, text, actor), fmt)
