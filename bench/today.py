"""The console's Today page over 10 million stored evaluations (issue 11: its data in ≤ 100 ms
server time).

Reuses ``bench/stats.py``'s hall (three years, 200 windows, 500 items, 400 staff; its generator
when the database is new) and adds what the page reads beyond the counters: the 200 windows
with names, a terminal per window with a retained state, its ack point and frame counters, and
bad-review tickets still open. "Today" is the last day of the generated data. Prints the median
and p99 of the data computation, and of the data with its HTML fragment.

    python bench/today.py [--events 10000000] [--db /tmp/haocha-today-bench.db] [--runs 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import DAYS, START, generate
from hub.config import HubConfig
from hub.pages.render import today_html
from hub.pages.today import today
from hub.store import Store
from hub.store import registry as reg

WINDOWS = 200
OPEN_TICKETS = 500
LAST_DAY = START + dt.timedelta(days=DAYS - 1)


def add_hall(store: Store, at_ms: int) -> None:
    """Windows, terminals with states, ack points, frame counters and open tickets, once."""
    if store.conn.execute("SELECT count(*) FROM windows").fetchone()[0]:
        return
    for i in range(WINDOWS):
        reg.add_window(store, f"W{i:03d}", f"第{i + 1}号综合窗口", f"部门{i % 12 + 1}")
        reg.insert_device(store, f"T{i:03d}", f"W{i:03d}", "modbus", "free", "00" * 32, "x")
    with store.transaction() as conn:
        for i in range(WINDOWS):
            device = f"T{i:03d}"
            last_seq = conn.execute(
                "SELECT max(seq) FROM events WHERE device = ? AND epoch = 'bench'", (device,)
            ).fetchone()[0]
            online = i % 17 != 0  # a few offline ones
            state = {"online": online, "fw": "1.4.0", "backlog": i % 3, "clock": "synced", "last_seq": last_seq,
                     "panel": {"ok": True, "detail": ""}}  # fmt: skip
            reg.set_device_state(store, device, json.dumps(state), at_ms - (i % 30) * 1000)
            conn.execute(
                "INSERT INTO epochs (device, epoch, upto, first_ms, last_ms) VALUES (?, 'bench', ?, 0, ?)",
                (device, last_seq, at_ms),
            )
            conn.execute(
                "INSERT INTO frame_counts (outcome, device, n, last_ms) VALUES ('stored', ?, ?, ?)",
                (device, last_seq, at_ms),
            )
        for n in range(OPEN_TICKETS):
            day = (LAST_DAY - dt.timedelta(days=n % 40)).isoformat()
            conn.execute(
                "INSERT INTO tickets (ticket_no, event_id, device, window, level, opened_ms, opened_day, updated_ms) "
                "VALUES (?, 0, ?, ?, 'dissatisfied', 0, ?, 0)",
                (f"bench-{n}", f"T{n % WINDOWS:03d}", f"W{n % WINDOWS:03d}", day),
            )


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p99 in milliseconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/haocha-today-bench.db"))
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    fresh = not args.db.exists()
    config = HubConfig(hall="bench")
    at_ms = int(dt.datetime.combine(LAST_DAY, dt.time(15), config.tz).timestamp() * 1000)
    with Store(args.db, create=True) as store:
        if fresh:
            generate(store, args.events)
        add_hall(store, at_ms)
        total = store.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        result = today(store, config, at_ms)
        print(
            f"{total:,} evaluations stored; Today {result.day}: {result.total['evaluations']:,} evaluations, "
            f"{len(result.windows)} windows, {result.terminals_total} terminals, {result.tickets_open} open tickets"
        )
        median, p99 = timed(lambda: today(store, config, at_ms), args.runs)
        print(f"Today data: median {median:.1f} ms, p99 {p99:.1f} ms over {args.runs} runs (target ≤ 100 ms)")
        median, p99 = timed(lambda: today_html(today(store, config, at_ms), config.tz, at_ms), args.runs)
        print(f"Today data + HTML: median {median:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
