"""Firmware entry point: read ``config.json``, open the journal, run the loop.

On a board, MicroPython runs ``main.py`` at boot (``config.json`` next to it). On the unix port,
``main.main(["main", PATH])`` runs the same loop with the simulated board (``sim_board``, driven
through stdin and stdout).
"""

import gc

# The frame buffer first, while the heap is whole: a 64 KB heap fragments too much to find a few
# KB in one piece later. Then one module at a time with a collection in between.
FRAME = bytearray(3584)
FRAME[:] = b""  # keeps the allocation
for _m in ("wire", "journal", "mqtt", "clock", "evaluator", "uplink"):
    __import__(_m)
    gc.collect()

import sys  # noqa: E402
from time import sleep_ms  # noqa: E402
from json import dumps, loads  # noqa: E402

import mqtt  # noqa: E402
from clock import Clock  # noqa: E402
from evaluator import REFUSED, Evaluator, handle_command  # noqa: E402
from journal import Journal, JournalError  # noqa: E402
from uplink import Uplink  # noqa: E402
from wire import config_problem  # noqa: E402


def make_board(cfg):
    if sys.platform == "linux":
        from sim_board import SimBoard

        return SimBoard(cfg)
    from board import Board

    return Board(cfg)


class Firmware:
    def __init__(self, cfg, board):
        self.board = board
        self.clock = Clock(cfg.get("clock", "auto"), board.synced)
        self.journal = Journal(cfg.get("journal", "journal"), cfg["device"])
        self.evaluator = Evaluator(cfg, self.journal, board, self.clock)
        self.uplink = Uplink(cfg, self.journal, self.clock, FRAME, self._command, board.log)
        self.uplink.net_ok = board.network_up
        self.running = True
        self.peak_alloc = self.peak_live = 0

    def _command(self, cmd):
        problem = handle_command(self.evaluator, self.clock, cmd)
        if problem:
            self.board.log("refused a command from the hub: bad %s" % problem)

    def summary(self, extra=""):
        j = self.journal
        return '{"device":%s,"epoch":"%s","last_seq":%d,"acked":%d,"pending":%d%s}' % (
            dumps(j.device), j.epoch, j.last_seq, j.acked, j.last_seq - j.acked, extra)

    def handle(self, action):
        kind, arg = action
        board = self.board
        if kind in ("level", "reason", "staff"):
            try:
                seq, row_kind = self.evaluator.press(action)
            except JournalError as exc:
                board.emit("error %s" % exc)
                board.show(REFUSED)
                return
            board.emit("commit %d %s" % (seq, row_kind) if seq else "nocommit")
        elif kind == "status":
            # the heap: live after a collection, and the peaks (sampled every loop turn, garbage
            # included; live at status requests)
            gc.collect()
            live = gc.mem_alloc()
            self.peak_live = max(self.peak_live, live)
            board.emit("status " + self.summary(
                ',"connected":%s,"mem_alloc":%d,"peak_alloc":%d,"peak_live":%d,"heap":%d' % (
                    "true" if self.uplink.client.connected else "false", live, self.peak_alloc,
                    self.peak_live, live + gc.mem_free())))
        elif kind == "net" and arg == "down":
            self.uplink.client.close()
        elif kind == "quit":
            self.running = False

    def run(self):
        # Collect early and often: a small heap fails on fragmentation long before it is full.
        gc.collect()
        gc.threshold(max(2048, gc.mem_free() // 4))
        board, ev, up = self.board, self.evaluator, self.uplink
        board.emit("started " + self.summary(',"cut_bytes":%d' % self.journal.cut_bytes))
        board.show(ev.resting())
        while self.running:
            actions = board.poll()
            for action in actions:
                self.handle(action)
            try:
                ev.tick()
                up.step(0 if actions else 10)
                board.idle()
            except Exception as exc:  # flash or network trouble: logged, the loop goes on
                board.log("loop error: %r" % exc)
                sleep_ms(100)
            used = gc.mem_alloc()
            if used > self.peak_alloc:
                self.peak_alloc = used
        up.close()
        self.journal.close()


def main(argv=None):
    argv = sys.argv if argv is None else argv
    with open(argv[1] if len(argv) > 1 else "config.json") as f:
        cfg = loads(f.read())
    problem = config_problem(cfg)
    if problem:  # it would make rows the hub can only store as invalid: stop before any press
        print("log config.json refused: its %s would make rows the hub stores as invalid" % problem)
        return
    b = cfg.get("broker", {})
    if b.get("tls"):  # the TLS context's 3 KB in one piece, before the journal and the rest take the heap
        gc.collect()
        b["tls"] = mqtt._context(b["tls"])
    Firmware(cfg, make_board(cfg)).run()


if __name__ == "__main__":
    main()
