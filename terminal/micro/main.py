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
for name in ("wire", "journal", "mqtt", "clock", "core", "uplink"):  # names the port has already: no qstr
    __import__(name)
    gc.collect()

import sys  # noqa: E402
from time import sleep_ms  # noqa: E402
from json import dumps, loads  # noqa: E402

import mqtt  # noqa: E402
import uplink  # noqa: E402
from clock import Clock  # noqa: E402
from core import READY, REFUSED, Rules  # noqa: E402
from journal import Journal, JournalError  # noqa: E402
from wire import config_problem, row_problem, valid  # noqa: E402


class Firmware:
    """The board's terminal: the rules of ``core`` with this board's keys, journal and uplink.
    Single-threaded: the main loop calls everything."""

    def __init__(self, cfg, board):
        self.cfg, self.board = cfg, board
        self.clock = Clock(cfg.get("clock", "auto"), board.synced)
        self.journal = Journal(cfg.get("journal", "journal"), cfg["device"])
        t = cfg.get("timing", {})
        self.rules = r = Rules(cfg.get("mode", "free"), cfg.get("item"), cfg.get("staff"),
                               int(t.get("lockout_s", 10.0) * 1000), int(t.get("invite_s", 60.0) * 1000),
                               int(t.get("reason_s", 20.0) * 1000), int(t.get("thanks_s", 2.0) * 1000))
        r.levels = board.levels
        r.reasons = tuple(k for k in board.reasons if k in cfg.get("reasons", ()))
        self.uplink = up = uplink.Uplink(cfg, self.journal, self.clock, FRAME, self._command, board.log)
        c = cfg.get("conf")  # the hub's configuration in force, kept in config.json (conf.board)
        if c and c.get("version"):
            r.pending = c
            self.conf()
        up.net_ok = board.network_up
        # Where an update stands (update.json, kept by the boot step): reported in the state; the
        # release running, once one was installed from the hub (release.txt moves with the modules).
        self.pending = None  # the release of an update-order.json, or the record when it asks for a step
        try:
            with open("update.json") as f:
                t = f.read()
            up.update = loads(t)
            if '"phase": "verified"' in t or '"phase": "switched"' in t:  # to switch; on trial
                self.pending = up.update
            with open("release.txt") as f:
                uplink.FW = f.read()
        except (OSError, ValueError):
            pass
        self.running = True
        self.peak_alloc = self.peak_live = 0

    def press(self, key):
        """A key: (seq, row kind) once journaled and its feedback shown, or (None, None). Raises
        JournalError when the append failed (nothing accepted, no feedback). A row that breaks a
        rule of ``wire`` is not journaled: the press gets the refused feedback."""
        kind, value = key
        r, clock, j = self.rules, self.clock, self.journal
        now = clock.mono_ms()
        row = r.press(kind, value, now)
        if row is None:
            return None, None
        seq, wall = j.last_seq + 1, clock.wall_ms()  # the seq the append gives it
        body = {"kind": row[0], "window": self.cfg["window"], "boot": clock.boot_id, "mono_ms": now,
                "wall_ms": wall, "synced": clock.synced(wall)}
        body.update(row[1])
        if row[0] == "staff":
            body["case"] = j.local_case(seq)
        problem = row_problem(body, seq)
        if problem:
            self.board.log("press of %s %s not journaled: its row breaks the rule of field %s" % (kind, value, problem))
            self.board.show(REFUSED)
            return None, None
        j.append(body)
        self.board.show(r.committed(row[0], row[1], seq, now, body.get("case")))
        return seq, row[0]

    def _command(self, cmd):
        """A ``cmd`` from the hub (invite, cancel, staff; a config is held for :meth:`conf`; an
        update is kept for ``update_step``, which starts it when no invitation and no reason wait
        is live): None once applied, else the field that made it refused (then nothing changed)."""
        clock, r = self.clock, self.rules
        if isinstance(cmd, dict) and "version" in cmd:
            # A ``config``, the only command with a version (spelling "config" would cost the
            # string table a name): the loop takes it up once no rating is under way (conf.board).
            r.pending = cmd
            return None
        if isinstance(cmd, (bytes, memoryview)):  # an update: its bytes as they came (uplink), never parsed
            return __import__("update_step").handle(self, cmd)  # by its name: loaded for updates only
        problem, done = r.handle(cmd, lambda f, v: valid(v), clock.mono_ms(), clock.wall_ms() if clock.synced() else None)
        if problem:
            self.board.log("refused a command from the hub: bad %s" % problem)
        elif done == "cancel":
            self.board.show(r.resting())
        elif done == "invite":
            self.board.show(READY)
        return problem

    def conf(self):
        """The configuration from the hub held in ``rules.pending``, now that no rating is under
        way: ``conf.board`` checks it, puts it in force, keeps it in config.json. The module is
        loaded for that moment only, so its code stays off the heap; when even that finds no
        room, the hub sends it again (its state still names the older version)."""
        gc.collect()
        try:
            __import__("conf").board(self)
        except MemoryError:
            self.rules.pending = None
            self.board.log("no room to take up a configuration now: the hub sends it again")
        sys.modules.pop("conf", None)
        gc.collect()

    def summary(self, text=""):
        j = self.journal
        return '{"device":%s,"epoch":"%s","last_seq":%d,"acked":%d,"pending":%d%s}' % (
            dumps(j.device), j.epoch, j.last_seq, j.acked, j.last_seq - j.acked, text)

    def handle(self, action):
        kind, arg = action
        board = self.board
        if kind in ("level", "reason", "staff"):
            try:
                seq, row_kind = self.press(action)
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
        board, r, up = self.board, self.rules, self.uplink
        board.emit("started " + self.summary(',"cut_bytes":%d' % self.journal.cut_bytes))
        board.show(r.resting())
        while self.running:
            actions = board.poll()
            for action in actions:
                self.handle(action)
            try:
                if r.tick(self.clock.mono_ms()):
                    board.show(r.resting())
                if r.pending and r.invitation is None and r.awaiting_reason is None:
                    self.conf()
                up.step(0 if actions else 10)
                board.idle()
                # update_step by its name: no code and no names until an update. Before the switch
                # only once every event is acked (the step and a backlog at once overflow a 64 KB
                # heap); on trial (the record says switched) at once, so that every trial ends.
                if self.pending is not None and (self.journal.acked == self.journal.last_seq
                                                 or self.pending is up.update and up.update["phase"] == "switched"):
                    __import__("update_step").step(self)
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
    path = argv[1] if len(argv) > 1 else "config.json"
    try:
        f = open(path)
    except OSError:  # FAT cannot rename over a file: a power cut between removing and renaming
        f = open(path + ".tmp")
    with f:
        cfg = loads(f.read())
    cfg["file"] = path  # a rekey from the hub writes it again (uplink.Uplink.rekey)
    problem = config_problem(cfg)
    if problem:  # it would make rows the hub can only store as invalid: stop before any press
        print("log config.json refused: its %s would make rows the hub stores as invalid" % problem)
        return
    b = cfg.get("broker", {})
    if b.get("tls"):  # the TLS context's 3 KB in one piece, before the journal and the rest take the heap
        gc.collect()
        b["ctx"] = mqtt._context(b["tls"])  # the uplink takes it out: config.json keeps the file names
    if sys.platform == "linux":  # the unix port: the simulated board
        from sim_board import SimBoard as Board
    else:
        from board import Board
    fw = Firmware(cfg, Board(cfg))
    global FRAME
    FRAME = None  # the uplink's alone: a board about to restart gives it back (update_step)
    fw.run()


if __name__ == "__main__":
    main()
