"""A small MQTT 3.1.1 client for the firmware, with no step that can block without a bound.

``umqtt.simple`` waits for a PUBACK with no timeout and does not wrap packet ids past 65,535
(micropython-lib #94). This client instead:

- connects without blocking: :meth:`Client.start` begins a non-blocking TCP connect and
  :meth:`Client.poll` carries it through CONNECT/CONNACK, giving up after ``TIMEOUT_MS``;
- sends with a deadline (``TIMEOUT_MS``) and reads only what ``select.poll`` says is there;
- keeps the link alive with PINGREQ and calls it dead when nothing arrived for 1.5 x keepalive;
- numbers packets 1..65535, wrapping, never 0, never an id still in its ring of unacked ids.

Sessions are persistent (clean session 0), the will is retained QoS 1, publishes are QoS 1.
A PUBACK only frees its packet id: it proves nothing about delivery (SPEC section 3).
"""

import select
import socket
from array import array
from struct import pack, unpack_from
from time import ticks_add, ticks_diff, ticks_ms

DOWN, CONNECTING, WAIT_CONNACK, UP = 0, 1, 2, 3
TIMEOUT_MS = 5000
RING = 32
MAX_PACKET = 4096  # hub commands, acks and states are a few hundred bytes; the heap is 64 KB
_POLLIN, _POLLOUT, _POLLBAD = select.POLLIN, select.POLLOUT, select.POLLERR | select.POLLHUP


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
    if isinstance(s, str):
        s = s.encode()
    return pack("!H", len(s)) + s


class Client:
    def __init__(self, client_id, host, port, user, password, keepalive_s, will):
        self.client_id, self.host, self.port = client_id, host, port
        self.user, self.password, self.will = user, password, will
        self.keepalive_ms = keepalive_s * 1000
        self.state = DOWN
        self.sock = self.poller = None
        self.pid = 0
        self.inflight = array("H", bytes(2 * RING))  # ids awaiting their PUBACK (0: free slot)
        self.ring = 0
        self.on_message = None  # (topic str, payload bytes, retained bool)
        self.error = None
        self.buf = bytearray()
        self.rbuf = bytearray(256)
        self.since = self.last_tx = self.last_rx = 0
        self.ping_out = False

    @property
    def connected(self):
        return self.state == UP

    def next_pid(self):
        """The next free packet id: 1..65535, wrapping, never 0, never one still in flight."""
        ring = self.inflight
        for _ in range(RING + 1):
            self.pid = self.pid % 65535 + 1
            for i in range(RING):
                if ring[i] == self.pid:
                    break
            else:
                return self.pid
        raise MQTTError("no free packet id")

    # -- connection -------------------------------------------------------------------------
    def start(self):
        """Begin connecting and return at once; :meth:`poll` completes the handshake."""
        self.close()
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.sock, _POLLIN | _POLLOUT)
        self.since = ticks_ms()
        self.state = CONNECTING
        self.buf[:] = b""
        for i in range(RING):
            self.inflight[i] = 0
        try:
            self.sock.connect(addr)
        except OSError as exc:
            if exc.errno not in (115, 11, 119):  # EINPROGRESS (Linux), EAGAIN, EINPROGRESS (lwIP)
                self._fail("connect: %s" % exc)

    def _connect_packet(self):
        flags = 0x2C  # will retained (0x20), will QoS 1 (0x08), will flag (0x04), clean session 0
        payload = _str(self.client_id) + _str(self.will[0]) + _str(self.will[1])
        if self.user:
            flags |= 0x80
            payload += _str(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        body = b"\x00\x04MQTT\x04" + bytes([flags]) + pack("!H", self.keepalive_ms // 1000) + payload
        self._write(b"\x10" + _varint(len(body)) + body)

    def _fail(self, why):
        self.error = why
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.poller = None
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
        deadline = ticks_add(ticks_ms(), TIMEOUT_MS)
        while len(mv):
            try:
                n = self.sock.send(mv)
            except OSError as exc:
                if exc.errno != 11:  # EAGAIN: the send buffer is full, wait for room
                    raise
                n = 0
            if n:
                mv = mv[n:]
            elif ticks_diff(deadline, ticks_ms()) <= 0:
                raise MQTTError("send timed out")
            else:
                self.poller.poll(20)
        self.last_tx = ticks_ms()

    def publish(self, topic, payload, retain=False):
        """Send a QoS 1 PUBLISH; return its packet id. MQTTError (link closed) when it fails."""
        if self.state != UP:
            raise MQTTError("not connected")
        t = _str(topic)
        pid = self.next_pid()
        head = bytearray(b"\x33" if retain else b"\x32")
        head += _varint(len(t) + 2 + len(payload))
        head += t
        head += pack("!H", pid)
        # a fixed ring, no allocation per message: an id older than the ring is long acked
        self.inflight[self.ring] = pid
        self.ring = (self.ring + 1) % RING
        try:
            self._write(head)
            self._write(payload)
        except OSError as exc:
            self._fail("publish: %s" % exc)
            raise MQTTError("publish failed")
        return pid

    def subscribe(self, topics):
        """SUBSCRIBE to ((topic, qos), ...); the SUBACK is taken by :meth:`poll`."""
        body = bytearray(pack("!H", self.next_pid()))
        for topic, qos in topics:
            body += _str(topic)
            body.append(qos)
        try:
            self._write(b"\x82" + _varint(len(body)) + body)
        except OSError as exc:
            self._fail("subscribe: %s" % exc)

    # -- receiving --------------------------------------------------------------------------
    def poll(self, wait_ms=0):
        """Advance the connection and handle what arrived, waiting at most ``wait_ms``. True when
        the link came up during this call. Errors close the link (``error`` says why)."""
        if self.state == DOWN:
            return False
        try:
            return self._poll(wait_ms)
        except OSError as exc:
            self._fail(str(exc))
            return False

    def _poll(self, wait_ms):
        if self.state != UP and ticks_diff(ticks_ms(), self.since) > TIMEOUT_MS:
            raise MQTTError("connect timed out")
        events = self.poller.poll(wait_ms)
        ev = events[0][1] if events else 0
        if self.state == CONNECTING:
            if ev & _POLLBAD:
                raise MQTTError("connection refused")
            if ev & _POLLOUT:
                self.poller.modify(self.sock, _POLLIN)
                self.state = WAIT_CONNACK
                self._connect_packet()
            return False
        if ev & _POLLIN:
            n = self.sock.readinto(self.rbuf)
            if not n:
                raise MQTTError("connection closed by the broker")
            self.buf.extend(memoryview(self.rbuf)[:n])
            self.last_rx = ticks_ms()
            self.ping_out = False
        elif ev & _POLLBAD:
            raise MQTTError("connection lost")
        was_up = self.state == UP
        self._parse()
        if self.state == UP:
            self._keepalive()
        return self.state == UP and not was_up

    def _keepalive(self):
        now, ka = ticks_ms(), self.keepalive_ms
        if ka <= 0:
            return
        if ticks_diff(now, self.last_rx) > ka * 3 // 2:
            raise MQTTError("no answer from the broker within 1.5 x keepalive")
        if not self.ping_out and (ticks_diff(now, self.last_tx) >= ka or ticks_diff(now, self.last_rx) >= ka):
            self._write(b"\xc0\x00")
            self.ping_out = True

    def _parse(self):
        buf = self.buf
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
            if length > MAX_PACKET:
                raise MQTTError("packet too large")
            if len(buf) < i + length:
                return
            kind = buf[0]
            body = bytes(memoryview(buf)[i:i + length])
            buf[0:i + length] = b""
            self._handle(kind, body)

    def _handle(self, kind, body):
        typ = kind & 0xF0
        if typ == 0x20:  # CONNACK
            if len(body) < 2 or body[1]:
                raise MQTTError("broker refused the connection (code %d)" % (body[1] if len(body) > 1 else -1))
            self.state = UP
            self.last_rx = ticks_ms()
        elif typ == 0x30:  # PUBLISH
            qos = (kind >> 1) & 3
            tlen = unpack_from("!H", body)[0]
            pos = 2 + tlen
            if qos:
                pos += 2
            if self.on_message is not None:
                self.on_message(body[2:2 + tlen].decode(), body[pos:], bool(kind & 1))
            if qos == 1:
                self._write(b"\x40\x02" + body[pos - 2:pos])
        elif typ == 0x40:  # PUBACK
            pid = unpack_from("!H", body)[0]
            for i in range(RING):
                if self.inflight[i] == pid:
                    self.inflight[i] = 0
        elif typ not in (0x90, 0xD0):  # SUBACK, PINGRESP
            raise MQTTError("unexpected packet type 0x%02x" % typ)
