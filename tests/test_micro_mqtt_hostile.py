"""The firmware's MQTT client (``terminal/micro/mqtt.py``) against a scripted hostile broker
(``mqtt_scripted``) over a real socket: the whole firmware runs in ``micropython -X heapsize=64k``
with the simulated board, and each case checks the bytes the client sent and the board's log."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from terminal.micro_host import compile_firmware

from .micro_harness import board_on, logged, wait_for
from .mqtt_scripted import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBLISH,
    Connection,
    ScriptedBroker,
    packet,
    publish,
    varint,
)

PREFIX = "haocha/v1/H1/M01/"


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_firmware(tmp_path_factory.mktemp("fw"))


def test_oversize_message_is_read_in_chunks_acked_and_the_link_kept(tmp_path: Path, firmware: Path) -> None:
    big = publish(PREFIX + "cmd", b'{"cmd":"invite","case":"' + b"x" * 70000 + b'"}', pid=7)
    with ScriptedBroker(Connection.handshake) as broker, board_on(tmp_path, firmware, broker.port) as board:
        conn = broker.wait_connections(1, 10)[0]
        conn.expect(PUBLISH)  # the board is online
        conn.send(big)
        assert conn.expect(PUBACK, 20).pid == 7  # acked: a persistent session will not redeliver it
        wait_for(lambda: logged(board, "skipped"), 5, "the log line")
        assert logged(board, "skipped") == [
            f"skipped a {len(big) - 4}-byte message on {PREFIX}cmd: over the 2048-byte limit"
        ]
        # the stream is still in step: a press goes out, and the ack after it is applied
        assert board.press("press satisfied") == (1, "rating")
        ev = wait_for(lambda: [p for p in conn.of_type(PUBLISH) if p.topic == PREFIX + "ev"], 10, "the event")
        assert json.loads(ev[0].payload)["ev"][0]["seq"] == 1
        ack = json.dumps({"epoch": board.started["epoch"], "upto": 1}).encode()
        conn.send(publish(PREFIX + "ack", ack, pid=8, retain=True))
        wait_for(lambda: board.status()["acked"] == 1, 10, "the ack applied")
        assert [p.pid for p in conn.of_type(PUBACK)] == [7, 8]
        assert len(broker.connections) == 1 and conn.closed_at is None
        assert not board.loop_errors  # nothing near 70 KB was allocated in the 64 KB heap


@pytest.mark.parametrize(
    ("codes", "pid_offset", "reason"),
    [
        (b"\x01\x80\x01", 0, f"the broker refused the subscription to {PREFIX}cmd (SUBACK 0x80)"),
        (b"\x01\x01\x01", 1, "bad packet from the broker: 0x90 of 5 bytes (expected SUBACK)"),
    ],
    ids=["refused", "wrong-packet-id"],
)
def test_a_refused_subscription_fails_the_connection(
    tmp_path: Path, firmware: Path, codes: bytes, pid_offset: int, reason: str
) -> None:
    def script(conn: Connection) -> None:
        if conn.index == 0:
            conn.handshake(codes, pid_offset)
        else:
            conn.handshake()

    with ScriptedBroker(script) as broker, board_on(tmp_path, firmware, broker.port) as board:
        first, second = broker.wait_connections(2, 15)
        first.wait_closed(5)
        assert first.of_type(PUBLISH) == []  # never online on a link without its subscriptions
        if pid_offset == 0:
            assert first.packets[-1].type == DISCONNECT
        assert second.accepted_at - (first.closed_at or 0) >= 0.8  # backed off before the retry
        state = second.expect(PUBLISH)
        assert state.topic == PREFIX + "state" and json.loads(state.payload)["online"] is True
        assert board.status()["connected"] is True
        [line] = logged(board, "cannot connect")
        assert line.startswith(f"cannot connect to 127.0.0.1:{broker.port}: {reason}")


QOS2 = packet(0x34, struct.pack("!H", 3) + b"a/b" + b"\x00\x09{}")
MALFORMED = {
    "remaining length of 5 bytes": (b"\x30\xff\xff\xff\xff\x01", "remaining length over 4 bytes"),
    "SUBACK of 200,000 bytes": (b"\x90" + varint(200000), "0x90 of 200000 bytes"),
    "a second CONNACK": (
        packet(CONNACK, b"\x00\x00"),
        "0x20 of 2 bytes (expected QoS 0/1 PUBLISH, PUBACK or PINGRESP)",
    ),
    "QoS 2 PUBLISH": (QOS2, "0x34 of 9 bytes (expected QoS 0/1 PUBLISH, PUBACK or PINGRESP)"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_packet_drops_the_link_and_retries_back_off(tmp_path: Path, firmware: Path, name: str) -> None:
    bad, reason = MALFORMED[name]

    def script(conn: Connection) -> None:
        conn.handshake()
        conn.expect(PUBLISH)  # online
        conn.send(bad)

    with ScriptedBroker(script) as broker, board_on(tmp_path, firmware, broker.port) as board:
        conns = broker.wait_connections(3, 20)
        closed = [c.wait_closed(5) for c in conns[:2]]
        gaps = [conns[1].accepted_at - closed[0], conns[2].accepted_at - closed[1]]
        assert gaps[0] >= 0.8 and gaps[1] >= 1.6, gaps  # 1 s, then 2 s: no reconnect loop
        lost = logged(board, "lost the link")
        assert lost[0] == f"lost the link to 127.0.0.1:{broker.port}: bad packet from the broker: {reason}"
        assert not board.loop_errors


def test_pingreq_leaves_at_half_the_keepalive_and_a_missing_pingresp_ends_the_link(
    tmp_path: Path, firmware: Path
) -> None:
    def script(conn: Connection) -> None:
        conn.auto_pingresp = conn.index > 0  # the first link never answers a PINGREQ
        conn.handshake()

    with ScriptedBroker(script) as broker, board_on(tmp_path, firmware, broker.port, keepalive_s=4) as board:
        first = broker.wait_connections(1, 10)[0]
        ping = first.expect(PINGREQ, 10)
        before = [p for p in list(first.packets) if p.at < ping.at][-1]
        closed = first.wait_closed(10)
        assert 1.5 <= ping.at - before.at <= 3.0  # 2 s of a 4 s keepalive: the broker never waits
        assert 1.5 <= closed - ping.at <= 3.5
        wait_for(lambda: logged(board, "lost the link"), 5, "the board to log the dead link")
        assert logged(board, "lost the link") == [
            f"lost the link to 127.0.0.1:{broker.port}: no PINGRESP within 2000 ms: the link is dead"
        ]
        second = broker.wait_connections(2, 10)[1]
        for _ in range(3):  # answered pings keep the link up
            second.expect(PINGREQ, 5)
        assert second.closed_at is None and board.status()["connected"] is True


def test_a_refused_login_is_logged_at_once_then_at_the_report_interval(tmp_path: Path, firmware: Path) -> None:
    def script(conn: Connection) -> None:
        conn.expect(CONNECT)
        conn.send(packet(CONNACK, b"\x00\x04"))

    with ScriptedBroker(script) as broker, board_on(tmp_path, firmware, broker.port, report_s=6) as board:
        wait_for(lambda: logged(board, "cannot connect"), 5, "the first log line")
        assert len(broker.connections) == 1  # at once: before the first retry
        conns = broker.wait_connections(4, 20)  # attempts at about 0, 1, 3 and 7 s
        conns[3].wait_closed(5)
        wait_for(lambda: len(logged(board, "cannot connect")) >= 2, 5, "the reminder")
        why = f"cannot connect to 127.0.0.1:{broker.port}: the broker refused the login: bad user name or password"
        assert logged(board, "cannot connect") == [f"{why} (CONNACK 4)", f"{why} (CONNACK 4) (4 attempts so far)"]
        assert all(c.types() == ["0x10"] for c in conns)  # nothing after CONNECT on a refused login
        assert board.status()["connected"] is False
