"""The board simulator for the unix port: fake keys and lights driven through stdin and stdout.

Lines in (from a test or ``terminal.micro_host``): ``press LEVEL``, ``reason ID``, ``staff``
(the keys), ``status``, ``net down`` / ``net up`` (Wi-Fi lost / back), ``quit`` (publish the
offline state, disconnect, exit 0; end of input does the same).

Lines out: ``started {json}`` (journal opened), ``commit SEQ KIND`` (a key press committed, after
the append returned), ``nocommit`` (a key press that changed nothing), ``error TEXT`` (the journal
write failed: not accepted), ``show FEEDBACK`` (the lights: idle, ready, ask_reason, thanks,
refused), ``status {json}``, ``log TEXT``.

The journal is a folder on the host's disk; the network is the real ``socket`` module.
"""

import os
import select
import sys

LEVELS = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")
WORDS = {"press": "level", "reason": "reason", "staff": "staff", "status": "status", "quit": "quit", "net": "net"}


class SimBoard:
    def __init__(self, cfg):
        keys = cfg.get("pins", {}).get("keys") or LEVELS
        self.levels = tuple(k for k in LEVELS if k in keys)
        self.reasons = tuple(cfg.get("reasons", ()))  # a simulated key for every reason
        self.poller = select.poll()
        self.poller.register(sys.stdin, select.POLLIN)
        self.lights = None
        self.net = True

    def emit(self, line):
        sys.stdout.write(line + "\n")

    def show(self, feedback):
        if feedback != self.lights:
            self.lights = feedback
            self.emit("show " + feedback)

    def log(self, text):
        self.emit("log " + text)

    def poll(self):
        """Actions from the control lines available now (at most 8; never waits)."""
        out = []
        while len(out) < 8 and self.poller.poll(0):
            parts = sys.stdin.readline().split()
            if not parts:
                out.append(("quit", ""))  # end of input: the driver went away
                self.poller = select.poll()  # nothing registered: never readable again
                break
            word = WORDS.get(parts[0])
            if word is None:
                self.log("unknown control line")
                continue
            out.append((word, parts[1] if len(parts) > 1 else ""))
            if word == "net":
                self.net = parts[1] != "down"
        return out

    def network_up(self):
        return self.net

    def synced(self):
        try:
            os.stat("/run/systemd/timesync/synchronized")
            return True
        except OSError:
            return False

    def idle(self):
        pass
