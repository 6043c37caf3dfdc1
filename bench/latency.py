"""Press → journal commit and press → hub ack latencies (SPEC section 8: p99 ≤ 5 ms and ≤ 100 ms).

A real terminal (gpiozero mock pins, SQLite journal with synchronous=FULL) talks to a real broker
and hub on loopback. Each press is timed from the key closing to the journal commit returning
(mock pins call the handler synchronously) and to the hub's ack covering its seq.

    python bench/latency.py [--presses 400] [--rate 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.hall import Hall, wait_for
from simulators.rig import TerminalRig


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fsync_floor(folder: Path, samples: int, rate: float) -> list[float]:
    """What one fsync of a small write costs on this disk: the floor under every commit."""
    out = []
    with open(folder / "fsync-probe", "wb") as f:
        for _ in range(samples):
            f.write(b"x" * 200)
            f.flush()
            start = time.perf_counter()
            os.fsync(f.fileno())
            out.append(time.perf_counter() - start)
            time.sleep(1 / rate)
    return out


def measure(presses: int, rate: float) -> tuple[list[float], list[float]]:
    with Hall(Path(tempfile.mkdtemp(prefix="haocha-bench-")) / "hall") as hall:
        hall.add_device("T01", "W01")
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "hub connected to" in hall.log("hub"), 20, "the hub to connect")
        rig = TerminalRig(hall, "T01")
        journal = rig.term.journal
        commit, ack = [], []
        try:
            for _ in range(presses):
                start = time.perf_counter()
                seq = rig.press("satisfied")
                commit.append(time.perf_counter() - start)
                while journal.acked < seq:
                    time.sleep(0.0002)
                ack.append(time.perf_counter() - start)
                time.sleep(max(0.0, start + 1 / rate - time.perf_counter()))
        finally:
            rig.close()
        return commit, ack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    commit, ack = measure(args.presses, args.rate)
    floor = fsync_floor(Path(tempfile.mkdtemp(prefix="haocha-bench-")), args.presses, args.rate)
    rows = (("bare fsync (floor)", floor, None), ("press → journal commit", commit, 5), ("press → hub ack", ack, 100))
    for name, values, target in rows:
        ms = [v * 1000 for v in values]
        print(
            f"{name:24s} p50 {statistics.median(ms):6.2f} ms  p99 {percentile(ms, 0.99):6.2f} ms  "
            f"max {max(ms):6.2f} ms" + (f"  (target p99 ≤ {target} ms, {len(ms)} presses)" if target else "")
        )


if __name__ == "__main__":
    main()
