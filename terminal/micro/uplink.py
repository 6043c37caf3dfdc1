"""Carries journal rows to the hub and applies the hub's acks, as ``core.Window`` decides (the
same decisions as the CPython terminal's): rows leave the journal only when the hub's ``ack``
covers them; the client is handed a bounded window of rows; the window is sent again on
(re)connect, when the hub turns online and when the ack stalls. This module adds the board's I/O.

- A rotation (SPEC section 11): the hub's ``rekey`` command (:meth:`Uplink.rekey`) brings a new
  MAC key, its id and a broker password; they are written into ``config.json`` atomically (the
  password the broker takes now kept as ``previous_password``), then frames are MACed with the new
  key and name its id, as does the state. A login the broker refuses (CONNACK 4, 5) is tried at
  once with the other password; once in with the new one, the previous one is forgotten.
- Broker trouble is logged with the broker's host:port and the reason: at once, then every
  ``broker.report_s`` (60 s) while it lasts, not at every retry. Retries back off from 1 s to
  10 s; the backoff starts again only after a link stayed up for 30 s, so a broker that drops
  every link at once is not hammered.

Single-threaded: :meth:`Uplink.step` is called by the main loop and never blocks longer than its
``wait_ms`` plus the socket send timeout. Frames are built in one buffer allocated at start.
"""

from binascii import unhexlify
from json import dump, dumps, loads
from time import sleep_ms, ticks_add, ticks_diff, ticks_ms

from micropython import const

import mqtt
import wire
from core import Window
from journal import replace

FW = "micro-0.1.0"
# Names set by ``const`` with a leading underscore cost no RAM.
# Ceilings for a 64 KB heap, whatever the config asks for.
_MAX_WINDOW = const(200)
_MAX_BATCH = const(8)
# A frame is closed once it passes this many bytes (the buffer has room for one more event).
_FRAME_BYTES = const(2560)
# Reconnect backoff: doubles per failed attempt; back to the start once a link stayed up.
_BACKOFF_MS = const(1000)
_MAX_BACKOFF_MS = const(10000)
_STABLE_MS = const(30000)


class Uplink:
    def __init__(self, cfg, journal, clock, frame, on_command, log):
        self.cfg, self.journal, self.clock, self.out = cfg, journal, clock, frame
        self.on_command, self.log = on_command, log
        self.hall, self.device = cfg["hall"], cfg["device"]
        up = cfg.get("uplink", {})
        self.batch = max(1, min(int(up.get("batch", 50)), _MAX_BATCH))
        self.w = Window(max(1, min(int(up.get("window", 1000)), _MAX_WINDOW)), int(up.get("resend_s", 5.0) * 1000),
                        journal.epoch, journal.acked, clock.mono_ms())
        self.state_ms = int(up.get("state_s", 30.0) * 1000)
        self.mac = wire.Mac(unhexlify(cfg["key"]))
        p = "haocha/v1/%s/%s/" % (self.hall, self.device)
        self.t_ev, self.t_ack, self.t_cmd, self.t_state = p + "ev", p + "ack", p + "cmd", p + "state"
        self.t_hub = "haocha/v1/%s/hub/state" % self.hall
        b = cfg.get("broker", {})
        self.file = cfg.pop("file", "config.json")  # rewritten by a rekey: only what was read from it
        self.client = mqtt.Client("haocha-%s-%s" % (self.hall, self.device), b.get("host", "127.0.0.1"),
                                  int(b.get("port", 1883)), b.get("user") or self.device, b.get("password", ""),
                                  int(b.get("keepalive_s", 15)), (self.t_state, b'{"online":false}'),
                                  ((self.t_ack, 1), (self.t_cmd, 1), (self.t_hub, 1)), log, b.pop("ctx", None) or b.get("tls"))
        self.client.on_message = self._on_message
        self.report_ms = int(b.get("report_s", 60) * 1000)
        self.retry_at = ticks_ms()
        self.next_state = None
        self.backoff_ms = _BACKOFF_MS
        self.up_at = None  # when the link came up; None while it is down
        self.failures = 0  # failed attempts since the link was last up
        self.reported = None  # the trouble last logged, and when
        self.reported_at = 0
        self.net_ok = None  # () -> bool: the board says whether Wi-Fi is up
        self.update = None  # where an update stands: update.json's {release, phase, detail}

    def _on_message(self, topic, payload, retained):
        try:
            if topic == self.t_ack:
                ack, j = loads(payload), self.journal
                upto = ack.get("upto")
                if self.w.heard(upto, ack.get("epoch"), j.acked, j.last_seq):
                    self.log("hub acked seq %d beyond last_seq %d: ignored" % (upto, j.last_seq))
            elif topic == self.t_hub:
                self.w.online(loads(payload).get("online") is True)
            elif topic == self.t_cmd:
                if bytes(payload[:15]) == b'{"cmd":"update"':  # kept as it came, for the boot step:
                    self.on_command(payload)  # parsing 1 KB of escaped text takes 2 KB at once
                    return
                cmd = loads(payload)
                if cmd.get("cmd") == "rekey":  # the uplink's own business: the rules never see it
                    self.rekey(cmd)
                else:
                    self.on_command(cmd)
        except Exception as exc:  # a bad message is logged and dropped, never kills the loop
            self.log("ignored a bad message on %s: %r" % (topic, exc))

    def rekey(self, cmd=None):
        """Take up the hub's new MAC key, key id and broker password (``cmd``): checked, written
        into config.json (a temp file renamed over it: a power cut leaves the old or the new file),
        then in use. Without ``cmd``: logged in with the new password, the previous one is
        forgotten. A refused command changes nothing and is logged in one line."""
        cfg, c = self.cfg, self.client
        new, b = dict(cfg), dict(cfg["broker"])  # the config as it will be: in use once stored
        new["broker"] = b
        if cmd:
            kid, key, password = cmd.get("kid"), cmd.get("key"), cmd.get("password")
            why = "kid"  # the field that makes it refused (none is logged: they are secrets)
            if type(kid) is int and kid > cfg.get("key_id", 0):
                why = "key"
                if isinstance(key, str) and len(key) == 64 and not key.encode().strip(b"0123456789abcdef"):
                    why = "password"
                    if isinstance(password, str) and len(password) >= 16 and wire.valid(password):
                        why = None
            if why:
                self.log("refused new secrets from the hub: bad %s" % why)
                return
            new["key"], new["key_id"], b["password"], b["previous_password"] = key, kid, password, c.password
        else:
            del b["previous_password"]
        with open(self.file + ".tmp", "w") as f:
            dump(new, f)  # written as it is encoded: no copy of the file on the heap
            f.flush()
        replace(self.file + ".tmp", self.file)
        cfg.update(new)
        if cmd:  # the next login tries the new password first; this session goes on with the old one
            self.mac, c.password, self.next_state = wire.Mac(unhexlify(key)), password, None
            self.log("took up MAC key %d from the hub" % kid)

    def step(self, wait_ms=0):
        """Connect when due, handle what arrived (waiting at most ``wait_ms``), apply the ack,
        send what the window allows, publish the state when due."""
        c = self.client
        if c.state == mqtt.DOWN:
            if ticks_diff(ticks_ms(), self.retry_at) < 0 or (self.net_ok and not self.net_ok()):
                self._apply_ack()
                if wait_ms:
                    sleep_ms(wait_ms)
                return
            c.start()  # DOWN again at once when there is no address or no route
        if c.state != mqtt.DOWN and c.poll(wait_ms):
            self._linked()
        self._apply_ack()
        if c.connected:
            now = ticks_ms()
            self.w.rewind(self.journal.acked, self.clock.mono_ms())
            if self.backoff_ms > _BACKOFF_MS and ticks_diff(now, self.up_at) >= _STABLE_MS:
                self.backoff_ms = _BACKOFF_MS  # only a link that stayed up earns quick retries
            try:
                self._send_window()
                if self.next_state is None or ticks_diff(now, self.next_state) >= 0:
                    self.publish_state(True)
            except OSError:
                pass  # the client closed the link and says why in ``error``
        if c.state == mqtt.DOWN:
            self._failed()

    def _linked(self):
        c = self.client
        if self.failures:
            self.log("connected to %s:%d after %d failed attempts" % (c.host, c.port, self.failures))
        else:
            self.log("connected to %s:%d" % (c.host, c.port))
        self.up_at, self.failures, self.reported = ticks_ms(), 0, None
        self.w.resend_due = True
        self.next_state = None
        b = self.cfg["broker"]
        if b.get("previous_password") and c.password == b["password"]:
            self.rekey()  # in with the new password: the previous one is not needed again

    def _failed(self):
        """Log a lost link or a failed attempt (at once, then every ``report_ms`` while the same
        trouble lasts, not at every retry) and schedule the next attempt."""
        c, now = self.client, ticks_ms()
        why = c.error or "closed"
        if self.up_at is not None:
            self.log("lost the link to %s:%d: %s" % (c.host, c.port, why))
            self.up_at, self.reported, self.reported_at = None, why, now
        else:
            self.failures += 1
            b = self.cfg["broker"]
            if c.refused and b.get("previous_password"):  # a rotation under way: try the other password
                c.password = b["previous_password"] if c.password == b["password"] else b["password"]
                if self.failures == 1:  # at once, unlogged; both refused: logged and backed off below
                    self.retry_at = now
                    return
            if why != self.reported or ticks_diff(now, self.reported_at) >= self.report_ms:
                self.log("cannot connect to %s:%d: %s%s" % (
                    c.host, c.port, why, " (%d attempts so far)" % self.failures if self.failures > 1 else ""))
                self.reported, self.reported_at = why, now
        self.retry_at = ticks_add(now, self.backoff_ms)
        self.backoff_ms = min(self.backoff_ms * 2, _MAX_BACKOFF_MS)

    def _apply_ack(self):
        j, upto = self.journal, self.w.upto
        if upto > j.acked:
            j.ack(upto)
            self.w.ack(upto, self.clock.mono_ms())

    def _send_window(self):
        j, out = self.journal, self.out
        for _ in range(4):  # a few frames per step, then the loop reads keys again
            start, room = self.w.pending(j.acked, j.last_seq)
            if room <= 0:
                return
            out[:] = b""  # keeps its allocation: the buffer is reused, never regrown
            kid = self.cfg.get("key_id")  # names the key: the hub checks the MAC against that one
            out.extend(b'{"v":1,"kid":%d,"ev":[' % kid if kid else b'{"v":1,"ev":[')
            last = start
            for seq, ev in j.iter_rows(start, min(room, self.batch)):
                if last != start:
                    out.extend(b",")
                ev["v"], ev["epoch"], ev["seq"] = 1, j.epoch, seq
                ev["age_ms"] = self.clock.age_ms(ev.get("boot"), ev.get("mono_ms", 0))
                wire.put_event(out, self.mac, self.hall, self.device, ev)
                last, ev = seq, None
                if len(out) > _FRAME_BYTES:
                    break
            if last == start:
                return
            out.extend(b"]}")
            self.client.publish(self.t_ev, out)
            self.w.sent_upto = last

    def publish_state(self, online):
        j, u = self.journal, self.update  # update: the record of main (update.json), or None
        self.next_state = ticks_add(ticks_ms(), self.state_ms)
        s = ('{"online":%s,"fw":"%s","kind":"micro","mode":%s,"window":%s,"epoch":"%s","last_seq":%d,"acked":%d,'
             '"backlog":%d,"boot":"%s","clock":"%s","panel":{"ok":true,"detail":""}%s%s,"config":%s}') % (
            "true" if online else "false", FW, dumps(self.cfg.get("mode", "free")), dumps(self.cfg["window"]),
            j.epoch, j.last_seq, j.acked, j.last_seq - j.acked, self.clock.boot_id,
            "synced" if self.clock.synced() else "unsynced",
            ',"kid":%d' % self.cfg["key_id"] if self.cfg.get("key_id") else "",
            ',"update":%s' % dumps(u) if u else "",
            dumps(self.cfg.get("conf", {"version": 0})))  # the hub's configuration (conf.py): the hub reads
        # its version and the last refused, and drops the settings
        self.client.publish(self.t_state, s, True)

    def close(self):
        """Publish an offline state and disconnect (a clean stop: the will is not sent)."""
        if self.client.connected:
            try:
                self.publish_state(False)
            except OSError:
                pass
        self.client.disconnect()
