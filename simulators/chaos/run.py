"""The chaos run: a hall under a seeded schedule of faults, then drained and checked.

The hall's faults come one after another (a lasting one sometimes with a ``kill -9`` inside it);
after each, the run measures its *recovery*: the time until every terminal's ack caught up with
what that terminal had journaled when the fault ended, polled on the terminals' journals. The
regional system fails on its own timeline meanwhile (its base ``fail_rate`` all along, and
outages of minutes); its recovery is the time until it holds every record the hub had queued when
it came back. At the end every fault is undone, the terminals stop pressing, everything drains,
and :mod:`.checks` decides.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.upstream.outbox import counts as outbox_counts

from ..hall import wait_for
from .checks import final_verdict
from .faults import HALL_FAULTS, Context, Finding, Schedule, regional_down
from .hall import ChaosHall
from .report import ChaosOptions, ChaosReport, FaultRecord


def run_chaos(options: ChaosOptions, echo: Callable[[str], None] = print) -> ChaosReport:
    folder = options.folder or Path(tempfile.mkdtemp(prefix="haocha-chaos-"))
    disk_mb = int(128 + 8 * options.minutes * options.terminals * options.rate / 20)  # ~2.5 MB a minute used
    with ChaosHall(folder, options.terminals, options.rate, options.seed, options.fail_rate, disk_mb, echo) as hall:
        report = ChaosReport(options, folder, {d: (s.kind, s.mode) for d, s in hall.seats.items()})
        if not hall.disk.can_fill:
            report.notes.append(
                "not root: the hub's disk cannot be filled (a tmpfs mount needs root); disk_full skipped"
            )
            echo(report.notes[-1])
        echo(f"hall in {folder}; broker 127.0.0.1:{hall.hall.broker_port}, hub http://127.0.0.1:{hall.hall.http_port}/")
        hall.start_all()
        wait_for(lambda: _every_terminal_acked(hall), 180, "every terminal's first ack")
        echo(f"[{hall.elapsed():6.1f}s] {len(hall.seats)} terminals pressing; faults for {options.minutes:g} min")
        _fault_phase(hall, options, report, echo)
        echo(f"[{hall.elapsed():6.1f}s] faults over: draining")
        journals = _drain(hall, options.drain_s, report)
        echo(f"[{hall.elapsed():6.1f}s] drained in {report.figures['drain_s']:.0f} s; checking")
        report.verdict.add(final_verdict(hall, journals))
        report.figures.update(_figures(hall, journals))
        report.figures["exits"] = [dataclasses.asdict(e) for e in hall.exits]
    return report


def _every_terminal_acked(hall: ChaosHall) -> bool:
    return all(j is not None and j["acked"] > 0 for j in hall.journals().values())


# -- the faults ---------------------------------------------------------------------------------
def _fault_phase(hall: ChaosHall, options: ChaosOptions, report: ChaosReport, echo: Callable[[str], None]) -> None:
    rng = random.Random(options.seed)
    stop = threading.Event()
    kinds = [k for k in HALL_FAULTS if hall.disk.can_fill or k != "disk_full"]
    regional = threading.Thread(
        target=_regional_timeline, args=(hall, options, random.Random(options.seed + 1), stop, report, echo)
    )
    regional.start()
    schedule, end = Schedule(rng, kinds), hall.elapsed() + options.minutes * 60
    try:
        while hall.elapsed() < end:
            stop.wait(rng.uniform(1.0, 2.0 + options.longest_s / 5))
            ctx = Context(hall, rng, min(options.longest_s, max(5.0, end - hall.elapsed())), stop)
            report.faults.append(_one_fault(ctx, schedule.next(), options.recovery_cap_s, report, echo))
    finally:
        stop.set()
        regional.join()


def _one_fault(ctx: Context, kind: str, cap_s: float, report: ChaosReport, echo: Callable[[str], None]) -> FaultRecord:
    hall = ctx.hall
    ctx.kinds.append(kind)
    start = hall.elapsed()
    echo(f"[{start:6.1f}s] {kind}")
    try:
        detail = HALL_FAULTS[kind](ctx)
    except Finding as exc:
        detail = str(exc)
        report.verdict.problems.append(f"{kind}: {exc}")
    except Exception as exc:  # the bench's own failure to make a fault: reported, the run goes on
        detail = f"could not be made: {exc}"
        report.verdict.problems.append(f"fault {kind} {detail}")
    lasted = hall.elapsed() - start
    recovery, backlog = _ack_recovery(hall, cap_s)
    shown = "not recovered" if recovery is None else f"recovered in {recovery:.1f} s"
    echo(f"          {detail}; {backlog} events unacked at its end, {shown}")
    return FaultRecord(ctx.kinds, detail, start, lasted, recovery, backlog)


def _ack_recovery(hall: ChaosHall, cap_s: float) -> tuple[float | None, int]:
    """(seconds until every terminal's ack reached what it had journaled now, None past ``cap_s``;
    the events journaled and not acked now, over every terminal)."""
    start = time.monotonic()
    journals = hall.journals()
    targets = {d: (j or {}).get("last_seq", 0) for d, j in journals.items()}
    backlog = sum(n - (journals[d] or {}).get("acked", 0) for d, n in targets.items())
    while time.monotonic() - start < cap_s:
        if all(n == 0 or ((j := journals[d]) is not None and j["acked"] >= n) for d, n in targets.items()):
            return time.monotonic() - start, backlog
        time.sleep(0.25)
        journals = hall.journals()
    return None, backlog


def _regional_timeline(
    hall: ChaosHall,
    options: ChaosOptions,
    rng: random.Random,
    stop: threading.Event,
    report: ChaosReport,
    echo: Callable[[str], None],
) -> None:
    """Outages of the regional system, on their own clock beside the hall's faults."""
    while not stop.wait(rng.uniform(options.longest_s / 2, 2 * options.longest_s)):
        ctx = Context(hall, rng, options.longest_s, stop, ["regional_down"])
        start = hall.elapsed()
        try:
            detail = regional_down(ctx)
        except Exception as exc:
            report.verdict.problems.append(f"fault regional_down could not be made: {exc}")
            return
        lasted = hall.elapsed() - start
        recovery = _upstream_recovery(hall, options.recovery_cap_s * 2)
        shown = "not recovered" if recovery is None else f"recovered in {recovery:.1f} s"
        echo(f"[{start:6.1f}s] regional_down: {detail}; {shown}")
        report.regional.append(FaultRecord(ctx.kinds, detail, start, lasted, recovery, 0))


def _queued_records(hall: ChaosHall) -> int:
    with hall.hub_db() as db:
        return int(db.execute("SELECT count(DISTINCT record_id) FROM outbox WHERE kind = 'evaluation'").fetchone()[0])


def _upstream_recovery(hall: ChaosHall, cap_s: float) -> float | None:
    """Seconds until the regional system holds as many records as the hub had queued now."""
    start = time.monotonic()
    target = _queued_records(hall)
    while time.monotonic() - start < cap_s:
        if hall.regional("/sim/summary")["records"] >= target:
            return time.monotonic() - start
        time.sleep(0.5)
    return None


# -- the end ------------------------------------------------------------------------------------
def _drain(hall: ChaosHall, timeout_s: float, report: ChaosReport) -> dict[str, dict[str, Any]]:
    """Undo every fault, stop pressing, wait until every journal is acked and the outbox is empty;
    stop the terminals. Returns their final journal summaries."""
    start = time.monotonic()
    hall.proxy.heal()
    hall.disk.free()
    hall.regional("/sim/control", {"status": 0})
    for name in ("regional", "broker", "hub"):
        hall.start(name)
    hall.stop_business()
    for seat in hall.seats.values():
        seat.order(press=False, wall_offset_s=0.0)
        hall.start(seat.process)
    try:
        wait_for(_Settled(hall), timeout_s, "every terminal's journal to be acked", 1.0)
        for seat in hall.seats.values():
            hall.kill(seat.process, signal.SIGTERM)
        left = max(30.0, timeout_s - (time.monotonic() - start))
        wait_for(lambda: _upstream_drained(hall), left, "the upstream outbox to drain", 1.0)
    except TimeoutError as exc:
        report.verdict.problems.append(f"the hall did not drain: {exc}")
    report.figures["drain_s"] = time.monotonic() - start
    journals = hall.journals()
    missing = sorted(d for d, j in journals.items() if j is None)
    if missing:
        raise RuntimeError(f"terminals without a journal at the end: {missing}")
    return {d: j for d, j in journals.items() if j is not None}


class _Settled:
    """Every journal acked to its end, and none grew since the last poll (a panel's press made
    before a restart may still arrive)."""

    def __init__(self, hall: ChaosHall) -> None:
        self.hall = hall
        self.seen: dict[str, Any] | None = None

    def __call__(self) -> bool:
        journals = self.hall.journals()
        done = all(j is not None and j["pending"] == 0 for j in journals.values())
        seen = {d: (j or {}).get("last_seq") for d, j in journals.items()}
        stable, self.seen = seen == self.seen, seen
        return done and stable


def _upstream_drained(hall: ChaosHall) -> bool:
    with hall.hub_db() as db:
        pending = outbox_counts(db)["pending"]  # ratings held behind a gap included
    return pending == 0 and hall.regional("/sim/summary")["records"] >= _queued_records(hall)


# -- figures --------------------------------------------------------------------------------
def _figures(hall: ChaosHall, journals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    with hall.hub_db() as db:
        ratings = db.execute("SELECT count(*) FROM events WHERE kind = 'rating'").fetchone()[0]
        frames = dict(db.execute("SELECT outcome, sum(n) FROM frame_counts GROUP BY outcome ORDER BY outcome"))
    tallies = [seat.ledger.tally() for seat in hall.seats.values()]
    return {
        "presses": sum(t.committed for t in tallies),
        "presses_unconfirmed": sum(t.pressed - t.committed - t.refused for t in tallies),
        "ratings": ratings,
        "events": sum(int(j["last_seq"]) for j in journals.values()),
        "frames": frames,
        "regional": hall.regional("/sim/summary"),
        "business": dict(hall.business.counts) if hall.business is not None else {},
        "proxy": dict(hall.proxy.counts),
        "hub_disk_mb": round(hall.disk.used_mb(), 1),
    }
