"""What the chaos bench checks once its hall has drained: nothing lost, nothing counted twice.

- SPEC section 9 for every device (:mod:`simulators.invariant`): the hub's counters and its
  events table against the journal on the terminal, each (epoch, seq) stored exactly once;
- the counters against the stored rows (ratings, refused ratings, ignored presses), no genuine
  press stored as ``invalid`` (that would leave it out of every count), and no case rated twice
  at its terminal (the hub refuses the second rating; the business system's case numbers are
  unique, so a refused rating means the terminal took one);
- the regional system against the hub: one record for each stored rating the hub sends
  upstream, none other, with the rating's level; no conflict, nothing rejected or parked;
- each terminal's ledger against its journal: every press the terminal confirmed is journaled,
  and nothing is journaled that no one pressed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hub.upstream.outbox import record_id
from protocol.levels import Level

from ..invariant import Verdict, section9
from .hall import ChaosHall


def final_verdict(hall: ChaosHall, journals: dict[str, dict[str, Any]]) -> Verdict:
    verdict = section9(hall.hall, journals)
    verdict.add(counters(hall))
    verdict.add(upstream(hall))
    verdict.add(ledgers(hall, journals))
    return verdict


def counters(hall: ChaosHall) -> Verdict:
    verdict = Verdict()
    with hall.hub_db() as db:
        rows = Counter(
            {
                (device, kind, status): n
                for device, kind, status, n in db.execute(
                    "SELECT device, kind, status, count(*) FROM events GROUP BY device, kind, status"
                )
            }
        )
    for row in hall.hall.stats(("device",))["rows"]:
        device = row["device"]
        stored = {
            "evaluations": sum(n for (d, k, s), n in rows.items() if d == device and k == "rating" and s != "refused"),
            "refused": rows[(device, "rating", "refused")],
            "ignored": sum(n for (d, k, _s), n in rows.items() if d == device and k == "ignored"),
        }
        for name, n in stored.items():
            verdict.double(row[name] - n, f"{device}: counters say {row[name]} {name}, {n} stored")
            verdict.lose(n - row[name], f"{device}: counters say {row[name]} {name}, {n} stored")
        verdict.lose(row["invalid"], f"{device}: {row['invalid']} events stored as invalid, left out of every count")
        # Case numbers are unique here: a refused rating is one the terminal took for a case it had
        # rated already (it lit "thank you"; the hub refused it as the case's second rating).
        verdict.double(row["refused"], f"{device}: {row['refused']} ratings of a case it had rated already")
    return verdict


def upstream(hall: ChaosHall) -> Verdict:
    """Every rating the hub stored and sends upstream arrived once, with its level."""
    verdict = Verdict()
    with hall.hub_db() as db:
        expected = {
            record_id(hall.hall.hall, device, epoch, seq): Level(level).score
            for device, epoch, seq, level in db.execute(
                "SELECT device, epoch, seq, level FROM events WHERE kind = 'rating' AND status != 'refused'"
            )
        }
        parked = db.execute("SELECT count(*) FROM outbox WHERE status = 'parked'").fetchone()[0]
    records = hall.regional("/sim/records")
    arrived = Counter(r["recordId"] for r in records)
    missing = sorted(set(expected) - set(arrived))
    verdict.lose(
        len(missing), f"upstream: {len(missing)} stored ratings never reached the regional system: {missing[:3]}"
    )
    extra = sorted(set(arrived) - set(expected))
    verdict.double(
        len(extra), f"upstream: {len(extra)} records at the regional system the hub never stored: {extra[:3]}"
    )
    repeated = sum(n - 1 for n in arrived.values())
    verdict.double(repeated, f"upstream: {repeated} records held twice by the regional system")
    wrong = [
        r["recordId"] for r in records if r["recordId"] in expected and r["satisfaction"] != expected[r["recordId"]]
    ]
    if wrong:
        verdict.problems.append(f"upstream: {len(wrong)} records with another level than the hub stored: {wrong[:3]}")
    summary = hall.regional("/sim/summary")
    if summary["conflicts"] or summary["rejected"] or parked:
        verdict.problems.append(
            f"upstream: {summary['conflicts']} conflicts and {summary['rejected']} rejections at the regional "
            f"system, {parked} records parked at the hub"
        )
    return verdict


def ledgers(hall: ChaosHall, journals: dict[str, dict[str, Any]]) -> Verdict:
    """confirmed presses ≤ journaled events ≤ presses made and not refused, per terminal."""
    verdict = Verdict()
    for device, seat in sorted(hall.seats.items()):
        tally, journaled = seat.ledger.tally(), int(journals[device]["last_seq"])
        verdict.lose(
            tally.committed - journaled,
            f"{device}: {tally.committed} presses confirmed committed, {journaled} journaled",
        )
        verdict.double(
            journaled - (tally.pressed - tally.refused),
            f"{device}: {journaled} events journaled from {tally.pressed - tally.refused} presses",
        )
    return verdict
