"""The chaos bench's TCP fault proxy against a real echo server on loopback: a clean relay (TLS
too), and each fault — cut, freeze, delay, drop — on one route or all, then healed."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.faultproxy import FaultProxy
from simulators.hall import wait_for


class EchoServer:
    """Echoes every byte on each accepted connection; optionally behind TLS."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo.port) as p:
        p.add_route("T1")
        p.add_route("T2")
        yield p


def connect(proxy: FaultProxy, route: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port(route)), timeout=10)
    sock.settimeout(10)
    return sock


def roundtrip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    return got


def test_relays_both_ways_and_closes_cleanly(proxy: FaultProxy) -> None:
    sock = connect(proxy, "T1")
    assert roundtrip(sock) == b"ping"
    big = bytes(range(256)) * 8192  # 2 MiB through the bounded delay lines
    sender = threading.Thread(target=sock.sendall, args=(big,))
    sender.start()
    got = bytearray()
    while len(got) < len(big):
        got += sock.recv(1 << 20)
    sender.join()
    assert bytes(got) == big
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(10) == b""  # the echo server's close came through
    wait_for(lambda: proxy.connections("T1") == 0, 10, "the link to close")


def test_cut_resets_and_refuses_until_healed_on_that_route_only(proxy: FaultProxy) -> None:
    one, two = connect(proxy, "T1"), connect(proxy, "T2")
    assert roundtrip(one) == roundtrip(two) == b"ping"
    proxy.cut(["T1"])
    with pytest.raises((ConnectionError, OSError)):
        roundtrip(one)
    with pytest.raises((ConnectionError, OSError)):
        roundtrip(connect(proxy, "T1"))  # accepted, then reset
    assert roundtrip(two) == b"ping"  # the other terminal's route is untouched
    proxy.heal(["T1"])
    assert roundtrip(connect(proxy, "T1")) == b"ping"


def test_freeze_holds_every_byte_and_keeps_the_stream(proxy: FaultProxy) -> None:
    sock = connect(proxy, "T1")
    assert roundtrip(sock) == b"ping"
    proxy.freeze()
    sock.sendall(b"held")
    sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        sock.recv(10)
    proxy.heal()
    sock.settimeout(10)
    assert sock.recv(10) == b"held"  # nothing dropped from a stream that resumes


def test_delay_holds_each_direction_back(proxy: FaultProxy) -> None:
    sock = connect(proxy, "T2")
    proxy.delay(300, ["T2"])
    start = time.monotonic()
    assert roundtrip(sock) == b"ping"
    assert time.monotonic() - start >= 0.6  # 300 ms out, 300 ms back
    proxy.heal()
    start = time.monotonic()
    roundtrip(sock)
    assert time.monotonic() - start < 0.6


def test_drop_resets_open_connections_and_accepts_new_ones(proxy: FaultProxy) -> None:
    sock = connect(proxy, "T1")
    assert roundtrip(sock) == b"ping"
    proxy.drop()
    with pytest.raises((ConnectionError, OSError)):
        roundtrip(sock)
    assert roundtrip(connect(proxy, "T1")) == b"ping"
    assert proxy.counts["reset"] >= 1


def test_memory_is_bounded_when_the_far_side_stops_reading(tmp_path: Path) -> None:
    """A peer that never reads: the sender is pushed back after a bounded amount, not buffered."""
    sink = socket.create_server(("127.0.0.1", 0))
    with FaultProxy("127.0.0.1", int(sink.getsockname()[1])) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.add_route("T1")))
        peer, _ = sink.accept()  # accepted, never read
        sock.setblocking(False)
        sent, block = 0, b"x" * 65536
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sent += sock.send(block)
            except BlockingIOError:
                time.sleep(0.05)  # the proxy may still be draining into its queue: look again
                try:
                    sent += sock.send(block)
                except BlockingIOError:
                    break
        assert sent < 64 * 2**20, f"{sent} bytes taken in by a link whose far side reads nothing"
        sock.close()
        peer.close()
    sink.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_tls_passes_through_untouched(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=broker", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server = EchoServer(server_tls)
    client_tls = ssl.create_default_context(cafile=str(cert))  # verifies the certificate and the address
    try:
        with FaultProxy("127.0.0.1", server.port) as proxy:
            raw = socket.create_connection(("127.0.0.1", proxy.add_route("T1")), timeout=10)
            with client_tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                assert roundtrip(sock, b"over tls") == b"over tls"
                assert sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        server.close()
