"""``haocha sim terminal``: the real terminal program with simulated keys pressed on a schedule.

Levels and reasons come from a seeded generator, so a run can be repeated. After each press the
simulator waits for the journal commit (the terminal accepted it) before the next, and at the end
until every journaled event is acknowledged by the hub.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from protocol.levels import Level
from terminal.config import TerminalConfig
from terminal.errors import TerminalError
from terminal.panel import Key, KeyKind
from terminal.runner import Terminal
from terminal.updater import RESTART_EXIT

_LOG = logging.getLogger(__name__)
#: Weights of a plausible hall: most citizens are satisfied.
LEVEL_WEIGHTS = {"very_satisfied": 60, "satisfied": 25, "basic": 8, "dissatisfied": 5, "very_dissatisfied": 2}


class SimError(TerminalError, RuntimeError):
    """The simulated run could not finish (no invitation, no commit, no ack in time): one line
    on stderr from the command line, as every error of this project."""


class SimulatedPanel(Protocol):
    config: TerminalConfig
    panel_options: dict[str, Any]

    def press(self, key: Key) -> None: ...

    def close(self) -> None: ...


def simulated_panel(config: TerminalConfig) -> SimulatedPanel:
    if config.kind == "gpio":
        from .gpio_panel import SimGpioPanel

        return SimGpioPanel(config)
    try:
        from .panel_sims import simulated_panel as other_panels
    except ImportError:
        raise SimError(f"no simulated panel for kind {config.kind!r}") from None
    return other_panels(config)


@dataclasses.dataclass
class PressPlan:
    """Seeded choice of levels and reasons."""

    seed: int
    levels: list[str]
    reasons: list[str]

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def level(self) -> str:
        return self.rng.choices(self.levels, [LEVEL_WEIGHTS[lv] for lv in self.levels])[0]

    def reason(self) -> str | None:
        return self.rng.choice(self.reasons) if self.reasons else None


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, stop: threading.Event | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SimError(f"timed out after {timeout:.0f}s waiting for {what}")
        if stop is not None and stop.is_set():
            raise SimError(f"stopped while waiting for {what}")
        time.sleep(0.005)


def without_lockout(config: TerminalConfig) -> TerminalConfig:
    return dataclasses.replace(config, timing=dataclasses.replace(config.timing, lockout_s=0.0))


def run(
    config: TerminalConfig,
    presses: int,
    rate: float,
    seed: int,
    keep_lockout: bool = False,
    timeout_s: float = 300.0,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Press ``presses`` ratings at ``rate``/s, wait for every ack; return the journal summary."""
    stop = stop or threading.Event()
    if not keep_lockout:
        config = without_lockout(config)
    if config.kind == "micro":
        from terminal.micro_host import run_sim

        return run_sim(config, presses, rate, seed, keep_lockout, timeout_s)
    sim = simulated_panel(config)
    try:
        with Terminal(sim.config, stop=stop, **sim.panel_options) as term:
            runner = threading.Thread(target=term.run, args=(stop,), name="terminal", daemon=True)
            runner.start()
            try:
                _press_all(term, sim, presses, rate, seed, stop)
                wait_until(lambda: term.journal.acked >= term.journal.last_seq, timeout_s, "the hub's ack", stop)
            except SimError:
                if term.restarting.is_set():  # an update switched slots: the launcher starts it again
                    raise SystemExit(RESTART_EXIT) from None
                raise
            summary = term.journal.summary()
            term.stop()
            runner.join(timeout=5)
            return summary
    finally:
        sim.close()


def _press_all(
    term: Terminal, sim: SimulatedPanel, presses: int, rate: float, seed: int, stop: threading.Event
) -> None:
    wait_until(term.started.is_set, 30, "the terminal to start", stop)
    plan = PressPlan(
        seed,
        sorted(term.panel.levels, key=lambda lv: -Level(lv).score),
        sorted(term.panel.reasons & set(term.config.reasons)),
    )
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    for _ in range(presses):
        if stop.is_set():  # SIGTERM, or an update's restart: a press may be committed at once, never waited for
            raise SimError("stopped before every press was made")
        next_at = max(next_at, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
        if term.config.mode == "staff":
            _press_and_commit(term, sim, Key(KeyKind.STAFF), stop)
        wait_until(lambda: term.evaluator.ready, term.config.timing.invite_s + 120, "a rating to be possible", stop)
        level = plan.level()
        _press_and_commit(term, sim, Key(KeyKind.LEVEL, level), stop)
        reason = plan.reason() if Level(level).is_bad else None
        if reason is not None:
            _press_and_commit(term, sim, Key(KeyKind.REASON, reason), stop)
        next_at += interval


def _press_and_commit(term: Terminal, sim: SimulatedPanel, key: Key, stop: threading.Event) -> None:
    before = term.journal.last_seq
    sim.press(key)
    wait_until(lambda: term.journal.last_seq > before, 30, f"the journal commit of {key.kind.value} {key.value}", stop)
