"""The hub daemon (``haocha hub run``): MQTT in, durable commit, then PUBACK and the app-level ack.

Two processes. This one holds the MQTT session, the HTTP API, the command publisher, the
upstream sender and the alert threads (:mod:`hub.alerts.engine`, reading the store on their own);
the writer process (:mod:`hub.writer`) stores. paho's network thread only stamps
each message and queues it (the broker holds it un-PUBACKed meanwhile, so the queue is not a
place a rating can be lost: a crash makes the broker deliver it again). A forwarding thread hands
the queue to the writer in batches; the writer commits each batch in one transaction and reports
back; a reporting thread then PUBACKs every message of the batch (``manual_ack``) and publishes
the retained cumulative ack per terminal. If a commit fails (disk full, I/O error) nothing is
acked and the writer retries. If the writer dies, the daemon stops with an error (systemd starts
both again); if the daemon dies, the writer sees its pipe close and exits.

Under systemd (``Type=notify``, :mod:`protocol.sdnotify`) the daemon says READY=1 once the writer
has answered, the HTTP API serves and paho's loop runs; the forwarding thread pings the watchdog,
and only while the writer keeps answering (an idle hub sends it an empty batch every
:data:`WRITER_HEARTBEAT_S`). A stopped or stuck daemon or writer stops the pings, and systemd
restarts the hub.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import uvicorn
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.frames import Ack
from protocol.sdnotify import Notifier
from protocol.state import OFFLINE, ONLINE
from protocol.topics import Leaf, hub_state_topic, topic, wildcard
from protocol.transport import MAX_PACKET_BYTES, LinkReport, no_delay

from . import tlsfiles
from .alerts.engine import AlertEngine
from .broker import BrokerFiles
from .commands import CommandPublisher
from .config import DB_NAME, HubConfig
from .errors import HubError
from .http.app import create_app
from .ingest import Incoming
from .pipes import PipeEnd
from .store import now_ms
from .upstream.sender import start_sender, upstream_tls
from .writer import COMMIT_RETRY_MAX_S, CommitFailing, Stored, spawn

_LOG = logging.getLogger(__name__)
SESSION_EXPIRY_S = 7 * 24 * 3600
GIL_SWITCH_S = 0.0005
#: How long a stopping daemon waits for the writer to finish its batch before killing it.
WRITER_EXIT_S = 10.0
#: An idle forwarding thread sends the writer an empty batch this often; the writer answers it.
WRITER_HEARTBEAT_S = 1.0
#: How often the hub looks for certificates ``tls renew`` replaced.
RENEWAL_CHECK_S = 2.0
#: A writer silent this long is taken as stuck: the watchdog pings stop. A writer retrying a
#: failing commit (disk full) reports every COMMIT_RETRY_MAX_S at the latest, so it is not stuck.
WRITER_SILENT_S = 2 * COMMIT_RETRY_MAX_S


def listen(host: str, port: int) -> socket.socket:
    """The HTTP API's listening socket; HubError (one line, exit non-zero) when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise HubError(f"cannot serve the HTTP API on {host}:{port}: {exc.strerror or exc}") from None


class HubDaemon:
    def __init__(self, config: HubConfig, home: Path) -> None:
        self.config = config
        self.home = home
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.totals: dict[str, int] = {}
        self.commit_failures = 0
        #: Messages handed to the writer and not yet reported stored (for /metrics).
        self.in_writer = 0
        self._in_writer_lock = threading.Lock()
        self.writer: subprocess.Popen[bytes] | None = None
        self.writer_died = False
        #: A thread of the daemon that ended by an exception: the hub stops and exits non-zero.
        self.thread_died: str | None = None
        self.link = LinkReport(_LOG, f"{config.broker.host}:{config.broker.port}")
        self.renewals = tlsfiles.RenewalWatch()
        self._renewals_checked = time.monotonic()
        self.client = self._make_client()
        self.upstream_tls = upstream_tls(config, home)  # a bad [upstream] ca stops the hub at start
        self.commands = CommandPublisher(self.client, config.hall, home / DB_NAME, self.connected)
        self.http: uvicorn.Server | None = None
        self._threads: list[threading.Thread] = []
        self.notify = Notifier()
        #: time.monotonic() of the writer's last report (None before its first) and of the last send.
        self.writer_answered: float | None = None
        self._sent_to_writer = -float("inf")

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        # The client id is the user name, as the hall's broker enforces (use_username_as_clientid):
        # no terminal's credentials can take over the hub's connection or session.
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.broker.user, protocol=mqtt.MQTTv5, manual_ack=True
        )
        client.username_pw_set(cfg.broker.user, cfg.broker.password)
        context = tlsfiles.mqtt_context(self.home, cfg)
        if cfg.tls.client_certificates:  # the broker checks it at every reconnect
            hub_files = tlsfiles.paths(self.home)
            self.renewals.watch(context, hub_files.cert("hub"), hub_files.key("hub"))
        client.tls_set_context(context)
        client.will_set(hub_state_topic(cfg.hall), OFFLINE.encode(), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        no_delay(client)
        self.link.watch(client)
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        """paho network thread."""
        if reason.is_failure:
            self.link.failed(f"the broker refused the hub's login as {client.username!r}: {reason}")
            return
        self.link.connected()
        hall = self.config.hall
        client.subscribe([(wildcard(hall, Leaf.EV), 1), (wildcard(hall, Leaf.STATE), 1)])
        client.publish(hub_state_topic(hall), ONLINE.encode(), qos=1, retain=True)
        self.connected.set()
        self.commands.wake()
        _LOG.info(
            "hub connected to %s:%s (session present: %s)",
            self.config.broker.host,
            self.config.broker.port,
            flags.session_present,
        )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        """paho network thread."""
        was_connected = self.connected.is_set()
        self.connected.clear()
        if self.stopping.is_set():
            return
        if was_connected:
            _LOG.warning("hub lost the broker: %s", reason)
        else:
            self.link.failed(f"the connection closed before the broker accepted it: {reason}")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """paho network thread: stamp and queue, nothing else. An exception here would end paho's
        loop, so a message that cannot even be queued (a topic that is not UTF-8) is acked and
        dropped with a log line: it cannot name a device, so it cannot carry a rating."""
        try:
            self.inbox.put(Incoming(msg.topic, bytes(msg.payload), now_ms(), msg.mid))
        except Exception as exc:
            _LOG.error("dropped a message that cannot be handled: %s", str(exc)[:160])
            client.ack(msg.mid, msg.qos)

    def run(self) -> None:
        """Connect and ingest until :meth:`stop`; HubError if the writer process died or the HTTP
        address cannot be bound (checked first, before the writer, the broker or the upstream)."""
        listener = listen(self.config.http.host, self.config.http.port)
        # The forwarding and reporting threads would otherwise hold the GIL for 5 ms slices while
        # paho's network thread waits to read and PUBACK: switch more often.
        sys.setswitchinterval(GIL_SWITCH_S)
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        self.writer, batches, reports = spawn(self.home, verbose)
        broker_files = BrokerFiles(self.config, self.home)
        broker_files.refresh()  # before READY: under systemd the broker starts after the hub
        self._start_thread("broker-files", lambda: broker_files.keep(self.stopping))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.config.broker.receive_maximum
        props.MaximumPacketSize = MAX_PACKET_BYTES
        self.client.connect_async(
            tlsfiles.local_host(self.config.broker.host),
            self.config.broker.port,
            keepalive=15,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._start_thread("commands", lambda: self.commands.run(self.stopping))
        self._start_thread("forward", lambda: self._forward(batches))
        reporting = threading.Thread(target=self._take_reports, args=(reports,), name="reports", daemon=True)
        reporting.start()
        self._start_http(listener)
        sender = start_sender(self.config, self.home, self.upstream_tls)
        if self.config.alerts.enabled:
            AlertEngine(self.config, self.home, self.health).start(self._start_thread, self.stopping)
        try:
            if self._wait_ready():
                self.notify.ready(self._status())
            self.stopping.wait()
        finally:
            self.notify.stopping()
            if sender is not None:
                sender.close()
            self._shutdown(batches, reporting)
        if self.writer_died:
            raise HubError(f"the hub's writer process died (exit code {self.writer.returncode}); see the log above")
        if self.thread_died is not None:  # non-zero, so that systemd's Restart=on-failure restarts it
            raise HubError(f"the hub's {self.thread_died} thread died; see the log above")

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except (Exception, SystemExit):  # uvicorn calls sys.exit on some startup failures
                _LOG.exception("hub thread %s died; stopping the hub", name)
                self.thread_died = name
                self.stop()

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_http(self, listener: socket.socket) -> None:
        """The HTTP API on its own thread (uvicorn installs no signal handlers off the main thread),
        serving the socket :meth:`run` bound."""
        app = create_app(self.home, self.config, on_command=self.commands.wake, health=self.health)
        cert, key = self._https_files()
        cfg = uvicorn.Config(
            app,
            host=self.config.http.host,
            port=self.config.http.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        self.http = uvicorn.Server(cfg)
        server = self.http
        self._start_thread("http", lambda: server.run(sockets=[listener]))

    def _wait_ready(self) -> bool:
        """Wait until the writer has answered and the HTTP API serves (paho's loop runs already);
        False if the hub stops first."""
        while not self.stopping.wait(0.02):
            if self.writer_answered is not None and self.http is not None and self.http.started:
                self._watch_https()
                return True
        return False

    def _watch_https(self) -> None:
        """uvicorn made the API's TLS context at start; renewed files are loaded into it."""
        cert, key = self._https_files()
        context = self.http.config.ssl if self.http is not None else None
        if cert and key and isinstance(context, ssl.SSLContext):
            self.renewals.watch(context, Path(cert), Path(key))

    def _status(self) -> str:
        broker = "connected to" if self.connected.is_set() else "waiting for"
        stored = self.totals.get("stored", 0)
        return f"{broker} the broker {self.config.broker.host}:{self.config.broker.port}; {stored} events stored"

    def _keep_alive(self, batches: PipeEnd) -> None:
        """Forwarding thread: ask an idle writer for a sign of life, and ping systemd's watchdog
        only while the writer answers."""
        now = time.monotonic()
        if now - self._sent_to_writer >= WRITER_HEARTBEAT_S:
            batches.send([])
            self._sent_to_writer = now
        if self.writer_answered is not None and now - self.writer_answered < WRITER_SILENT_S:
            self.notify.watchdog(self._status)
        if now - self._renewals_checked >= RENEWAL_CHECK_S:
            self._renewals_checked = now
            self.renewals.check()

    def _https_files(self) -> tuple[str | None, str | None]:
        """The API's certificate and key from the hall CA when ``[http] tls``, else plain HTTP."""
        if not self.config.http.tls:
            return None, None
        p = tlsfiles.require(self.home)
        return str(p.cert("http")), str(p.key("http"))

    def _forward(self, batches: PipeEnd) -> None:
        """Hand queued messages to the writer, as many as are waiting at once (up to ``max_batch``)."""
        while not self.stopping.is_set():
            try:
                self._keep_alive(batches)
                batch = [self.inbox.get(timeout=WRITER_HEARTBEAT_S / 2)]
            except queue.Empty:
                continue
            except OSError:
                return  # the writer is gone: _take_reports stops the hub
            while len(batch) < self.config.ingest.max_batch:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            with self._in_writer_lock:
                self.in_writer += len(batch)
            try:
                batches.send([(m.topic, m.payload, m.received_ms, m.mid) for m in batch])
                self._sent_to_writer = time.monotonic()
            except OSError:
                return  # the writer is gone: _take_reports stops the hub

    def _take_reports(self, reports: PipeEnd) -> None:
        """Ack what the writer stored; stop the hub if the writer dies."""
        try:
            while True:
                for report in reports.take():
                    self.writer_answered = time.monotonic()
                    if isinstance(report, Stored):
                        self._acknowledge(report)
                    elif isinstance(report, CommitFailing):
                        self.commit_failures = report.failures
        except (EOFError, OSError):
            pass
        except Exception:
            _LOG.exception("cannot take the writer's reports")
        if not self.stopping.is_set():
            _LOG.error("the writer process died; stopping the hub (nothing unacked is lost: the broker resends it)")
            self.writer_died = True
            self.stop()

    def _acknowledge(self, report: Stored) -> None:
        for mid in report.mids:
            self.client.ack(mid, 1)
        for (device, epoch), upto in report.acks.items():
            self.client.publish(
                topic(self.config.hall, device, Leaf.ACK), Ack(epoch, upto).encode(), qos=1, retain=True
            )
        for outcome, n in report.counts.items():
            self.totals[outcome] = self.totals.get(outcome, 0) + n
        with self._in_writer_lock:
            self.in_writer -= len(report.mids)

    def health(self) -> dict[str, int]:
        """The writer's state for /metrics (read from the HTTP thread: plain ints)."""
        return {"commit_failures": self.commit_failures, "queued": self.inbox.qsize() + self.in_writer}

    def stop(self) -> None:
        self.stopping.set()

    def _shutdown(self, batches: PipeEnd, reporting: threading.Thread) -> None:
        if self.http is not None:
            self.http.should_exit = True
        for thread in self._threads:
            thread.join(timeout=5)
        batches.close()  # the writer finishes its batch, reports it, and exits
        assert self.writer is not None
        try:
            self.writer.wait(WRITER_EXIT_S)
        except subprocess.TimeoutExpired:
            _LOG.error("the writer did not finish within %.0fs; killing it", WRITER_EXIT_S)
            self.writer.kill()
            self.writer.wait()
        reporting.join(timeout=5)  # its last acks go out before the session closes
        if self.connected.is_set():
            info = self.client.publish(hub_state_topic(self.config.hall), OFFLINE.encode(), qos=1, retain=True)
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        _LOG.info("hub stopped: %s", self.totals)
