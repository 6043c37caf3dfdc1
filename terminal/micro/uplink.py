"""Carries journal rows to the hub and applies the hub's acks: the rules of ``terminal/uplink.py``.

- Rows leave the journal only when the hub's retained ``ack`` for this journal's epoch covers
  them; the broker's PUBACK proves nothing.
- The client is handed a bounded window of rows beyond the acked pointer, never the backlog.
- The window is sent again on (re)connect, when the hub's state turns online, and whenever the
  ack has not moved for ``resend_s`` while rows are pending.

Single-threaded: :meth:`Uplink.step` is called by the main loop and never blocks longer than its
``wait_ms`` plus the socket send timeout.
"""

import json
from time import sleep_ms, ticks_add, ticks_diff, ticks_ms

import mqtt
import wire
from journal import JournalError

FW_VERSION = "micro-0.1.0"
#: Ceilings for a 64 KB heap, whatever the config asks for.
MAX_WINDOW = 200
MAX_BATCH = 6


class Uplink:
    def __init__(self, cfg, journal, clock, on_command=None, log=None):
        self.cfg = cfg
        self.journal = journal
        self.clock = clock
        self.on_command = on_command
        self.log = log or (lambda msg: None)
        self.hall, self.device = cfg["hall"], cfg["device"]
        up = cfg.get("uplink", {})
        self.window = max(1, min(int(up.get("window", 1000)), MAX_WINDOW))
        self.batch = max(1, min(int(up.get("batch", 50)), MAX_BATCH))
        self.resend_ms = int(up.get("resend_s", 5.0) * 1000)
        self.state_ms = int(up.get("state_s", 30.0) * 1000)
        self.mac = wire.Mac(_unhex(cfg["key"]))
        prefix = "haocha/v1/%s/%s/" % (self.hall, self.device)
        self.t_ev, self.t_ack, self.t_cmd, self.t_state = prefix + "ev", prefix + "ack", prefix + "cmd", prefix + "state"
        self.t_hub = "haocha/v1/%s/hub/state" % self.hall
        b = cfg.get("broker", {})
        self.client = mqtt.Client("haocha-%s-%s" % (self.hall, self.device), b.get("host", "127.0.0.1"),
                                  int(b.get("port", 1883)), b.get("user") or self.device, b.get("password", ""),
                                  keepalive_s=int(b.get("keepalive_s", 15)),
                                  will=(self.t_state, b'{"online":false}', 1, True))
        self.client.on_message = self._on_message
        self.hub_online = None
        self.resend_due = True
        self.latest_ack = 0
        self.sent_upto = journal.acked
        self.last_progress = ticks_ms()
        self.next_state = None
        self.retry_at = ticks_ms()
        self.backoff_ms = 1000
        self.net_ok = lambda: True  # the board may say Wi-Fi is down
        self._out = bytearray()
        self.counts = {"published_events": 0, "resends": 0, "acks": 0, "commands": 0, "bad_messages": 0}

    # -- messages ---------------------------------------------------------------------------
    def _on_message(self, topic, payload, retained):
        try:
            if topic == self.t_ack:
                ack = json.loads(payload)
                upto = ack.get("upto")
                if ack.get("epoch") == self.journal.epoch and isinstance(upto, int) and upto > self.latest_ack:
                    self.latest_ack = upto
            elif topic == self.t_hub:
                online = json.loads(payload).get("online") is True
                if online and self.hub_online is not True:
                    self.resend_due = True  # the hub is back: what the broker held may be gone
                self.hub_online = online
            elif topic == self.t_cmd and self.on_command is not None:
                self.counts["commands"] += 1
                self.on_command(json.loads(payload))
        except Exception as exc:  # a bad message is logged and dropped, never kills the loop
            self.counts["bad_messages"] += 1
            self.log("ignored a bad message on %s: %r" % (topic, exc))

    # -- the loop ---------------------------------------------------------------------------
    def step(self, wait_ms=0):
        """Connect when due, handle what arrived (waiting at most ``wait_ms``), apply the ack,
        send what the window allows, publish the state when due."""
        c = self.client
        if c.state == mqtt.DOWN and ticks_diff(ticks_ms(), self.retry_at) >= 0 and self.net_ok():
            self._start_connect()
        if c.state == mqtt.DOWN:
            self._apply_ack()
            if wait_ms:
                sleep_ms(wait_ms)
            return
        if c.poll(wait_ms):
            self._on_connected()
        self._apply_ack()
        if c.state == mqtt.DOWN:
            self.log("link down: %s" % c.last_error)
            self._schedule_retry()
            return
        if not c.connected:
            return
        now = ticks_ms()
        if self.resend_due or self._stalled(now):
            self.resend_due = False
            self.sent_upto = self.journal.acked
            self.last_progress = now
            self.counts["resends"] += 1
        try:
            self._send_window()
            if self.next_state is None or ticks_diff(now, self.next_state) >= 0:
                self.publish_state(True)
        except mqtt.MQTTError as exc:
            self.log("send failed: %s" % exc)
            self._schedule_retry()

    def _start_connect(self):
        try:
            self.client.start()
        except OSError as exc:
            self.client.last_error = str(exc)
            self._schedule_retry()

    def _schedule_retry(self):
        self.retry_at = ticks_add(ticks_ms(), self.backoff_ms)
        self.backoff_ms = min(self.backoff_ms * 2, 10000)

    def _on_connected(self):
        self.backoff_ms = 1000
        self.client.subscribe([(self.t_ack, 1), (self.t_cmd, 1), (self.t_hub, 1)])
        self.resend_due = True
        self.next_state = None
        self.log("connected")

    def _stalled(self, now):
        pending = self.sent_upto > self.journal.acked
        return pending and self.hub_online is not False and ticks_diff(now, self.last_progress) >= self.resend_ms

    def _apply_ack(self):
        upto = self.latest_ack
        if upto <= self.journal.acked:
            return
        if upto > self.journal.last_seq:
            self.log("hub acked seq %d beyond last_seq %d: ignored" % (upto, self.journal.last_seq))
            self.latest_ack = self.journal.acked
            return
        if self.journal.ack(upto):
            self.counts["acks"] += 1
            self.last_progress = ticks_ms()
            if upto > self.sent_upto:
                self.sent_upto = upto

    def _send_window(self):
        j = self.journal
        for _ in range(4):  # a few batches per step, then let the loop read keys again
            start = max(self.sent_upto, j.acked)
            room = j.acked + self.window - start
            if room <= 0 or start >= j.last_seq:
                return
            out = self._out
            out[:] = b""  # keeps its allocation: the frame buffer is reused, not regrown
            out.extend(b'{"v":1,"ev":[')
            last = start
            for seq, body in j.iter_rows(start, min(room, self.batch)):
                if last != start:
                    out.extend(b",")
                body["v"] = wire.SCHEMA_VERSION
                body["epoch"] = j.epoch
                body["seq"] = seq
                body["age_ms"] = self.clock.age_ms(body.get("boot"), body.get("mono_ms", 0))
                wire.put_wire_event(out, self.mac, self.hall, self.device, body)
                last = seq
                body = None
            if last == start:
                return
            out.extend(b"]}")
            self.client.publish(self.t_ev, out, qos=1)
            self.counts["published_events"] += last - start
            self.sent_upto = last

    def publish_state(self, online):
        j = self.journal
        self.next_state = ticks_ms() + self.state_ms
        payload = ('{"online":%s,"fw":"%s","kind":"micro","mode":%s,"window":%s,"epoch":"%s","last_seq":%d,'
                   '"acked":%d,"backlog":%d,"boot":"%s","clock":"%s","panel":{"ok":true,"detail":""}}') % (
            "true" if online else "false", FW_VERSION, wire.json_str(self.cfg.get("mode", "free")),
            wire.json_str(self.cfg["window"]), j.epoch, j.last_seq, j.acked, j.pending, self.clock.boot_id,
            "synced" if self.clock.synced() else "unsynced")
        self.client.publish(self.t_state, payload.encode(), qos=1, retain=True)

    def close(self):
        """Publish an offline state and disconnect (a clean stop: the will is not sent)."""
        if self.client.connected:
            try:
                self.publish_state(False)
            except OSError:
                pass
        self.client.disconnect()


def _unhex(text):
    return bytes(int(text[i:i + 2], 16) for i in range(0, len(text), 2))
