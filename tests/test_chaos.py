"""The chaos run, short: a hall of eight terminals (each kind free and invited) under two minutes of
seeded faults (kill -9 of terminals, hub, writer and broker, network cuts, black holes, delays and
drops, a broker without its persistence file, clock jumps, the regional system down, the hub's
disk full as root, a rotation), then drained: nothing lost, nothing counted twice
(``bench/chaos.py`` runs the same for 10 or 30 minutes with 20 terminals)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.chaos.report import ChaosOptions, render
from simulators.chaos.run import run_chaos
from simulators.chaos.terminal import Ledger, Tally
from simulators.invariant import device_verdict


@pytest.mark.slow
def test_two_minutes_of_chaos_lose_nothing_and_count_nothing_twice(tmp_path: Path) -> None:
    lines: list[str] = []
    options = ChaosOptions(minutes=2.0, seed=12, terminals=8, rate=1.0, folder=tmp_path / "chaos", drain_s=300)
    report = run_chaos(options, echo=lines.append)
    summary = render(report)
    print("\n".join(lines) + "\n" + summary)  # shown when the test fails
    assert report.ok, summary
    assert report.verdict.lost == report.verdict.twice == 0
    assert report.figures["presses"] > 300 and report.figures["ratings"] > 300
    assert len(report.kinds()) >= 6, report.kinds()  # every kind comes once per shuffled round


E = "e1"


@pytest.mark.parametrize(
    ("stored", "counted", "lost", "twice"),
    [
        ([(E, 1), (E, 2), (E, 3)], 3, 0, 0),
        ([(E, 1), (E, 3)], 2, 1, 0),  # seq 2 never stored
        ([(E, 1), (E, 2), (E, 2), (E, 3)], 3, 0, 1),  # seq 2 stored twice
        ([(E, 1), (E, 2), (E, 3), (E, 4)], 4, 0, 1),  # an event the journal never made
        ([(E, 1), (E, 2), (E, 3), ("e0", 1)], 4, 0, 1),  # one of another epoch
        ([(E, 1), (E, 2), (E, 3)], 4, 0, 1),  # counted once more than stored
        ([(E, 1), (E, 2), (E, 3)], 2, 1, 0),  # stored, left out of the counters
    ],
)
def test_the_section_9_verdict_finds_every_loss_and_double(
    stored: list[tuple[str, int]], counted: int, lost: int, twice: int
) -> None:
    verdict = device_verdict("T01", {"epoch": E, "last_seq": 3}, stored, counted)
    assert (verdict.lost, verdict.twice) == (lost, twice), verdict.problems
    assert bool(verdict.problems) == bool(lost or twice)


def test_a_terminal_ledger_survives_kill_9_between_its_steps(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for step in (b"p", b"c", b"p", b"n", b"p"):  # committed, refused, cut short
        ledger.note(step)
    assert Ledger(tmp_path).tally() == Tally(pressed=3, committed=1, refused=1)
