"""Soak of the MicroPython firmware: 10,000 presses inside ``micropython -X heapsize=…``.

The real firmware runs with the simulated board against a real Mosquitto and the stand-in hub of
the tests (``tests/micro_harness.py``): every press is journaled, sent, acked and compacted, as
on a board. MQTT runs over TLS (the hall's default) in the simulation's TLS heap
(``terminal.micro_host.TLS_HEAP_SIZE``), or with ``--plain`` in plain TCP in its 64 KB heap;
``--heap`` tries another size. Prints the presses per second and the peak heap in use (``gc.mem_alloc()`` sampled
every turn of the firmware's loop, garbage not yet collected included; and the peak live heap
right after a collection), then checks that the hub stored every event exactly once.

    python bench/micro_soak.py [--presses 10000] [--seed 1] [--plain] [--heap 72k]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from micro_harness import KEY_HEX, Broker, StandInHub, make_config, wait_for  # noqa: E402

from terminal.micro_host import HEAP_SIZE, TLS_HEAP_SIZE, SimBoardProcess, journal_summary, write_sim_config  # noqa: E402

LEVELS = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")
PIPELINE = 32  # press lines in flight
REPORT_EVERY = 2000


def soak(presses: int, seed: int, tls: bool = True, heap: str | None = None) -> dict[str, float]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="haocha-soak-") as tmp_name:
        tmp = Path(tmp_name)
        with (
            Broker(tmp, tls=tls) as broker,
            StandInHub("H1", broker.port, {"M01": bytes.fromhex(KEY_HEX)}, broker.ca) as hub,
        ):
            config = make_config(tmp / "dev", broker.port, ca=broker.ca)
            with SimBoardProcess(write_sim_config(config, tmp, keep_lockout=False), heap) as board:
                board.start()
                wait_for(lambda: board.status()["connected"], 10, "the board's MQTT link")
                start = time.monotonic()
                sent = lines = commits = 0  # presses sent, key lines sent, commits seen
                report_at = REPORT_EVERY
                while commits < lines or sent < presses:
                    while sent < min(presses, report_at) and lines - commits < PIPELINE:
                        level = rng.choice(LEVELS)
                        board.send(f"press {level}")
                        lines += 1
                        if level in ("dissatisfied", "very_dissatisfied"):
                            board.send(f"reason {rng.choice(config.reasons)}")
                            lines += 1
                        sent += 1
                    if commits < lines:
                        board.expect("commit ", 30)
                        commits += 1
                    elif sent >= report_at:
                        status = board.status()
                        print(
                            f"  {sent} presses, journal pending {status['pending']}, "
                            f"heap live {status['mem_alloc']} B, peak in use {status['peak_alloc']} B",
                            flush=True,
                        )
                        report_at += REPORT_EVERY
                committed_s = time.monotonic() - start
                wait_for(lambda: journal_summary(config.journal_path)["pending"] == 0, 120, "the hub's acks")
                drained_s = time.monotonic() - start
                status = board.status()
                assert board.quit() == 0
                assert not board.loop_errors, board.loop_errors
            summary = journal_summary(config.journal_path)
            stored = hub.count("M01", summary["epoch"])
            assert stored == summary["last_seq"], f"hub stored {stored}, journal last_seq {summary['last_seq']}"
            assert hub.seqs("M01", summary["epoch"]) == list(range(1, summary["last_seq"] + 1))
            files = sorted(p.name for p in config.journal_path.iterdir())
    return {
        "presses": presses,
        "events": summary["last_seq"],
        "committed_s": committed_s,
        "drained_s": drained_s,
        "peak_alloc": status["peak_alloc"],
        "peak_live": status["peak_live"],
        "heap": status["heap"],
        "duplicates": hub.duplicates,
        "journal_files": len(files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="plain MQTT instead of TLS")
    parser.add_argument("--heap", default=None, help="-X heapsize (default: the simulation's for TLS or plain)")
    args = parser.parse_args()
    heap = args.heap or (HEAP_SIZE if args.plain else TLS_HEAP_SIZE)
    print(
        f"micropython -X heapsize={heap}, {'plain MQTT' if args.plain else 'TLS'}: {args.presses} presses", flush=True
    )
    r = soak(args.presses, args.seed, not args.plain, heap)
    print(f"presses: {r['presses']}  events (ratings + reasons): {r['events']}  all stored once at the hub")
    print(f"presses/s (committed to the journal): {r['presses'] / r['committed_s']:.0f}")
    print(f"presses/s (acked by the hub): {r['presses'] / r['drained_s']:.0f}  ({r['drained_s']:.1f} s)")
    print(f"peak heap in use (gc.mem_alloc, every loop turn): {r['peak_alloc']} B of {r['heap']} B")
    print(f"peak live heap (after gc.collect): {r['peak_live']} B")
    print(f"duplicates resent: {r['duplicates']}; journal files left: {r['journal_files']}")


if __name__ == "__main__":
    main()
