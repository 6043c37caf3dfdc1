"""Alert commands: ``alerts list|ack|close|rules``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..alerts import lifecycle
from ..alerts.rules import describe
from .common import format_option, home_option, open_hub, print_records

actor_option = click.option("--actor", default="cli", show_default=True, help="Who makes the change (audit log).")
LIST_KEYS = ("id", "rule", "subject", "state", "summary", "opened_ms", "acked_by", "comment", "closed_ms")


@click.group("alerts")
def alerts_group() -> None:
    """Alerts the hub raised (rules in hub.toml [alerts]): open → acknowledged → closed."""


@alerts_group.command("list")
@click.option(
    "--state",
    type=click.Choice(["live", "all", *lifecycle.STATES]),
    default="live",
    show_default=True,
    help="live: open or acknowledged.",
)
@home_option
@format_option
def alerts_list(state: str, home: Path | None, fmt: str) -> None:
    """List alerts, newest first; json prints {"rows": [...]} with every field."""
    _cfg, store = open_hub(home)
    with store:
        rows = lifecycle.list_alerts(store, None if state == "all" else state)
    if fmt == "json":
        click.echo(json.dumps({"rows": rows}, ensure_ascii=False, indent=1))
    else:
        print_records([{k: r[k] for k in LIST_KEYS} for r in rows], fmt)


def _done(alert: dict[str, Any]) -> None:
    click.echo(f"alert {alert['id']} ({alert['rule']} {alert['subject']}) is {alert['state']}", err=True)


@alerts_group.command("ack")
@click.argument("alert_id", metavar="ID", type=int)
@click.option("--comment", required=True, help="What is being done about it.")
@actor_option
@home_option
def alerts_ack(alert_id: int, comment: str, actor: str, home: Path | None) -> None:
    """Acknowledge alert ID with a comment; it closes when its condition clears."""
    _cfg, store = open_hub(home)
    with store:
        _done(lifecycle.acknowledge(store, alert_id, actor, comment))


@alerts_group.command("close")
@click.argument("alert_id", metavar="ID", type=int)
@click.option("--comment", default="", help="Why it is closed by hand.")
@actor_option
@home_option
def alerts_close(alert_id: int, comment: str, actor: str, home: Path | None) -> None:
    """Close alert ID by hand; it does not open again until its condition has cleared."""
    _cfg, store = open_hub(home)
    with store:
        _done(lifecycle.close(store, alert_id, actor, comment))


@alerts_group.command("rules")
@home_option
@format_option
def alerts_rules(home: Path | None, fmt: str) -> None:
    """The alert rules hub.toml sets, with their conditions, and the webhooks (by name)."""
    cfg, store = open_hub(home)
    store.close()
    rules = describe(cfg)
    hooks = [{"name": w.name, "kind": w.kind, "signed": bool(w.secret)} for w in cfg.alerts.webhooks]
    if fmt == "json":
        click.echo(json.dumps({"rules": rules, "webhooks": hooks}, ensure_ascii=False, indent=1))
        return
    print_records(rules, fmt)
    if hooks and fmt == "table":
        click.echo("")
        print_records(hooks, fmt)
