"""One evaluation of every alert rule over a large store: what the hub's alert thread costs.

Events are generated inside SQLite with receive times spread over three years (ids growing with
them, as ingest writes them) and a busy last quarter hour; 200 windows, each with its terminal.
The rules only read recent events (a binary search on the id), the outbox through its partial
indexes and one row per terminal, so the time should not grow with the years stored.

    python bench/alerts.py [--events 2000000] [--db /tmp/haocha-alerts.db] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.alerts.engine import AlertEngine
from hub.config import HubConfig
from hub.store import Store, now_ms
from protocol.config import build

YEARS_MS = 3 * 365 * 86_400_000
RECENT = 3000  # ratings in the last 15 minutes, spread over the windows


def generate(store: Store, events: int, now: int) -> None:
    conn = store.conn
    conn.execute("BEGIN")
    for w in range(200):
        conn.execute("INSERT INTO windows (id, name) VALUES (?, ?)", (f"W{w:03d}", f"窗口{w}"))
        conn.execute(
            "INSERT INTO devices (id, window, kind, mode, mac_key, password_hash, created_ms, state) "
            "VALUES (?, ?, 'gpio', 'free', 'k', 'h', 0, '{\"online\": true, \"backlog\": 3}')",
            (f"T{w:03d}", f"W{w:03d}"),
        )
        conn.execute(
            "INSERT INTO epochs (device, epoch, upto, first_ms, last_ms) VALUES (?, 'e', 0, 0, ?)",
            (f"T{w:03d}", now - (w % 90) * 60_000),
        )
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?),
        r AS MATERIALIZED (SELECT i, abs(random()) AS a, abs(random()) AS b FROM n),
        t AS (SELECT i, a, b, CASE WHEN i >= ? THEN ? + (i - ?) * 300 ELSE ? + i * ? END AS ms FROM r)
        INSERT INTO events (device, epoch, seq, kind, status, level, window, t_ms, day, received_ms)
        SELECT printf('T%03d', a % 200), 'e', i + 1, 'rating', 'accepted',
               CASE WHEN b % 100 < 85 THEN 'satisfied' WHEN b % 100 < 93 THEN 'basic' ELSE 'dissatisfied' END,
               printf('W%03d', a % 200), ms, '2026-01-01', ms FROM t""",
        (events - 1, events - RECENT, now - RECENT * 300, events - RECENT, now - YEARS_MS, YEARS_MS // events),
    )
    conn.execute(
        "INSERT INTO outbox (record_id, kind, lane, body, status, created_ms) "
        "SELECT 'r' || id, 'evaluation', window, '{}', 'pending', received_ms FROM events WHERE id > ?",
        (events - 500,),
    )
    conn.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/haocha-alerts.db"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    fresh = not args.db.exists()
    now = now_ms()
    store = Store(args.db, create=True)
    if fresh:
        t0 = time.perf_counter()
        generate(store, args.events, now)
        print(f"generated {args.events:,} events in {time.perf_counter() - t0:.1f} s")
    config = build(HubConfig, {"hall": "H1", "upstream": {"url": "http://127.0.0.1:9"}}, "bench")
    engine = AlertEngine(config, args.db.parent, lambda: {"commit_failures": 0})
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        engine.tick(store, now)
        times.append((time.perf_counter() - t0) * 1000)
    n = store.conn.execute("SELECT max(id) FROM events").fetchone()[0]
    print(f"{n:,} events, {len(engine.rules)} rules: one evaluation median {statistics.median(times):.1f} ms, "
          f"max {max(times):.1f} ms ({args.runs} runs; the first also opens the alerts)")  # fmt: skip
    store.close()


if __name__ == "__main__":
    main()
