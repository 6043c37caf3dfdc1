"""What a chaos run was asked to do, what happened, and the summary it prints."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from ..invariant import Verdict


@dataclasses.dataclass(frozen=True)
class ChaosOptions:
    minutes: float = 10.0  #: how long faults are made (the drain comes after)
    seed: int = 1
    terminals: int = 20
    rate: float = 1.0  #: presses a second per terminal, at most (invited: one per invitation)
    fail_rate: float = 0.05  #: the regional system's share of failed requests, all along
    folder: Path | None = None  #: run folder (default: a new temporary one)
    drain_s: float = 600.0  #: longest wait for the hall to drain at the end

    @property
    def longest_s(self) -> float:
        """Longest lasting fault (a network cut, a full disk, the regional system down): a tenth
        of the run, within 8 s .. 3 min."""
        return min(180.0, max(8.0, self.minutes * 6))

    @property
    def recovery_cap_s(self) -> float:
        """Longest wait for a recovery before the fault counts as not recovered."""
        return max(60.0, 2 * self.longest_s)


@dataclasses.dataclass
class FaultRecord:
    kinds: list[str]  #: the fault, and any kill -9 made in its middle
    detail: str
    at_s: float
    lasted_s: float
    recovery_s: float | None  #: None: not recovered within the cap
    backlog: int  #: events journaled and not yet acked when it ended, over every terminal


@dataclasses.dataclass
class ChaosReport:
    options: ChaosOptions
    folder: Path
    terminals: dict[str, tuple[str, str]]  #: device → (kind, mode)
    faults: list[FaultRecord] = dataclasses.field(default_factory=list)
    regional: list[FaultRecord] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    verdict: Verdict = dataclasses.field(default_factory=Verdict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.verdict.problems and self.verdict.lost == 0 and self.verdict.twice == 0

    def kinds(self) -> Counter[str]:
        return Counter(k for f in self.faults + self.regional for k in f.kinds)

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in data["options"].items()}
        data["folder"] = str(self.folder)
        data["ok"] = self.ok
        return data


def _p50_max(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} s / {max(values):.1f} s"


def _count(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())) or "none"


def render(report: ChaosReport) -> str:
    """The summary a person reads: presses, faults by kind, lost, counted twice, recovery."""
    o, f = report.options, report.figures
    kinds = Counter(kind for kind, _mode in report.terminals.values())
    modes = Counter(mode for _kind, mode in report.terminals.values())
    recovered = [r.recovery_s for r in report.faults if r.recovery_s is not None]
    stuck = [r for r in report.faults if r.recovery_s is None]
    lines = [
        f"chaos run: seed {o.seed}, {o.minutes:g} min of faults, {len(report.terminals)} terminals "
        f"({_count(dict(kinds))}; {_count(dict(modes))}), at most {o.rate:g} presses/s each, "
        f"regional fail rate {o.fail_rate:g}",
        f"presses: {f.get('presses', 0):,} confirmed by their terminal ({f.get('presses_unconfirmed', 0):,} cut short "
        f"by a kill); {f.get('events', 0):,} events journaled, {f.get('ratings', 0):,} of them ratings",
        f"faults: {sum(report.kinds().values())} — {_count(dict(report.kinds()))}",
        f"lost: {report.verdict.lost}",
        f"counted twice: {report.verdict.twice}",
        f"recovery (every terminal's ack caught up), p50 / max: {_p50_max(recovered)} over {len(recovered)} faults"
        + (f"; NOT recovered within {o.recovery_cap_s:.0f} s: {len(stuck)}" if stuck else ""),
    ]
    by_kind: dict[str, list[float]] = {}
    for record in report.faults:
        if record.recovery_s is not None:
            by_kind.setdefault("+".join(record.kinds), []).append(record.recovery_s)
    lines += [f"  {kind:<28} n={len(v):<3} {_p50_max(v)}" for kind, v in sorted(by_kind.items())]
    regional = f.get("regional", {})
    up = [r.recovery_s for r in report.regional if r.recovery_s is not None]
    lines += [
        f"upstream: {regional.get('records', 0):,} records at the regional system, one per stored rating sent "
        f"upstream; {regional.get('duplicates', 0):,} resends counted as duplicates, {regional.get('failed', 0):,} "
        f"requests failed, {regional.get('conflicts', 0)} conflicts; caught up after an outage, p50 / max: "
        f"{_p50_max(up)} over {len(up)}",
        f"hub frames: {_count(f.get('frames', {}))}",
        f"business system (HTTP status → calls): {_count(f.get('business', {}))}",
        "processes that exited by themselves: "
        + (", ".join(f"{e['name']} ({e['code']}) at {e['at_s']:.0f} s" for e in f.get("exits", [])) or "none"),
        f"drained in {f.get('drain_s', 0):.0f} s after the last fault; hub disk used {f.get('hub_disk_mb', 0)} MB",
        *report.notes,
    ]
    if report.verdict.problems:
        lines.append("PROBLEMS:")
        lines += [f"  {p}" for p in report.verdict.problems]
    lines.append("result: " + ("OK, nothing lost, nothing counted twice" if report.ok else "FAILED"))
    return "\n".join(lines)
