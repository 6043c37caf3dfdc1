"""Backlog drain (SPEC section 8: a 100,000-event backlog on one terminal drains in ≤ 60 s once the
hub is back).

The journal of one terminal is filled with 100,000 committed events while the hub is away (in one
transaction, to save the bench a hundred seconds of fsyncs: the drain is what is measured), then
the hub and ``haocha sim terminal --presses 0`` start and the time until the last event is acked
is printed, with the hub's events/s.

    python bench/backlog.py [--events 100000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.hall import Hall, json_line, wait_for
from terminal.clock import read_boot_id
from terminal.config import load
from terminal.journal import Journal


def fill(journal_path: Path, device: str, window: str, events: int) -> None:
    Journal(journal_path, device).close()  # creates meta and epoch as the terminal would
    now = int(time.time() * 1000)
    body = {
        "kind": "rating",
        "window": window,
        "level": "satisfied",
        "trigger": "free",
        "boot": read_boot_id(),
        "mono_ms": time.monotonic_ns() // 1_000_000,
        "wall_ms": now,
        "synced": True,
    }
    db = sqlite3.connect(journal_path)
    with db:
        db.executemany("INSERT INTO journal (body) VALUES (?)", ((json.dumps(body),) for _ in range(events)))
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with Hall(Path(tempfile.mkdtemp(prefix="haocha-bench-")) / "hall") as hall:
        config = load(hall.add_device("T01", "W01"))
        fill(config.journal_path, "T01", "W01", args.events)
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "hub connected to" in hall.log("hub"), 30, "the hub to connect")
        start = time.perf_counter()
        proc = hall.sim_terminal("T01", 0)
        assert proc.wait(timeout=600) == 0, hall.log("sim-T01")
        elapsed = time.perf_counter() - start
        summary = json_line(hall.log("sim-T01"))
        stored = hall.stats(("device",))["rows"][0]["events"]
    assert summary["acked"] == summary["last_seq"] == stored == args.events, (summary, stored)
    print(
        f"{args.events:,} backlogged events drained and acked in {elapsed:.1f} s "
        f"({args.events / elapsed:,.0f} events/s; target ≤ 60 s), stored once each: {stored:,}"
    )


if __name__ == "__main__":
    main()
