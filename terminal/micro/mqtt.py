"""A small MQTT 3.1.1 client for the firmware, with no step that can block without a bound.

``umqtt.simple`` waits for a PUBACK with no timeout and does not wrap packet ids past 65,535
(micropython-lib #94); this client instead:

- connects without blocking: :meth:`start` opens a non-blocking TCP connect, :meth:`poll` carries
  it through CONNECT/CONNACK; a connect that has not finished within ``timeout_ms`` is dropped;
- sends with a socket timeout (``timeout_ms``), and reads only what ``select.poll`` says is there;
- keeps the link alive with PINGREQ and calls it dead when nothing has arrived for 1.5 x the
  keepalive;
- numbers packets 1..65535, wrapping and skipping 0 and ids still in flight.

A PUBACK only frees its packet id: the broker's PUBACK proves nothing about delivery (SPEC
section 3), the hub's retained ``ack`` does.
"""

import errno
import select
import socket
import struct
from time import ticks_add, ticks_diff, ticks_ms

DOWN = 0
CONNECTING = 1  # TCP connect in progress
WAIT_CONNACK = 2
UP = 3

_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH = 0x30
_PUBACK = 0x40
_SUBSCRIBE = 0x82
_SUBACK = 0x90
_PINGREQ = 0xC0
_PINGRESP = 0xD0
_DISCONNECT = 0xE0
_MAX_PACKET = 16384


class MQTTError(OSError):
    pass


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


def _str(s):
    raw = s if isinstance(s, (bytes, bytearray)) else s.encode()
    return struct.pack("!H", len(raw)) + raw


class Client:
    def __init__(self, client_id, host, port, user=None, password=None, keepalive_s=15, timeout_ms=5000,
                 will=None, clean_session=False):
        self.client_id = client_id
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.keepalive_ms = keepalive_s * 1000
        self.timeout_ms = timeout_ms
        self.will = will  # (topic, payload, qos, retain)
        self.clean_session = clean_session
        self.state = DOWN
        self.sock = None
        self.poller = None
        self.pid = 0
        self.inflight = {}  # packet id -> True, until its PUBACK
        self.on_message = None  # (topic str, payload bytes, retained bool) -> None
        self.session_present = False
        self.last_error = None
        self._buf = bytearray()
        self._rbuf = bytearray(256)
        self._since = 0
        self._last_tx = 0
        self._last_rx = 0
        self._ping_out = False
        self.counts = {"connects": 0, "publishes": 0, "pubacks": 0, "received": 0, "pings": 0}

    # -- packet ids -------------------------------------------------------------------------
    def next_pid(self):
        """The next free packet id: 1..65535, wrapping, never 0, never one still in flight."""
        for _ in range(65535):
            self.pid = self.pid % 65535 + 1
            if self.pid not in self.inflight:
                return self.pid
        raise MQTTError("no free packet id")

    # -- connection -------------------------------------------------------------------------
    @property
    def connected(self):
        return self.state == UP

    def start(self):
        """Begin connecting (returns at once); :meth:`poll` finishes the handshake."""
        self.close()
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN | select.POLLOUT)
        self._since = ticks_ms()
        self.state = CONNECTING
        self._buf = bytearray()
        self.inflight = {}
        try:
            self.sock.connect(addr)
        except OSError as exc:
            if exc.errno not in (errno.EINPROGRESS, errno.EAGAIN):
                self._fail("connect: %s" % exc)

    def _send_connect(self):
        flags = 0x00 if not self.clean_session else 0x02
        body = bytearray(b"\x00\x04MQTT\x04")
        payload = bytearray(_str(self.client_id))
        if self.will is not None:
            topic, msg, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        if self.user:
            flags |= 0x80
            payload += _str(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        body.append(flags)
        body += struct.pack("!H", self.keepalive_ms // 1000)
        body += payload
        self._write(bytes([_CONNECT]) + _varint(len(body)) + body)

    def _fail(self, why):
        self.last_error = why
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.poller = None
        self.state = DOWN

    def disconnect(self):
        """Send DISCONNECT (the will is then not published) and close."""
        if self.state == UP:
            try:
                self._write(b"\xe0\x00")
            except OSError:
                pass
        self.close()

    # -- sending ----------------------------------------------------------------------------
    def _write(self, data):
        mv = memoryview(data)
        deadline = ticks_add(ticks_ms(), self.timeout_ms)
        while len(mv):
            try:
                n = self.sock.send(mv)
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                n = 0
            if n:
                mv = mv[n:]
                continue
            if ticks_diff(deadline, ticks_ms()) <= 0:
                raise MQTTError("send timed out")
            self.poller.poll(20)
        self._last_tx = ticks_ms()

    def publish(self, topic, payload, qos=1, retain=False):
        """Send a PUBLISH; return its packet id (0 for QoS 0). Raises MQTTError when not connected."""
        if self.state != UP:
            raise MQTTError("not connected")
        t = _str(topic)
        pid = self.next_pid() if qos else 0
        length = len(t) + len(payload) + (2 if qos else 0)
        head = bytearray([_PUBLISH | (qos << 1) | (1 if retain else 0)])
        head += _varint(length)
        head += t
        if qos:
            head += struct.pack("!H", pid)
            if len(self.inflight) >= 48:  # ids cycle through 65535: old entries cannot collide; bound the heap
                self.inflight = {}
            self.inflight[pid] = True
        try:
            self._write(head)
            self._write(payload)
        except OSError as exc:
            self._fail("publish: %s" % exc)
            raise MQTTError("publish failed")
        self.counts["publishes"] += 1
        return pid

    def subscribe(self, topics):
        """SUBSCRIBE to [(topic, qos), ...]; the SUBACK is taken by :meth:`poll`."""
        body = bytearray(struct.pack("!H", self.next_pid()))
        for topic, qos in topics:
            body += _str(topic)
            body.append(qos)
        try:
            self._write(bytes([_SUBSCRIBE]) + _varint(len(body)) + body)
        except OSError as exc:
            self._fail("subscribe: %s" % exc)
            raise MQTTError("subscribe failed")

    # -- receiving --------------------------------------------------------------------------
    def poll(self, wait_ms=0):
        """Advance the connection and handle what arrived, waiting at most ``wait_ms``.
        Returns True when the state changed to connected during this call."""
        if self.state == DOWN:
            return False
        try:
            return self._poll(wait_ms)
        except OSError as exc:
            self._fail(str(exc))
            return False

    def _poll(self, wait_ms):
        now = ticks_ms()
        if self.state in (CONNECTING, WAIT_CONNACK) and ticks_diff(now, self._since) > self.timeout_ms:
            raise MQTTError("connect timed out")
        events = self.poller.poll(wait_ms)
        ev = events[0][1] if events else 0
        if self.state == CONNECTING:
            if ev & (select.POLLERR | select.POLLHUP):
                raise MQTTError("connection refused")
            if ev & select.POLLOUT:
                self.poller.modify(self.sock, select.POLLIN)
                self.state = WAIT_CONNACK
                self._send_connect()
            return False
        if ev & select.POLLIN:
            n = self.sock.readinto(self._rbuf)
            if not n:
                raise MQTTError("connection closed by broker")
            self._buf.extend(memoryview(self._rbuf)[:n])
            self._last_rx = ticks_ms()
            self._ping_out = False
        elif ev & (select.POLLERR | select.POLLHUP):
            raise MQTTError("connection lost")
        was_up = self.state == UP
        self._parse()
        if self.state == UP:
            self._keepalive()
        return self.state == UP and not was_up

    def _keepalive(self):
        now = ticks_ms()
        if self.keepalive_ms <= 0:
            return
        if ticks_diff(now, self._last_rx) > self.keepalive_ms * 3 // 2:
            raise MQTTError("no answer from broker within 1.5 x keepalive")
        if not self._ping_out and (ticks_diff(now, self._last_tx) >= self.keepalive_ms
                                   or ticks_diff(now, self._last_rx) >= self.keepalive_ms):
            self._write(b"\xc0\x00")
            self._ping_out = True
            self.counts["pings"] += 1

    def _parse(self):
        buf = self._buf
        while len(buf) >= 2:
            length, shift, i = 0, 0, 1
            while True:
                if i >= len(buf):
                    return
                b = buf[i]
                length |= (b & 0x7F) << shift
                shift += 7
                i += 1
                if not b & 0x80:
                    break
                if shift > 21:
                    raise MQTTError("bad remaining length")
            if length > _MAX_PACKET:
                raise MQTTError("packet too large")
            if len(buf) < i + length:
                return
            kind = buf[0]
            body = bytes(memoryview(buf)[i:i + length])
            buf[0:i + length] = b""
            self._handle(kind, body)

    def _handle(self, kind, body):
        typ = kind & 0xF0
        if typ == _CONNACK:
            if len(body) < 2 or body[1] != 0:
                raise MQTTError("broker refused the connection (code %d)" % (body[1] if len(body) > 1 else -1))
            self.session_present = bool(body[0] & 1)
            self.state = UP
            self.counts["connects"] += 1
            self._last_rx = ticks_ms()
        elif typ == _PUBLISH:
            qos = (kind >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + tlen].decode()
            pos = 2 + tlen
            pid = 0
            if qos:
                pid = struct.unpack("!H", body[pos:pos + 2])[0]
                pos += 2
            self.counts["received"] += 1
            if self.on_message is not None:
                self.on_message(topic, body[pos:], bool(kind & 1))
            if qos == 1:
                self._write(b"\x40\x02" + struct.pack("!H", pid))
        elif typ == _PUBACK:
            self.inflight.pop(struct.unpack("!H", body[:2])[0], None)
            self.counts["pubacks"] += 1
        elif typ in (_SUBACK, _PINGRESP):
            pass
        else:
            raise MQTTError("unexpected packet type 0x%02x" % typ)
