"""Firmware entry point: read ``config.json``, open the journal, run the loop.

On a board, MicroPython runs ``main.py`` at boot (config.json next to it). On the unix port,
``micropython main.py PATH/config.json`` runs the same loop with the simulated board
(:mod:`sim_board`, driven through stdin and stdout).
"""

import gc
import json
import sys

# Import one module at a time with a collection in between: compiling a module needs a few KB
# of scratch heap, and a 64 KB heap cannot hold that on top of everything imported before it.
for _name in ("wire", "journal", "mqtt", "clock", "evaluator", "uplink"):
    __import__(_name)
    gc.collect()

from clock import Clock  # noqa: E402
from evaluator import REFUSED, Evaluator, handle_command  # noqa: E402
from journal import Journal, JournalError  # noqa: E402
from uplink import Uplink  # noqa: E402

IDLE_WAIT_MS = 10


def load_config(path="config.json"):
    with open(path) as f:
        return json.loads(f.read())


def make_board(cfg):
    if sys.platform == "linux":
        from sim_board import SimBoard

        return SimBoard(cfg)
    from board import Board

    return Board(cfg)


class Firmware:
    def __init__(self, cfg, board):
        self.cfg = cfg
        self.board = board
        self.clock = Clock(cfg.get("clock", "auto"), board.synced)
        self.journal = Journal(cfg.get("journal", "journal"), cfg["device"])
        self.evaluator = Evaluator(cfg, self.journal, board, self.clock)
        self.uplink = Uplink(cfg, self.journal, self.clock, on_command=self._command, log=board.log)
        self.uplink.net_ok = board.network_up
        self.running = True
        self.peak_alloc = 0
        self.peak_live = 0

    def _command(self, cmd):
        handle_command(self.evaluator, self.clock, cmd)

    def started(self):
        s = self.journal.summary()
        self.board.emit('started {"device":%s,"epoch":"%s","last_seq":%d,"acked":%d,"pending":%d,"cut_bytes":%d}' % (
            json.dumps(s["device"]), s["epoch"], s["last_seq"], s["acked"], s["pending"], self.journal.cut_bytes))
        self.board.show(self.evaluator._resting())

    def handle(self, action):
        kind, arg = action
        if kind in ("level", "reason", "staff"):
            try:
                seq, row_kind = self.evaluator.press(action)
            except JournalError as exc:
                self.board.emit("error %s" % exc)
                self.board.show(REFUSED)
                return
            self.board.emit("commit %d %s" % (seq, row_kind) if seq else "nocommit")
        elif kind == "status":
            self.status()
        elif kind == "net" and arg == "down":
            self.uplink.client.close()
        elif kind == "quit":
            self.running = False

    def status(self):
        """One ``status`` line: the journal, the link, and the heap (live after a collection, and
        the peaks: sampled every loop turn, garbage included, and live at status requests)."""
        gc.collect()
        live = gc.mem_alloc()
        if live > self.peak_live:
            self.peak_live = live
        s = self.journal.summary()
        self.board.emit(('status {"epoch":"%s","last_seq":%d,"acked":%d,"pending":%d,"connected":%s,'
                         '"mem_alloc":%d,"peak_alloc":%d,"peak_live":%d,"heap":%d}') % (
            s["epoch"], s["last_seq"], s["acked"], s["pending"], "true" if self.uplink.client.connected else "false",
            live, self.peak_alloc, self.peak_live, live + gc.mem_free()))

    def run(self):
        # Collect early and often: a small heap fails on fragmentation long before it is full.
        gc.collect()
        gc.threshold(max(2048, gc.mem_free() // 4))
        self.started()
        board, ev, up = self.board, self.evaluator, self.uplink
        while self.running:
            actions = board.poll()
            for action in actions:
                self.handle(action)
            ev.tick()
            up.step(0 if actions else IDLE_WAIT_MS)
            board.idle()
            used = gc.mem_alloc()
            if used > self.peak_alloc:
                self.peak_alloc = used
        self.close()

    def close(self):
        self.uplink.close()
        self.journal.close()


def main(argv=None):
    argv = sys.argv if argv is None else argv
    cfg = load_config(argv[1] if len(argv) > 1 else "config.json")
    Firmware(cfg, make_board(cfg)).run()


if __name__ == "__main__":
    main()
