"""Carries journal rows to the hub over MQTT and applies the hub's acks (SPEC section 3).

The broker is transport, not storage: a PUBACK proves nothing. Rows leave the journal only when
the hub's retained ``ack`` covers them. The MQTT client is handed a bounded window of rows beyond
the acked pointer, never the whole backlog, and the window is sent again on (re)connect, when the
hub's state turns online, and whenever the ack has not advanced for ``resend_s`` while rows are
pending (the broker may have dropped messages it already PUBACKed). Those decisions are
:class:`terminal.core.Window`, the very code the firmware runs; this module is their I/O (paho).

Threads: paho's network thread runs the ``_on_*`` callbacks, which only record what arrived and
wake the sender thread; the sender thread alone publishes and writes acks to the journal.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from protocol.errors import ProtocolError
from protocol.frames import Ack, Event, decode_state, encode_batch, encode_state, loads_object
from protocol.state import ConfigReport
from protocol.topics import Leaf, hub_state_topic, topic
from protocol.transport import LinkReport, no_delay
from protocol.updates import UpdateState

from . import __version__
from .clock import Clock
from .config import TerminalConfig
from .core import Window
from .errors import JournalError
from .journal import Journal, Row, row_event
from .secrets import TerminalSecrets

_LOG = logging.getLogger(__name__)
#: The ``cmd`` that carries a new key and password from the hub (hub.store.keys).
REKEY = "rekey"
#: CONNACK codes of a refused login: 3.1.1's 4 and 5, MQTT 5's 134 and 135.
_LOGIN_REFUSED = frozenset((4, 5, 134, 135))
CommandHandler = Callable[[dict[str, Any]], None]


class Uplink:
    def __init__(
        self,
        config: TerminalConfig,
        journal: Journal,
        clock: Clock,
        on_command: CommandHandler | None = None,
        update_state: Callable[[], UpdateState | None] = lambda: None,
    ) -> None:
        self.config = config
        self.update_state = update_state  #: where an update stands (terminal.updater), for the state
        self.journal = journal
        self.clock = clock
        self.on_command = on_command
        self._cond = threading.Condition()
        self._dirty = True
        self._stopping = False
        self._connected = False
        self._window = Window(
            config.uplink.window, _ms(config.uplink.resend_s), journal.epoch, journal.acked, _now_ms()
        )
        self._next_state = 0.0
        self._panel = {"ok": True, "detail": ""}
        #: The hub's configuration in force and the last refused (terminal.hubconfig).
        self.config_report = ConfigReport()
        self.counts = {"published_events": 0, "resends": 0, "acks": 0, "refused_acks": 0, "commands": 0}
        self._thread: threading.Thread | None = None
        self.link = LinkReport(_LOG, f"{config.broker.host}:{config.broker.port}")
        self.secrets = TerminalSecrets(config)
        self._password_switched = False
        self.client = self._make_client()

    # -- MQTT client ------------------------------------------------------------------------
    def _topic(self, leaf: Leaf) -> str:
        return topic(self.config.hall, self.config.device, leaf)

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        user = cfg.broker.user or cfg.device
        # The client id is the user name: the hall's broker replaces it with that anyway
        # (use_username_as_clientid), so no one else can hold or take over this session.
        # MQTT 3.1.1 has no Maximum Packet Size to announce: the broker's max_packet_size bounds
        # what reaches this client (only the hub writes its topics).
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=user, clean_session=False, protocol=mqtt.MQTTv311
        )
        client.username_pw_set(user, self.secrets.login_password())
        tls = cfg.broker_tls()
        if tls is not None:
            client.tls_set_context(tls)
        else:
            _LOG.warning("[broker] ca is empty: MQTT without TLS (the hall's broker accepts only TLS)")
        client.will_set(self._topic(Leaf.STATE), encode_state(False), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_inflight_messages_set(max(20, cfg.uplink.window // cfg.uplink.batch + 1))
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        no_delay(client)
        self.link.watch(client)
        return client

    def start(self) -> None:
        self.client.connect_async(
            self.config.broker.host, self.config.broker.port, keepalive=self.config.broker.keepalive_s
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"uplink-{self.config.device}", daemon=True)
        self._thread.start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        """paho network thread."""
        if reason.is_failure:
            other = self.secrets.refused() if reason.value in _LOGIN_REFUSED else None
            if other is None:
                self.link.failed(f"the broker refused the login as {client.username!r}: {reason}")
            else:  # a rotation under way: the broker takes the other password until the hub switches it
                _LOG.info("the broker refused this password (%s); trying the other one of the rotation", reason)
                client.username_pw_set(client.username, other)
                self._password_switched = True  # the disconnect that follows is no failure to report
            return
        self.link.connected()
        self.secrets.logged_in()
        client.subscribe(
            [(self._topic(Leaf.ACK), 1), (self._topic(Leaf.CMD), 1), (hub_state_topic(self.config.hall), 1)]
        )
        _LOG.info("connected to broker %s:%s", self.config.broker.host, self.config.broker.port)
        with self._cond:
            self._connected = True
            self._window.resend_due = True
            self._next_state = 0.0
            self._wake_locked()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        """paho network thread."""
        with self._cond:
            if self._connected and not self._stopping:
                _LOG.warning("disconnected from broker: %s", reason)
            elif self._password_switched:
                self._password_switched = False
            elif not self._stopping:
                self.link.failed(f"the connection closed before the broker accepted it: {reason}")
            self._connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """paho network thread: record and wake; never raise into paho."""
        try:
            if msg.topic == self._topic(Leaf.ACK):
                self._record_ack(Ack.decode(bytes(msg.payload)))
            elif msg.topic == hub_state_topic(self.config.hall):
                self._record_hub_state(bool(decode_state(bytes(msg.payload))["online"]))
            elif msg.topic == self._topic(Leaf.CMD):
                self.counts["commands"] += 1
                self._command(loads_object(bytes(msg.payload)))
        except (ProtocolError, ValueError) as exc:
            _LOG.warning("ignored a bad message on %s: %s", msg.topic, exc)
        except Exception:
            _LOG.exception("handling a message on %s failed", msg.topic)

    def _command(self, command: dict[str, Any]) -> None:
        """paho network thread: a rotation is the uplink's own business; the rest goes on."""
        if command.get("cmd") != REKEY:
            if self.on_command is not None:
                self.on_command(command)
            return
        refused = self.secrets.rekey(command)
        if refused is not None:
            _LOG.warning("refused new secrets from the hub: %s", refused)
            return
        # The next login tries the new password first (this session goes on with the old one).
        self.client.username_pw_set(self.client.username, self.secrets.login_password())
        with self._cond:
            self._next_state = 0.0  # say at once which key is in use: the hub completes the rotation
            self._wake_locked()

    def _record_ack(self, ack: Ack) -> None:
        journal, window = self.journal, self._window
        with self._cond:
            before = window.upto
            if window.heard(ack.upto, ack.epoch, journal.acked, journal.last_seq):
                self.counts["refused_acks"] += 1
                _LOG.error("hub acked seq %d beyond last_seq %d: ignored", ack.upto, journal.last_seq)
            elif window.upto != before:
                self._wake_locked()

    def _record_hub_state(self, online: bool) -> None:
        with self._cond:
            self._window.online(online)
            if self._window.resend_due:
                self._wake_locked()

    # -- sender thread ----------------------------------------------------------------------
    def wake(self) -> None:
        """A row was committed (any thread)."""
        with self._cond:
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._dirty = True
        self._cond.notify()

    def state_changed(self) -> None:
        """Publish the retained state at once (an update moved on; any thread)."""
        with self._cond:
            self._next_state = 0.0
            self._wake_locked()

    @property
    def panel_ok(self) -> bool:
        return bool(self._panel["ok"])

    def set_panel_status(self, ok: bool, detail: str) -> None:
        """The panel link changed (panel thread); published in the retained state."""
        with self._cond:
            if self._panel != {"ok": ok, "detail": detail}:
                self._panel = {"ok": ok, "detail": detail}
                self._next_state = 0.0
                self._wake_locked()

    def report_config(self, report: ConfigReport) -> None:
        """A configuration was taken up or refused (any thread): the state says so at once."""
        with self._cond:
            self.config_report = report
            self._next_state = 0.0
            self._wake_locked()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stopping, timeout=0.5)
                if self._stopping:
                    return
                self._dirty = False
            try:
                self._step()
            except JournalError:
                _LOG.exception("journal error in the uplink; retrying")
                time.sleep(1)
            except Exception:
                _LOG.exception("uplink step failed; retrying")
                time.sleep(1)

    def _step(self) -> None:
        self._apply_ack()
        now = time.monotonic()
        with self._cond:
            connected = self._connected
            if self._window.rewind(self.journal.acked, _now_ms()):
                self.counts["resends"] += 1
        if connected:
            self._send_window()
            if now >= self._next_state:
                self._publish_state(now)

    def _apply_ack(self) -> None:
        with self._cond:
            upto = self._window.upto
        if upto > self.journal.acked and self.journal.ack(upto):
            self.counts["acks"] += 1
            with self._cond:
                self._window.ack(upto, _now_ms())

    def _send_window(self) -> None:
        cfg = self.config.uplink
        with self._cond:
            start, room = self._window.pending(self.journal.acked, self.journal.last_seq)
        if room <= 0:
            return
        rows = self.journal.rows_after(start, min(room, cfg.batch * 10))
        for i in range(0, len(rows), cfg.batch):
            chunk = rows[i : i + cfg.batch]
            key, kid = self.secrets.signing
            payload = encode_batch(key, self.config.hall, self.config.device, [self._event(r) for r in chunk], kid)
            info = self.client.publish(self._topic(Leaf.EV), payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # disconnected meanwhile: resent on reconnect
            with self._cond:
                self._window.sent_upto = chunk[-1].seq
            self.counts["published_events"] += len(chunk)
        if len(rows) == min(room, cfg.batch * 10) and rows:
            self.wake()  # more rows fit the window: keep going without waiting

    def _event(self, row: Row) -> Event:
        body = row.body
        return row_event(self.journal.epoch, row.seq, body, self.clock.age_ms(body["boot"], body["mono_ms"]))

    def _publish_state(self, now: float) -> None:
        self._next_state = now + self.config.uplink.state_s
        self.client.publish(self._topic(Leaf.STATE), self._state(True), qos=1, retain=True)

    def _state(self, online: bool) -> bytes:
        """The retained state, with the journal's figures: an offline one too, so the hub shows
        what a terminal that said goodbye left behind (its backlog, version, clock)."""
        summary = self.journal.summary()
        update = self.update_state()
        return encode_state(
            online,
            fw=__version__,
            kind=self.config.kind,
            mode=self.config.mode,
            window=self.config.window,
            epoch=summary["epoch"],
            last_seq=summary["last_seq"],
            acked=summary["acked"],
            backlog=summary["pending"],
            boot=self.clock.boot_id,
            clock="synced" if self.clock.synced() else "unsynced",
            panel=self._panel,
            kid=self.secrets.signing[1],
            config=self.config_report.fields(),
            **({} if update is None else {"update": update.fields()}),
        )

    @property
    def connected(self) -> bool:
        return self._connected

    def close(self) -> None:
        """Publish an offline state, stop the threads; idempotent."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._connected:
            try:
                goodbye = self._state(False)
            except (sqlite3.Error, JournalError, OSError):  # a journal that cannot be read: goodbye anyway
                goodbye = encode_state(False)
            info = self.client.publish(self._topic(Leaf.STATE), goodbye, qos=1, retain=True)
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()


def _now_ms() -> int:
    """The monotonic clock the uplink's decisions count in."""
    return int(time.monotonic() * 1000)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
