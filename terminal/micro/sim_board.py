"""The board simulator for the unix port: fake keys and lights driven through stdin and stdout.

Lines in (one per line, from the test or ``micro_host.run_sim``)::

    press LEVEL        a rating key (very_satisfied ... very_dissatisfied)
    reason ID          a reason key
    staff              the staff key
    status             print a status line
    net down | net up  the "Wi-Fi" goes away / comes back (the link is dropped)
    quit               publish offline state, disconnect, exit 0

Lines out::

    started {json}         journal opened: device, epoch, last_seq, acked, pending, cut_bytes
    commit SEQ KIND        a key press committed journal row SEQ (after the append returned)
    nocommit               a key press that changed nothing
    error TEXT             a journal write failed: the press is not accepted
    show FEEDBACK          the lights changed (idle, ready, ask_reason, thanks, refused)
    status {json}          journal summary, connected flag, counters
    log TEXT               diagnostics

The journal is a folder on the host's disk; the network is the real ``socket`` module.
"""

import select
import sys

try:
    import os
except ImportError:  # pragma: no cover
    os = None

LEVELS = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"


class SimBoard:
    platform = "sim"

    def __init__(self, cfg, stdin=None, stdout=None):
        pins = cfg.get("pins", {})
        keys = pins.get("keys") or {}
        self.levels = tuple(k for k in LEVELS if k in keys) if keys else LEVELS
        self.reasons = tuple(cfg.get("reasons", ()))  # a simulated key for every reason
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.poller = select.poll()
        self.poller.register(self.stdin, select.POLLIN)
        self.lights = None
        self.net = True
        self.eof = False

    # -- outputs ----------------------------------------------------------------------------
    def emit(self, line):
        self.stdout.write(line)
        self.stdout.write("\n")
        try:
            self.stdout.flush()
        except AttributeError:
            pass

    def show(self, feedback):
        if feedback != self.lights:
            self.lights = feedback
            self.emit("show " + feedback)

    def log(self, text):
        self.emit("log " + text)

    # -- inputs -----------------------------------------------------------------------------
    def poll(self, max_lines=8):
        """Actions from the control lines available now (never waits)."""
        out = []
        while len(out) < max_lines and not self.eof and self.poller.poll(0):
            line = self.stdin.readline()
            if not line:
                self.eof = True  # the driver went away: stop cleanly
                out.append(("quit", ""))
                break
            parts = line.split()
            if not parts:
                continue
            word = parts[0]
            arg = parts[1] if len(parts) > 1 else ""
            if word == "press":
                out.append(("level", arg))
            elif word in ("reason", "staff", "status", "quit"):
                out.append((word, arg))
            elif word == "net":
                self.net = arg != "down"
                out.append(("net", arg))
            else:
                self.log("unknown control line %r" % line)
        return out

    # -- network and time -------------------------------------------------------------------
    def network_up(self):
        return self.net

    def synced(self):
        try:
            os.stat(TIMESYNC_FLAG)
            return True
        except OSError:
            return False

    def idle(self):
        pass
