"""A scripted MQTT 3.1.1 "broker" on a real loopback socket, for what a broker may send that
Mosquitto never would (an oversize packet, a refused subscription, a malformed length, a silent
keepalive, a refused login).

Each accepted connection runs the test's script (a function of :class:`Connection`) on its own
thread, while a reader thread records every packet the client sends with its arrival time. Like a
broker, the reader answers QoS 1 PUBLISH with PUBACK and PINGREQ with PINGRESP unless the script
turned that off.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 0x10, 0x20, 0x30, 0x40, 0x80, 0x90
PINGREQ, PINGRESP, DISCONNECT = 0xC0, 0xD0, 0xE0


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def packet(kind: int, body: bytes = b"") -> bytes:
    return bytes([kind]) + varint(len(body)) + body


def publish(topic: str, payload: bytes, pid: int | None = None, retain: bool = False) -> bytes:
    """A PUBLISH packet: QoS 1 with ``pid``, QoS 0 without."""
    t = topic.encode()
    head = struct.pack("!H", len(t)) + t + (struct.pack("!H", pid) if pid is not None else b"")
    return packet(PUBLISH | (2 if pid is not None else 0) | int(retain), head + payload)


@dataclass(frozen=True)
class Packet:
    kind: int  # the first byte: type and flags
    body: bytes
    at: float  # time.monotonic() when it had fully arrived

    @property
    def type(self) -> int:
        return self.kind & 0xF0

    @property
    def pid(self) -> int:
        """Packet id: of a QoS 1 PUBLISH (after its topic), else the body's first two bytes."""
        at = 2 + len(self.topic.encode()) if self.type == PUBLISH else 0
        return int(struct.unpack_from("!H", self.body, at)[0])

    @property
    def topic(self) -> str:
        (n,) = struct.unpack_from("!H", self.body)
        return self.body[2 : 2 + n].decode()

    @property
    def payload(self) -> bytes:
        start = 2 + len(self.topic.encode()) + (2 if self.kind & 0x06 else 0)
        return self.body[start:]


class Connection:
    """One client connection: what it sent (:attr:`packets`), when it closed, and how to answer."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock, self.index = sock, index
        self.accepted_at = time.monotonic()
        self.closed_at: float | None = None
        self.packets: list[Packet] = []
        self.auto_puback = self.auto_pingresp = True
        #: Per thread, packets expect() already went past: the script's thread and the test's
        #: thread both expect packets, and one must never pass over a packet the other awaits.
        self._seen: dict[int, int] = {}
        self._changed = threading.Condition()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                kind = self._exactly(1)[0]
                length, shift = 0, 0
                while True:
                    b = self._exactly(1)[0]
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                p = Packet(kind, self._exactly(length), time.monotonic())
                self._answer(p)
                with self._changed:
                    self.packets.append(p)
                    self._changed.notify_all()
        except OSError:
            pass
        with self._changed:
            self.closed_at = time.monotonic()
            self._changed.notify_all()

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("closed by the client")
            data += chunk
        return data

    def _answer(self, p: Packet) -> None:
        if p.type == PUBLISH and p.kind & 0x06 and self.auto_puback:
            self.send(packet(PUBACK, struct.pack("!H", p.pid)))
        elif p.type == PINGREQ and self.auto_pingresp:
            self.send(packet(PINGRESP))

    def send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def expect(self, kind: int, timeout: float = 10.0) -> Packet:
        """The next packet of type ``kind`` the client sends (packets before it are passed over)."""
        deadline = time.monotonic() + timeout
        me = threading.get_ident()
        with self._changed:
            while True:
                for i in range(self._seen.get(me, 0), len(self.packets)):
                    if self.packets[i].type == kind:
                        self._seen[me] = i + 1
                        return self.packets[i]
                self._seen[me] = len(self.packets)
                left = deadline - time.monotonic()
                if self.closed_at is not None or left <= 0:
                    raise AssertionError(
                        f"connection {self.index}: no packet 0x{kind:02x} "
                        f"({'closed' if self.closed_at else 'timed out'}); got {self.types()}"
                    )
                self._changed.wait(left)

    def handshake(self, suback_codes: bytes = b"\x01\x01\x01", suback_pid_offset: int = 0) -> Packet:
        """CONNECT → CONNACK 0, SUBSCRIBE → SUBACK with ``suback_codes``; return the SUBSCRIBE."""
        self.expect(CONNECT)
        self.send(packet(CONNACK, b"\x00\x00"))
        sub = self.expect(SUBSCRIBE)
        self.send(packet(SUBACK, struct.pack("!H", (sub.pid + suback_pid_offset) & 0xFFFF) + suback_codes))
        return sub

    def wait_closed(self, timeout: float = 10.0) -> float:
        """When the client closed the connection (AssertionError if it did not within ``timeout``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.closed_at is not None, timeout):
                raise AssertionError(f"connection {self.index} still open after {timeout} s; got {self.types()}")
            assert self.closed_at is not None
            return self.closed_at

    def of_type(self, kind: int) -> list[Packet]:
        with self._changed:
            return [p for p in self.packets if p.type == kind]

    def types(self) -> list[str]:
        with self._changed:
            return [f"0x{p.kind:02x}" for p in self.packets]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class ScriptedBroker:
    """Listens on a free loopback port; every connection plays ``script``. A context manager."""

    def __init__(self, script: Callable[[Connection], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections: list[Connection] = []
        self.script_errors: list[str] = []
        self._lock = threading.Lock()

    def __enter__(self) -> ScriptedBroker:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _addr = self.listener.accept()
            except OSError:
                return
            with self._lock:
                conn = Connection(sock, len(self.connections))
                self.connections.append(conn)
            threading.Thread(target=self._play, args=(conn,), daemon=True).start()

    def _play(self, conn: Connection) -> None:
        try:
            self.script(conn)
        except (AssertionError, OSError) as exc:  # the client left mid-script: the test judges
            self.script_errors.append(f"connection {conn.index}: {exc}")

    def wait_connections(self, n: int, timeout: float) -> list[Connection]:
        deadline = time.monotonic() + timeout
        while len(self.connections) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.connections)} connections, not {n}, within {timeout} s")
            time.sleep(0.02)
        return self.connections[:n]
