"""Chaos run (SPEC section 9, all faults together for a long time): a whole hall on this machine —
broker, hub, terminals of every kind in free and invited modes, the business-system and regional
simulators — under a seeded random schedule of kill -9 of terminals, hub and broker, network
cuts, black holes, delays and drops through a TCP fault proxy, broker restarts without their
persistence file, terminal clock jumps, the regional system failing and down for minutes, the
hub's disk filling up (as root) and device rotation. Then everything drains and is checked: the
section 9 invariant for every device, the regional system's records against the hub's ratings,
each terminal's presses against its journal. Prints a summary; exits 1 on any loss or double
count.

    python bench/chaos.py [--minutes 10] [--seed 1] [--terminals 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.chaos.report import ChaosOptions, render
from simulators.chaos.run import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long faults are made (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the presses")
    parser.add_argument("--terminals", type=int, default=20, help="terminals, kinds and modes in turn (default 20)")
    parser.add_argument("--rate", type=float, default=1.0, help="presses a second per terminal, at most")
    parser.add_argument("--fail-rate", type=float, default=0.05, help="the regional system's share of failures")
    parser.add_argument("--folder", type=Path, help="run folder (default: a new temporary one, kept)")
    parser.add_argument("--json", type=Path, help="also write the whole report as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the business system's warnings while the hub is down
    options = ChaosOptions(args.minutes, args.seed, args.terminals, args.rate, args.fail_rate, args.folder)
    report = run_chaos(options, echo=lambda line: print(line, file=sys.stderr, flush=True))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=1, ensure_ascii=False))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
