"""The faults of SPEC section 9 as the chaos bench makes them, and the seeded order they come in.

Each fault is a function that makes it, lets it last, and undoes it (restarts what it killed,
heals the link, frees the disk); it returns one line saying what it did. A fault that lasts a
while (a network cut, a full disk) sometimes gets a ``kill -9`` in the middle of it: faults come
together in a real hall too.

:func:`rotate_secrets` is the one place that knows how a device's secrets are rotated while its
terminal runs.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ..hall import child_pids
from .hall import ChaosHall

#: Share of lasting faults that get a kill -9 in their middle.
COMBO_SHARE = 0.3
DAY_S = 86400.0
#: Clock jumps (seconds added to the wall clock); ``None`` sets it to 1970 (an RTC that lost power).
CLOCK_JUMPS: tuple[float | None, ...] = (-30 * DAY_S, -DAY_S, -3600.0, 3600.0, DAY_S, 365 * DAY_S, None)
DELAYS_MS = (100, 500, 2000, 8000)
#: Share of hub kills that keep it down for a long fault's time.
LONG_HUB_OUTAGES = 0.3
#: How soon the hub daemon must exit once its writer is gone.
WRITER_DEATH_S = 30.0


class Finding(Exception):
    """A fault showed the hall misbehaving (not a loss: that the final checks find)."""


@dataclasses.dataclass
class Context:
    """What a fault needs: the hall, the seeded generator, how long lasting faults last at most,
    the run's stop event, and the kinds of the faults made so far in this one (combos)."""

    hall: ChaosHall
    rng: random.Random
    longest_s: float
    stop: threading.Event
    kinds: list[str] = dataclasses.field(default_factory=list)

    def duration(self) -> float:
        return self.rng.uniform(self.longest_s / 4, self.longest_s)

    def wait(self, seconds: float) -> None:
        self.stop.wait(max(0.0, seconds))

    def last(self, seconds: float) -> None:
        """Let a fault last ``seconds``; sometimes a kill -9 lands in the middle of it."""
        if self.rng.random() >= COMBO_SHARE:
            self.wait(seconds)
            return
        at = self.rng.uniform(0, seconds)
        self.wait(at)
        kind = self.rng.choice(sorted(KILLS))
        self.kinds.append(kind)
        self.hall.echo(f"    + {kind}: {KILLS[kind](self)}")
        self.wait(seconds - at)

    def targets(self) -> list[str] | None:
        """Every terminal (None) or a few of them."""
        if self.rng.random() < 0.5:
            return None
        devices = sorted(self.hall.seats)
        return sorted(self.rng.sample(devices, self.rng.randint(1, max(1, len(devices) // 2))))


def _names(targets: list[str] | None) -> str:
    return "all terminals" if targets is None else ",".join(targets)


# -- kill -9 --------------------------------------------------------------------------------
def kill_terminal(ctx: Context) -> str:
    devices = sorted(ctx.rng.sample(sorted(ctx.hall.seats), ctx.rng.randint(1, min(3, len(ctx.hall.seats)))))
    for device in devices:
        ctx.hall.kill(ctx.hall.seats[device].process)
    down = ctx.rng.uniform(0, 5)
    ctx.wait(down)
    for device in devices:
        ctx.hall.start(ctx.hall.seats[device].process)
    return f"{','.join(devices)} down {down:.1f} s"


def kill_hub(ctx: Context) -> str:
    """Daemon and writer; now and then down long enough for the broker's queue for the hub to
    overflow (the chaos hall keeps Mosquitto's default of 1,000 messages)."""
    ctx.hall.kill("hub")
    long = ctx.rng.random() < LONG_HUB_OUTAGES
    down = ctx.rng.uniform(ctx.longest_s / 2, ctx.longest_s) if long else ctx.rng.uniform(0, 10)
    ctx.wait(down)
    ctx.hall.start("hub")
    return f"down {down:.1f} s"


def kill_writer(ctx: Context) -> str:
    """The hub's writer process alone: the daemon must notice and exit, for systemd to restart it."""
    hub = ctx.hall.hall.procs.get("hub")
    writers = child_pids(hub.pid) if hub is not None and hub.poll() is None else []
    if hub is None or not writers:
        return "no writer running"
    ctx.hall.unwatch("hub")
    os.kill(writers[0], signal.SIGKILL)
    try:
        code = hub.wait(timeout=WRITER_DEATH_S)
    except subprocess.TimeoutExpired:
        raise Finding(f"the hub daemon still ran {WRITER_DEATH_S:.0f} s after its writer was killed") from None
    finally:
        ctx.hall.kill("hub")
        ctx.hall.start("hub")
    return f"writer pid {writers[0]} killed; the daemon exited with code {code} and was restarted"


def kill_broker(ctx: Context) -> str:
    """Mosquitto comes back with the persistence file of its last autosave."""
    ctx.hall.kill("broker")
    down = ctx.rng.uniform(0, 8)
    ctx.wait(down)
    ctx.hall.start("broker")
    return f"down {down:.1f} s"


def broker_fresh(ctx: Context) -> str:
    """Sessions, queued messages and retained acks are gone: messages it PUBACKed are lost."""
    ctx.hall.kill("broker")
    (ctx.hall.hall.home / "mosquitto.db").unlink(missing_ok=True)
    down = ctx.rng.uniform(0, 5)
    ctx.wait(down)
    ctx.hall.start("broker")
    return f"down {down:.1f} s, persistence file deleted"


KILLS: dict[str, Callable[[Context], str]] = {
    "kill_terminal": kill_terminal,
    "kill_hub": kill_hub,
    "kill_writer": kill_writer,
    "kill_broker": kill_broker,
    "broker_fresh": broker_fresh,
}


# -- the network between terminals and broker ----------------------------------------------------
def net_cut(ctx: Context) -> str:
    targets, seconds = ctx.targets(), ctx.duration()
    ctx.hall.proxy.cut(targets)
    try:
        ctx.last(seconds)
    finally:
        ctx.hall.proxy.heal(targets)
    return f"{_names(targets)} cut for {seconds:.0f} s"


def net_freeze(ctx: Context) -> str:
    targets, seconds = ctx.targets(), ctx.duration()
    ctx.hall.proxy.freeze(targets)
    try:
        ctx.last(seconds)
    finally:
        ctx.hall.proxy.heal(targets)
    return f"{_names(targets)} black-holed for {seconds:.0f} s"


def net_delay(ctx: Context) -> str:
    targets, seconds, ms = ctx.targets(), ctx.duration(), ctx.rng.choice(DELAYS_MS)
    ctx.hall.proxy.delay(ms, targets)
    try:
        ctx.last(seconds)
    finally:
        ctx.hall.proxy.heal(targets)
    return f"{_names(targets)} delayed {ms} ms each way for {seconds:.0f} s"


def net_drop(ctx: Context) -> str:
    targets, seconds = ctx.targets(), ctx.duration()
    drops = 0
    end = ctx.hall.elapsed() + seconds
    while ctx.hall.elapsed() < end and not ctx.stop.is_set():
        ctx.hall.proxy.drop(targets)
        drops += 1
        ctx.wait(min(ctx.rng.uniform(0.5, 5), end - ctx.hall.elapsed()))
    return f"{_names(targets)}: connections dropped mid-stream {drops} times in {seconds:.0f} s"


# -- terminals' clocks, the hub's disk, secrets ------------------------------------------------
def clock_jump(ctx: Context) -> str:
    cpython = sorted(d for d, s in ctx.hall.seats.items() if s.kind != "micro")
    devices = sorted(ctx.rng.sample(cpython, ctx.rng.randint(1, min(3, len(cpython)))))
    jump, seconds = ctx.rng.choice(CLOCK_JUMPS), ctx.duration()
    offset = -time.time() if jump is None else jump
    for device in devices:
        ctx.hall.seats[device].order(wall_offset_s=offset)
    try:
        ctx.last(seconds)
    finally:
        for device in devices:
            ctx.hall.seats[device].order(wall_offset_s=0.0)
    return f"{','.join(devices)} clocks jumped {_jump(jump)} for {seconds:.0f} s"


def _jump(seconds: float | None) -> str:
    if seconds is None:
        return "to 1970"
    return f"by {seconds / 3600:+g} h" if abs(seconds) < DAY_S else f"by {seconds / DAY_S:+g} days"


def disk_full(ctx: Context) -> str:
    seconds = ctx.duration()
    ctx.hall.disk.fill()
    try:
        ctx.last(seconds)
    finally:
        ctx.hall.disk.free()
    return f"hub's disk full for {seconds:.0f} s"


def rotate_secrets(hall: ChaosHall, device: str) -> None:
    """Rotate ``device``'s broker password and MAC key while its terminal runs.

    Every terminal, the MicroPython board too, gets its new secrets over its own session
    (``haocha device rotate`` sends a ``rekey`` command; frames signed with the old key count during
    the grace period), so nothing more is done: no one visits it."""
    home = str(hall.hall.home)
    command = [sys.executable, "-m", "haocha", "device", "rotate", device, "--home", home]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"device rotate {device} failed: {done.stderr.strip()[-300:]}")


def rotate(ctx: Context) -> str:
    device = ctx.rng.choice(sorted(ctx.hall.seats))
    rotate_secrets(ctx.hall, device)
    return f"{device} rotated over its session (rekey)"


HALL_FAULTS: dict[str, Callable[[Context], str]] = {
    **KILLS,
    "net_cut": net_cut,
    "net_freeze": net_freeze,
    "net_delay": net_delay,
    "net_drop": net_drop,
    "clock_jump": clock_jump,
    "disk_full": disk_full,
    "rotate": rotate,
}


# -- the regional system (its own timeline: it does not touch the terminals' acks) ------------------
def regional_down(ctx: Context) -> str:
    seconds = ctx.duration()
    ctx.hall.regional("/sim/control", {"status": 503})
    try:
        ctx.wait(seconds)
    finally:
        ctx.hall.regional("/sim/control", {"status": 0})
    return f"down (503) for {seconds:.0f} s"


class Schedule:
    """Seeded order of the hall's faults: every kind once in a shuffled round, then again."""

    def __init__(self, rng: random.Random, kinds: list[str]) -> None:
        self.rng = rng
        self.kinds = sorted(kinds)
        self._round: list[str] = []

    def next(self) -> str:
        if not self._round:
            self._round = self.kinds[:]
            self.rng.shuffle(self._round)
        return self._round.pop()
