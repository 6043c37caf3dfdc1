"""Memory of the terminal and the hub (SPEC section 8: terminal RSS ≤ 40 MB; hub RSS ≤ 100 MB with
200 terminals).

The terminal figure is the peak RSS (VmHWM) of ``haocha sim terminal``: the real terminal program
with its journal, uplink and mock-pin panel, plus the simulator driving it. The hub figure is the
peak RSS of ``haocha hub run``, its daemon and writer processes summed, while a load generator
keeps 200 terminal sessions connected and pressing, and the HTTP API is polled.

    python bench/rss.py [--terminals 200] [--seconds 30] [--rate 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.hall import Hall, child_pids, peak_rss_mb, port_open, wait_for
from simulators.load import LoadGenerator


def terminal_rss(hall: Hall) -> float:
    hall.add_device("T000", "W000")
    proc = hall.sim_terminal("T000", 300, 50)
    peak = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, peak_rss_mb(proc.pid))
        except (OSError, RuntimeError):
            break  # it exited between poll() and the read
        time.sleep(0.2)
    assert proc.wait(30) == 0, hall.log("sim-T000")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="presses a second over all terminals")
    args = parser.parse_args()
    with Hall(Path(tempfile.mkdtemp(prefix="haocha-bench-")) / "hall") as hall:
        configs = [hall.add_device(f"T{i:03d}", f"W{i:03d}") for i in range(1, args.terminals + 1)]
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: port_open(hall.http_port), 30, "the hub")
        load = LoadGenerator(configs, args.rate)
        load.start()
        wait_for(load.connected, 60, "every terminal session to connect")
        made = load.press_for(args.seconds)
        stats = urllib.request.Request(
            f"http://127.0.0.1:{hall.http_port}/api/v1/stats?by=window",
            headers={"Authorization": f"Bearer {hall.config.http.token}"},
        )
        for _ in range(5):
            urllib.request.urlopen(stats, timeout=30).read()
        wait_for(load.all_acked, 120, "every press to be acked")
        daemon = hall.procs["hub"].pid
        parts = [peak_rss_mb(pid) for pid in [daemon, *child_pids(daemon)]]  # daemon + writer
        hub_peak = sum(parts)
        load.close()
        term_peak = terminal_rss(hall)
    print(
        f"hub peak RSS {hub_peak:.1f} MB (daemon + writer: {' + '.join(f'{p:.1f}' for p in parts)}) with "
        f"{args.terminals} terminal sessions, {made} presses in {args.seconds:.0f} s (target ≤ 100 MB)"
    )
    print(f"terminal peak RSS {term_peak:.1f} MB (haocha sim terminal: terminal program + simulator; target ≤ 40 MB)")


if __name__ == "__main__":
    main()
