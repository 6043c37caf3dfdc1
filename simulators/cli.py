"""The simulators' command group and the demo: ``sim terminal``, ``sim regional`` and ``demo``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from protocol.process import own_process_group, setup_logging, stop_on_signals


@click.group("sim")
def sim_group() -> None:
    """Simulated terminals and peers for tests and demos."""


@sim_group.command("terminal")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The terminal.toml of the device to simulate.",
)
@click.option("--presses", type=click.IntRange(min=0), required=True, help="Ratings to make (0: only drain).")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True, help="Presses a second."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the levels and reasons drawn.")
@click.option("--keep-lockout", is_flag=True, help="Keep the free-mode lockout between presses.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for invitations, commits and the hub's acks.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def sim_terminal(
    config_path: Path, presses: int, rate: float, seed: int, keep_lockout: bool, timeout_s: float, verbose: bool
) -> None:
    """Run the real terminal with simulated keys; exit 0 once every journaled event is acked."""
    from terminal.config import load

    from . import terminal_sim

    config = load(config_path)
    setup_logging(verbose)
    own_process_group()
    with stop_on_signals(lambda: None) as stop:
        summary = terminal_sim.run(config, presses, rate, seed, keep_lockout, timeout_s, stop)
    click.echo(json.dumps(summary))


@click.command("demo")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo hall in this folder (default: a temporary folder, removed unless the demo fails).",
)
@click.option(
    "--presses", type=click.IntRange(min=1), default=30, show_default=True, help="Ratings per simulated terminal."
)
def demo_cmd(home: Path | None, presses: int) -> None:
    """A whole hall on this machine: broker, hub, simulated terminals; prints the stats table."""
    from .demo import run_demo

    own_process_group()
    run_demo(home, presses, echo=lambda line: click.echo(line, err=True), out=click.echo)


@sim_group.command("regional")
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="HOST:PORT to serve on (port 0: any free).")
@click.option(
    "--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Share of requests failed."
)
@click.option("--secret", default="", help="Check HMAC-SHA256 signatures with this secret.")
@click.option("--slow", "slow_s", type=click.FloatRange(min=0), default=0.0, help="Seconds to wait before answering.")
@click.option("--seed", type=int, default=None, help="Seed of the injected failures.")
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Serve HTTPS with this certificate (PEM).",
)
@click.option(
    "--key", type=click.Path(dir_okay=False, path_type=Path), default=None, help="The private key of --cert (PEM)."
)
def sim_regional(
    listen: str, fail_rate: float, secret: str, slow_s: float, seed: int | None, cert: Path | None, key: Path | None
) -> None:
    """The regional 好差评 system simulator; GET /sim/summary reports what it received."""
    import ssl

    from .regional import RegionalSim

    host, port = _listen(listen)
    tls = None
    if cert is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
    setup_logging(False)
    own_process_group()
    sim = RegionalSim(host, port, fail_rate, secret, seed, tls)
    sim.state.control["slow_s"] = slow_s
    with sim, stop_on_signals(lambda: None) as stop:
        click.echo(json.dumps({"listening": sim.url}), err=True)
        stop.wait()


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise click.BadParameter(f"{text!r} must be HOST:PORT", param_hint="--listen")
    return host, int(port)
