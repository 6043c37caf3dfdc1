"""``stats`` over 10 million stored evaluations (SPEC section 8: ≤ 50 ms for a day, a month, a
quarter and a year).

The hall is shaped like a real one: three years, 200 windows with two staff each (400 staff),
each window serving ten of the 500 service items, levels weighted towards satisfied. Events are
generated inside SQLite and the counters built from them with the same grains the ingest path
writes (tests/test_hub_store.py checks that ingest counters equal a scan of the events). The
database is kept (``--db``) so later runs skip the generation.

    python bench/stats.py [--events 10000000] [--db /tmp/haocha-stats.db]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.stats import stats
from hub.store import Store
from hub.store.schema import TALLY_COLUMNS

START = dt.date(2023, 1, 1)
DAYS = 3 * 365


def generate(store: Store, events: int) -> None:
    """Events with a realistic shape, then their counters, all in SQL."""
    conn = store.conn
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?),
        r AS MATERIALIZED (SELECT i, abs(random()) AS a, abs(random()) AS b, abs(random()) AS c FROM n)
        INSERT INTO events (device, epoch, seq, kind, status, level, item, staff, window, trigger, boot, mono_ms,
                            wall_ms, synced, t_ms, t_source, day, received_ms, mac)
        SELECT printf('T%03d', a % 200), 'bench', i + 1, 'rating', 'accepted',
               CASE WHEN b % 100 < 60 THEN 'very_satisfied' WHEN b % 100 < 85 THEN 'satisfied'
                    WHEN b % 100 < 93 THEN 'basic' WHEN b % 100 < 98 THEN 'dissatisfied'
                    ELSE 'very_dissatisfied' END,
               printf('ITEM%03d', (a % 200 * 10 + c % 10) % 500), printf('S%03d', a % 200 * 2 + c % 2),
               printf('W%03d', a % 200), 'free', 'b', 0, 0, 1, 0, 'clock',
               date(?, '+' || (c % ?) || ' days'), 0, ''
        FROM r""",
        (events - 1, START.isoformat(), DAYS),
    )
    conn.execute("COMMIT")
    t1 = time.perf_counter()
    levels = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")
    sums = ", ".join(f"sum(level = '{lv}')" for lv in levels)
    cols = ", ".join(f"lv_{lv}" for lv in levels)
    conn.execute("BEGIN")
    for grain, width in (("d", 10), ("m", 7), ("y", 4)):
        conn.execute(f"""INSERT INTO tallies (grain, period, device, window, item, staff, events, {cols})
                         SELECT '{grain}', substr(day, 1, {width}), device, window, item, staff, count(*), {sums}
                         FROM events GROUP BY 2, 3, 4, 5, 6""")
    conn.execute("COMMIT")
    print(f"generated {events:,} events in {t1 - t0:.0f} s and their counters in {time.perf_counter() - t1:.0f} s")


def timed(store: Store, by: list[str], start: dt.date, end: dt.date, runs: int = 7) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        rows = len(stats(store, by, start, end)["rows"])
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/haocha-stats-bench.db"))
    args = parser.parse_args()
    fresh = not args.db.exists()
    with Store(args.db, create=True) as store:
        if fresh:
            generate(store, args.events)
        total = store.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        tallies = store.conn.execute("SELECT count(*) FROM tallies").fetchone()[0]
        print(f"{total:,} evaluations stored, {tallies:,} counter rows ({len(TALLY_COLUMNS)} counters each)")
        day = dt.date(2025, 6, 18)
        periods = {
            "day": (day, day),
            "month": (dt.date(2025, 6, 1), dt.date(2025, 6, 30)),
            "quarter": (dt.date(2025, 4, 1), dt.date(2025, 6, 30)),
            "year": (dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
            "odd range": (dt.date(2023, 11, 17), dt.date(2025, 2, 3)),
        }
        for by in (["window"], ["item"], ["staff"], ["window", "item"]):
            line = ", ".join(f"{name} {timed(store, by, *span)[0]:5.1f} ms" for name, span in periods.items())
            print(f"stats --by {','.join(by):12s} {line}  (median of 7; target ≤ 50 ms)")


if __name__ == "__main__":
    main()
