"""A small MQTT 3.1.1 client for the firmware: no step blocks, and nothing the broker sends
allocates, without a bound.

``umqtt.simple`` waits for a PUBACK with no timeout and does not wrap packet ids past 65,535
(micropython-lib #94). This client instead:

- connects without blocking: :meth:`Client.start` begins a non-blocking TCP connect and
  :meth:`Client.poll` carries it through CONNECT/CONNACK and SUBSCRIBE/SUBACK, giving up after
  ``_TIMEOUT_MS``. It is up (``connected``) only once every subscription was granted: a refused
  one (SUBACK 0x80) fails the connection, so a terminal never sits online deaf to its ``ack``;
- sends with a deadline (``_TIMEOUT_MS``) and reads only what ``select.poll`` says is there;
- reads a PUBLISH over ``_MAX_PACKET`` in ``_CHUNK``-sized pieces and discards them, then acks
  it: a persistent session would otherwise redeliver it after every CONNACK, forever;
- refuses what no broker may send (a remaining length over 4 bytes, a packet type, size or id
  out of place): the link is closed and ``error`` says why;
- sends PINGREQ after half the keepalive without traffic either way, and calls the link dead when
  its PINGRESP has not come within another half;
- numbers packets 1..65535, wrapping, never 0, never an id still in its ring of unacked ids.

With ``tls`` (the files of the hall CA and, when the hall requires one, of the device's client
certificate and key) the link is TLS with ``CERT_REQUIRED``: the broker's certificate must be signed
by that CA and name ``host``. The handshake is carried by the socket's non-blocking reads and
writes, so it never holds up the main loop; a refused certificate fails the connection like a
refused login, ``error`` saying why in mbedtls' words.

Sessions are persistent (clean session 0), the will is retained QoS 1, publishes are QoS 1.
A PUBACK only frees its packet id: it proves nothing about delivery (SPEC section 3).

Names with a leading underscore set by ``const`` cost no RAM: the heap is 64 KB.
"""

import errno
import select
import socket
from array import array
from struct import pack, unpack_from
from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

# One name per line: MicroPython folds ``_X = const(n)`` away, but not a tuple of them.
DOWN = const(0)
_CONNECTING = const(1)
_WAIT_CONNACK = const(2)
_WAIT_SUBACK = const(3)
UP = const(4)
_TIMEOUT_MS = const(5000)
_RING = const(32)
_MAX_PACKET = const(2048)  # the longest invitation (three 64-character CJK texts) is under 800 bytes
_CHUNK = const(256)  # bytes per socket read
_READS = const(8)  # socket reads per poll at most: the main loop gets back to the keys
_EXPECTED = ("", "answer", "CONNACK", "SUBACK", "QoS 0/1 PUBLISH, PUBACK or PINGRESP")  # by state
# select's flags, the same on the unix port and on lwIP (extmod/modselect.c)
_POLLIN = const(0x01)
_POLLOUT = const(0x04)
_POLLBAD = const(0x18)


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


def _text(b):
    """A topic as str; one that is not UTF-8 as its repr (it matches no subscription)."""
    try:
        return bytes(b).decode()
    except UnicodeError:
        return repr(b)


def _context(cfg):
    """A TLS client context trusting only the CA in the file ``cfg[0]`` (PEM or DER), with this
    device's certificate and key (files ``cfg[1]``, ``cfg[2]``) when the hall requires them.
    (``cfg``: a name the firmware has already; a new one could cost 3.7 KB, docs/micro.md.)"""
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    with open(cfg[0], "rb") as f:
        ctx.load_verify_locations(f.read())
    if len(cfg) > 2:
        with open(cfg[1], "rb") as f, open(cfg[2], "rb") as g:
            ctx.load_cert_chain(f.read(), g.read())
    return ctx


def _connect_error(exc):
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused (no broker on that port?)"
    return "connect failed: %s" % errno.errorcode.get(exc.errno, exc)


class Client:
    def __init__(self, client_id, host, port, user, password, keepalive_s, will, subs=(), log=None, tls=()):
        self.client_id, self.host, self.port = client_id, host, port
        # an SSLContext (main.py makes it early, while the heap has 3 KB in one piece), or the files
        # to make it from; None: plain MQTT
        self.tls = _context(tls) if isinstance(tls, list) else tls or None
        self.user, self.password, self.will = user, password, will
        self.subs = subs  # ((topic, qos), ...): subscribed on every connection before it is up
        self.log = log
        self.keepalive_ms = keepalive_s * 1000
        self.state = DOWN
        self.sock = self.poller = None
        self.pid = 0
        self.inflight = array("H", bytes(2 * _RING))  # ids awaiting their PUBACK (0: free slot)
        self.ring = 0
        self.on_message = None  # (topic str, payload memoryview: read it before returning, retained bool)
        self.error = None
        self.refused = False  # the last login was refused for its user name or password (CONNACK 4, 5)
        self.buf = bytearray()  # received, not yet handled: at most a packet and a chunk
        self.rbuf = bytearray(_CHUNK)
        self.skip = self.skip_pid = 0  # bytes of an oversize PUBLISH still to drop; its id
        self.skip_note = ""
        self.out = b""  # TLS: the CONNECT waiting for the handshake
        self.since = self.last_tx = self.last_rx = 0
        self.ping_out = None  # when the unanswered PINGREQ left

    @property
    def connected(self):
        return self.state == UP

    def next_pid(self):
        """The next free packet id: 1..65535, wrapping, never 0, never one still in flight."""
        ring = self.inflight
        for _ in range(_RING + 1):
            self.pid = self.pid % 65535 + 1
            for i in range(_RING):
                if ring[i] == self.pid:
                    break
            else:
                return self.pid
        raise MQTTError("no free packet id")

    # -- connection -------------------------------------------------------------------------
    def start(self):
        """Begin connecting and return at once; :meth:`poll` completes the handshake. When the
        connection cannot even begin, the client is DOWN again and ``error`` says why."""
        self.close()
        self.error = None
        self.refused = False
        self.since = ticks_ms()
        self.buf[:] = b""
        self.out = b""
        self.skip = 0
        self.ping_out = None
        for i in range(_RING):
            self.inflight[i] = 0
        try:
            addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        except OSError as exc:
            self.error = "host name not resolved (%s)" % exc
            return
        try:
            self.sock = socket.socket()
            self.sock.setblocking(False)
            self.poller = select.poll()
            self.poller.register(self.sock, _POLLIN | _POLLOUT)
            self.state = _CONNECTING
            self.sock.connect(addr)
        except OSError as exc:
            if exc.errno not in (errno.EINPROGRESS, errno.EAGAIN, 119):  # 119: EINPROGRESS on lwIP
                self._fail(_connect_error(exc))

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
        return b"\x10" + _varint(len(body)) + body

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
        deadline = ticks_add(ticks_ms(), _TIMEOUT_MS)
        while len(mv):
            try:
                n = self.sock.write(mv)  # None when the send buffer is full: wait for room
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
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
        """Send a QoS 1 PUBLISH of ``payload`` (bytes, or str sent as UTF-8); return its packet id.
        MQTTError (link closed) when it fails."""
        if self.state != UP:
            raise MQTTError("not connected")
        if isinstance(payload, str):
            payload = payload.encode()  # the length counts bytes, not characters
        t = _str(topic)
        pid = self.next_pid()
        head = bytearray(b"\x33" if retain else b"\x32")
        head += _varint(len(t) + 2 + len(payload))
        head += t
        head += pack("!H", pid)
        # a fixed ring, no allocation per message: an id older than the ring is long acked
        self.inflight[self.ring] = pid
        self.ring = (self.ring + 1) % _RING
        try:
            self._write(head)
            self._write(payload)
        except OSError as exc:
            self._fail("publish: %s" % exc)
            raise MQTTError("publish failed")
        return pid

    # -- receiving --------------------------------------------------------------------------
    def poll(self, wait_ms=0):
        """Advance the connection and handle what arrived, waiting at most ``wait_ms``. True when
        the link came up during this call. Errors close the link (``error`` says why)."""
        if self.state == DOWN:
            return False
        try:
            return self._poll(wait_ms)
        except (OSError, ValueError) as exc:  # ValueError: the tls module refused the broker's certificate
            self._fail(str(exc).strip().replace("\n", " "))  # mbedtls' text comes in lines: one log line
        except MemoryError:  # bytes read and not kept: the stream cannot be trusted; the broker resends
            self._fail("out of memory while receiving")
        return False

    def _poll(self, wait_ms):
        if self.state != UP and ticks_diff(ticks_ms(), self.since) > _TIMEOUT_MS:
            raise MQTTError("no %s within %d s" % (_EXPECTED[self.state], _TIMEOUT_MS // 1000))
        events = self.poller.poll(wait_ms)
        ev = events[0][1] if events else 0
        if self.state == _CONNECTING:
            if ev & _POLLBAD:
                try:
                    self.sock.recv(1)  # fails with the connect's own error
                except OSError as exc:
                    raise MQTTError(_connect_error(exc))
                raise MQTTError("connection refused")
            if ev & _POLLOUT:
                self.state = _WAIT_CONNACK
                if self.tls is None:
                    self.poller.modify(self.sock, _POLLIN)
                    self._write(self._connect_packet())
                    return False
                # The handshake runs inside the socket's reads and writes, never blocking: the
                # CONNECT goes out once it is done, within the same 5 s as the CONNACK.
                self.poller.unregister(self.sock)
                self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host, do_handshake_on_connect=False)
                self.poller.register(self.sock, _POLLIN)
                self.out = self._connect_packet()
            return False
        if self.out:
            n = self.sock.write(self.out)  # None while the TLS handshake goes on
            if n:
                self.out = self.out[n:]
                self.last_tx = ticks_ms()
            return False
        was_up = self.state == UP
        for _ in range(_READS if ev & _POLLIN else 0):
            n = self.sock.readinto(self.rbuf)
            if n is None:  # TLS: a record not complete yet
                break
            if not n:
                raise MQTTError("connection closed by the broker")
            self.last_rx = ticks_ms()
            self.buf.extend(memoryview(self.rbuf)[:n])
            self._parse()
            if not self.poller.poll(0):
                break
        if ev & _POLLBAD and not ev & _POLLIN:
            raise MQTTError("connection lost")
        if self.state == UP:
            self._keepalive()
        return self.state == UP and not was_up

    def _keepalive(self):
        now, half = ticks_ms(), self.keepalive_ms // 2
        if half <= 0:
            return
        if self.ping_out is not None:
            if ticks_diff(now, self.ping_out) > half:
                raise MQTTError("no PINGRESP within %d ms: the link is dead" % half)
        elif ticks_diff(now, self.last_tx) >= half or ticks_diff(now, self.last_rx) >= half:
            self._write(b"\xc0\x00")
            self.ping_out = now

    def _parse(self):
        buf = self.buf
        while True:
            if self.skip:  # the rest of an oversize PUBLISH: dropped as it comes
                k = min(self.skip, len(buf))
                buf[0:k] = b""
                self.skip -= k
                if self.skip:
                    return
                if self.skip_pid:  # acked: the broker must not deliver it again
                    self._write(b"\x40\x02" + pack("!H", self.skip_pid))
                if self.log is not None:
                    self.log(self.skip_note)
            length, shift, i = 0, 0, 1
            while True:
                if i >= len(buf):
                    return
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if i > 4:
                    raise MQTTError("bad packet from the broker: remaining length over 4 bytes")
            kind = buf[0]
            if length > _MAX_PACKET:
                if not self._begin_skip(kind, i, length):
                    return
                continue
            if len(buf) < i + length:
                return
            try:  # handled where it lies: a copy of a 2 KB packet may not fit a fragmented heap
                self._handle(kind, memoryview(buf)[i:i + length])
            finally:
                buf[0:i + length] = b""

    def _begin_skip(self, kind, i, length):
        """Read the head (topic, packet id) of an oversize PUBLISH starting at ``buf[0]`` and
        set the whole packet to be dropped; False while its head has not arrived."""
        buf, qos2 = self.buf, kind & 6  # QoS x 2: the size of its packet id
        head = i + 2 + (buf[i] << 8 | buf[i + 1]) + qos2 if len(buf) >= i + 2 else 0
        if kind & 0xF0 != 0x30 or qos2 > 2 or self.state < _WAIT_SUBACK or head - i > _MAX_PACKET:
            raise MQTTError("bad packet from the broker: 0x%02x of %d bytes" % (kind, length))
        if not head or len(buf) < head:
            return False
        self.skip_pid = unpack_from("!H", buf, head - 2)[0] if qos2 else 0
        self.skip_note = "skipped a %d-byte message on %s: over the %d-byte limit" % (
            length, _text(bytes(buf[i + 2:min(head - qos2, i + 82)])), _MAX_PACKET)
        self.skip = i + length
        return True

    def _handle(self, kind, body):
        n, state = len(body), self.state
        if kind & 0xF0 == 0x30 and kind & 6 <= 2 and state >= _WAIT_SUBACK and n >= 2:  # PUBLISH
            qos2 = kind & 6  # QoS x 2: the size of its packet id
            pos = 2 + (body[0] << 8 | body[1]) + qos2
            if pos <= n:
                topic = _text(body[2:pos - qos2])
                try:
                    if self.on_message is not None:
                        self.on_message(topic, body[pos:], bool(kind & 1))
                finally:  # acked whatever the handler made of it: never redelivered forever
                    if qos2:
                        self._write(b"\x40\x02" + body[pos - 2:pos])
                return
        elif kind == 0x20 and n == 2 and state == _WAIT_CONNACK:
            if body[1]:
                why = ("", "unacceptable protocol version", "client id rejected", "server unavailable",
                       "bad user name or password", "not authorised", "?")[min(body[1], 6)]
                self.refused = body[1] in (4, 5)  # a password of a rotation the broker does not take (yet)
                raise MQTTError("the broker refused the login: %s (CONNACK %d)" % (why, body[1]))
            if self.subs:
                msg = bytearray(pack("!H", self.next_pid()))
                for topic, qos in self.subs:
                    msg += _str(topic)
                    msg.append(qos)
                self._write(b"\x82" + _varint(len(msg)) + msg)
                self.state = _WAIT_SUBACK
            else:
                self.state = UP
            return
        elif kind == 0x90 and state == _WAIT_SUBACK and n == 2 + len(self.subs) and body[0] << 8 | body[1] == self.pid:
            for i in range(2, n):  # the SUBSCRIBE took the last packet id: self.pid is its id
                if body[i] == 0x80:
                    self._write(b"\xe0\x00")
                    raise MQTTError("the broker refused the subscription to %s (SUBACK 0x80)" % self.subs[i - 2][0])
                if body[i] > 2:
                    break
            else:
                self.state = UP
                return
        elif kind == 0x40 and n == 2 and state >= _WAIT_SUBACK:  # PUBACK
            pid = unpack_from("!H", body)[0]
            for i in range(_RING):
                if self.inflight[i] == pid:
                    self.inflight[i] = 0
            return
        elif kind == 0xD0 and n == 0 and state == UP:  # PINGRESP
            self.ping_out = None
            return
        raise MQTTError("bad packet from the broker: 0x%02x of %d bytes (expected %s)" % (kind, n, _EXPECTED[state]))
