"""The firmware's MQTT client (``terminal/micro/mqtt.py``) in ``micropython -X heapsize=64k``
against a real Mosquitto: UTF-8 payloads, an oversize message waiting in the board's persistent
session, and a broker the board cannot reach or log in to (its log must say so, once, with the
broker's address)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from protocol.transport import client_tls
from simulators.hall import free_port
from terminal.micro_host import compile_firmware, pem_to_der

try:
    from .micro_harness import KEY_HEX, Broker, StandInHub, board_on, logged, own_ca, run_micropython, wait_for
except ImportError:
    from micro_harness import (  # type: ignore[no-redef]
        KEY_HEX,
        Broker,
        StandInHub,
        board_on,
        logged,
        own_ca,
        run_micropython,
        wait_for,
    )

PREFIX = "haocha/v1/H1/M01/"
#: Longer than the retries at about 1 and 3 s after the first failure: what the log does meanwhile.
RETRIES_S = 3.5


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_firmware(tmp_path_factory.mktemp("fw"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as b:
        yield b


def paho_client(broker: Broker, name: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    assert broker.ca is not None
    client.tls_set_context(client_tls(broker.ca))
    client.connect_async("127.0.0.1", broker.port)
    client.loop_start()
    wait_for(client.is_connected, 10, f"{name} to connect")
    return client


ECHO = """
import json, mqtt
from time import ticks_diff, ticks_ms
got = []
c = mqtt.Client("utf8-check", "127.0.0.1", %d, None, None, 10, ("t/will", b"gone"), (("t/echo", 1),), print, [%r])
c.on_message = lambda topic, payload, retained: got.append(bytes(payload))
c.start()
t0 = ticks_ms()
while c.state != mqtt.UP and c.error is None and ticks_diff(ticks_ms(), t0) < 5000:
    c.poll(20)
up = c.connected
if up:
    c.publish("t/echo", %r)
    c.publish("t/echo", b"after")
while c.connected and len(got) < 2 and ticks_diff(ticks_ms(), t0) < 10000:
    c.poll(20)
print(json.dumps({"up": up, "got": [g.decode() for g in got], "error": c.error, "connected": c.connected}))
"""


def test_a_non_ascii_text_payload_goes_out_as_utf8_and_comes_back(tmp_path: Path, broker: Broker) -> None:
    text = "案件 受理-0001：张三（窗口一）"
    assert broker.ca is not None
    ca_der = tmp_path / "ca.der"
    ca_der.write_bytes(pem_to_der(broker.ca))
    seen: list[bytes] = []
    watcher = paho_client(broker, "watcher")
    watcher.on_message = lambda c, u, msg: seen.append(msg.payload)
    watcher.subscribe("t/echo", qos=1)
    try:
        out = json.loads(
            run_micropython(ECHO % (broker.port, str(ca_der), text), timeout_s=30, heap="256k").strip().splitlines()[-1]
        )
        wait_for(lambda: len(seen) >= 2, 10, "both messages at the watcher")
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert out == {"up": True, "got": [text, "after"], "error": None, "connected": True}
    assert seen == [text.encode(), b"after"]  # sized in bytes: the stream stays in step


def test_an_oversize_command_in_the_session_is_skipped_once_and_not_redelivered(
    tmp_path: Path, firmware: Path, broker: Broker
) -> None:
    with StandInHub("H1", broker.port, {"M01": bytes.fromhex(KEY_HEX)}, broker.ca):
        with board_on(tmp_path, firmware, broker.port, ca=broker.ca) as board:
            wait_for(lambda: board.status()["connected"], 10, "the board's first link (its session)")
            assert board.quit() == 0
        # while the board is away, its persistent session queues a command far over its buffer
        sender = paho_client(broker, "sender")
        big = json.dumps({"cmd": "invite", "case": "C" * 20000, "ttl_ms": 60000}).encode()
        sender.publish(PREFIX + "cmd", big, qos=1).wait_for_publish(10)
        sender.disconnect()
        sender.loop_stop()
        for start in range(2):
            with board_on(tmp_path, firmware, broker.port, ca=broker.ca) as board:
                if start == 0:
                    wait_for(lambda: logged(board, "skipped"), 10, "the oversize message skipped")
                seq, kind = board.press("press satisfied")
                assert kind == "rating"
                wait_for(lambda seq=seq: board.status()["acked"] == seq, 15, "the press acked by the hub")
                # one link, kept; the second start gets nothing redelivered
                assert logged(board, "skipped") == (
                    [
                        f"skipped a {len(big) + 2 + len(PREFIX + 'cmd') + 2}-byte message on {PREFIX}cmd: "
                        "over the 2048-byte limit"
                    ]
                    if start == 0
                    else []
                )
                assert len(logged(board, "connected to")) == 1 and not logged(board, "lost the link")
                assert board.quit() == 0


def test_a_closed_port_is_logged_at_once_with_the_address_and_not_at_every_retry(
    tmp_path: Path, firmware: Path
) -> None:
    port = free_port()
    ca = own_ca(tmp_path / "tls")[0]  # the CA the broker started later uses
    with board_on(tmp_path, firmware, port, ca=ca) as board:
        wait_for(lambda: logged(board, "cannot connect"), 3, "the first log line")
        time.sleep(RETRIES_S)  # the retries at 1 and 3 s: not logged
        assert logged(board, "cannot connect") == [
            f"cannot connect to 127.0.0.1:{port}: connection refused (no broker on that port?)"
        ]
        with Broker(tmp_path, port=port):
            line = wait_for(lambda: logged(board, "connected to"), 15, "the link once the broker is there")
            assert line[0].startswith(f"connected to 127.0.0.1:{port} after ")
            assert int(line[0].split(" after ")[1].split()[0]) >= 3


def test_an_unknown_host_name_is_logged_at_once_and_not_at_every_retry(tmp_path: Path, firmware: Path) -> None:
    with board_on(tmp_path, firmware, 1883, host="broker.invalid") as board:
        wait_for(lambda: logged(board, "cannot connect"), 3, "the first log line")
        time.sleep(RETRIES_S)
        [line] = logged(board, "cannot connect")
        assert line.startswith("cannot connect to broker.invalid:1883: host name not resolved")


def test_a_wrong_password_is_logged_at_once_and_not_at_every_retry(tmp_path: Path, firmware: Path) -> None:
    broker = Broker(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "M01", "right"], check=True)
    broker.conf.write_text(
        broker.conf.read_text().replace(
            "allow_anonymous true", f"allow_anonymous false\npassword_file {passwords}\nlog_type all"
        )
    )
    with broker, board_on(tmp_path, firmware, broker.port, ca=broker.ca, password="wrong") as board:
        wait_for(lambda: logged(board, "cannot connect"), 3, "the first log line")
        time.sleep(RETRIES_S)
        assert logged(board, "cannot connect") == [
            f"cannot connect to 127.0.0.1:{broker.port}: the broker refused the login: not authorised (CONNACK 5)"
        ]
        refusals = (tmp_path / "mosquitto.log").read_text().count("not authorised")
        assert refusals >= 3  # it kept trying: only the log stayed quiet
