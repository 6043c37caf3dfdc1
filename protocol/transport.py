"""MQTT client settings both sides share."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from .config import ConfigError

#: The largest MQTT packet the hall's broker accepts (``max_packet_size``) and the hub announces
#: (MQTT 5 Maximum Packet Size): a frame of ``protocol.frames.MAX_FRAME_BYTES`` plus its topic and
#: headers fits, a 100 MiB one is refused before the broker holds it in memory.
MAX_PACKET_BYTES = 70_000
#: How often a link that keeps failing is reported again (the first failure is logged at once).
REPORT_AGAIN_S = 60.0


def client_tls(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client's TLS context for the hall's broker (SPEC section 11): TLS 1.2 or later, only the
    hall CA trusted (not the system's CAs), the broker's certificate checked against the host name
    or address the client connects to. ``cert``/``key``: the client's own certificate, for a hall
    that requires one. ConfigError (one line) when a file cannot be used."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{ca}: cannot be read as the hall's CA certificate ({_reason(exc)})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            context.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{cert}: cannot be used as this client's certificate ({_reason(exc)})") from None
    return context


def _reason(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) else str(exc)


def no_delay(client: mqtt.Client) -> None:
    """Send small frames at once. paho leaves Nagle's algorithm on: a PUBACK followed by an ack
    publish then waits for the peer's delayed ACK, about 40 ms a hop on Linux."""

    def on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = on_socket_open


class LinkReport:
    """Says in the log that a client cannot reach or log in to its broker: at the first failure,
    then at most every ``again_s`` while it keeps failing (paho retries every few seconds; a log
    line per retry would bury everything else), and once more when the link is up again.

    Call :meth:`failed` and :meth:`connected` from paho's callbacks (its network thread)."""

    def __init__(
        self,
        log: logging.Logger,
        address: str,
        again_s: float = REPORT_AGAIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.address = address
        self.again_s = again_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._attempt_failed = False
        self._reported_at: float | None = None

    def watch(self, client: mqtt.Client) -> None:
        """Count each connection attempt once, and report the attempts paho gives up on before any
        CONNACK (refused, unreachable, unknown host, timeout): paho calls ``on_connect_fail``
        inside its ``except OSError``, where the error is still at hand."""
        client.on_pre_connect = lambda client, userdata: self._new_attempt()
        client.on_connect_fail = lambda client, userdata: self.failed(_current_error())

    def _new_attempt(self) -> None:
        with self._lock:
            self._attempt_failed = False

    def failed(self, reason: str) -> None:
        """This attempt failed (a second call for the same attempt, e.g. the disconnect after a
        refused CONNACK, changes nothing)."""
        now = self.clock()
        with self._lock:
            if self._attempt_failed:
                return
            self._attempt_failed = True
            self._failures += 1
            due = self._reported_at is None or now - self._reported_at >= self.again_s
            if due:
                self._reported_at = now
            failures = self._failures
        if due:
            again = f" ({failures} failed attempts so far; retrying)" if failures > 1 else " (retrying)"
            self.log.error("cannot connect to the MQTT broker at %s: %s%s", self.address, reason, again)

    def connected(self) -> None:
        with self._lock:
            failures, self._failures, self._reported_at = self._failures, 0, None
        if failures:
            self.log.info("connected to the MQTT broker at %s after %d failed attempts", self.address, failures)


def _current_error() -> str:
    error = sys.exception()
    return f"{type(error).__name__}: {error}" if error is not None else "connection failed"
