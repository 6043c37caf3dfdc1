"""SPEC section 9: for every device, the hub's count equals the ``last_seq`` in that device's
journal, and every event is stored exactly once.

The tests check it after each fault (``tests/invariant.py``), the chaos bench at the end of its run
(``bench/chaos.py``). Nothing here waits: the caller decides when the hall has caught up.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

from .hall import Hall


def events_by_device(hall: Hall) -> dict[str, int]:
    """The hub's counters: distinct events stored per device (``haocha stats --by device``)."""
    return {row["device"]: row["events"] for row in hall.stats(("device",))["rows"]}


@dataclasses.dataclass
class Verdict:
    """What a check found: events lost, events counted more than once, and why, one line each."""

    lost: int = 0
    twice: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.lost += other.lost
        self.twice += other.twice
        self.problems.extend(other.problems)

    def lose(self, n: int, why: str) -> None:
        if n > 0:
            self.lost += n
            self.problems.append(why)

    def double(self, n: int, why: str) -> None:
        if n > 0:
            self.twice += n
            self.problems.append(why)


def section9(hall: Hall, journals: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """Compare each device's journal summary (``epoch``, ``last_seq``) with what the hub stored:
    its events table (each (epoch, seq) from 1 to ``last_seq`` once) and its counters."""
    verdict = Verdict()
    counted = events_by_device(hall)
    for device, journal in sorted(journals.items()):
        verdict.add(device_verdict(device, journal, hall.stored_seqs(device), counted.get(device, 0)))
    return verdict


def device_verdict(device: str, journal: Mapping[str, Any], stored: list[tuple[str, int]], counted: int) -> Verdict:
    """One device: its journal summary, the (epoch, seq) its events table holds, its counters' events."""
    verdict = Verdict()
    epoch, last = journal["epoch"], int(journal["last_seq"])
    times = Counter(seq for e, seq in stored if e == epoch)
    missing = [seq for seq in range(1, last + 1) if seq not in times]
    verdict.lose(len(missing), f"{device}: {len(missing)} journaled events not stored (first seq {missing[:5]})")
    repeated = sum(n - 1 for n in times.values())
    verdict.double(repeated, f"{device}: {repeated} events stored more than once")
    unknown = [seq for seq in times if not 1 <= seq <= last] + [seq for e, seq in stored if e != epoch]
    verdict.double(len(unknown), f"{device}: {len(unknown)} stored events its journal never made")
    distinct = len(set(stored))
    verdict.double(counted - distinct, f"{device}: counters say {counted} events, {distinct} stored")
    verdict.lose(distinct - counted, f"{device}: counters say {counted} events, {distinct} stored")
    return verdict
