"""The CPython terminal's uplink and an ack beyond its journal's last seq (SPEC sections 3 and 9).

Such an ack is a hub bug or a wrong epoch: taking it would drop rows the hub never had. It used to
be kept as the newest ack, so every good ack that followed was ignored (the backlog never drained)
and an ERROR was logged every half second; the firmware forgot it. Both now run
:meth:`terminal.core.Window.heard`: refused once, with one ERROR, and forgotten."""

from __future__ import annotations

import logging
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from protocol.frames import Ack
from protocol.topics import Leaf, topic
from terminal.config import load
from terminal.journal import Journal
from terminal.uplink import Uplink

from .test_terminal import ROW, FakeClock, write_config


def _ack(uplink: Uplink, upto: int) -> None:
    """The hub's retained ack arriving on the paho thread."""
    msg = mqtt.MQTTMessage(topic=topic("H1", "T01", Leaf.ACK).encode())
    msg.payload = Ack(uplink.journal.epoch, upto).encode()
    uplink._on_message(uplink.client, None, msg)


def test_an_ack_beyond_last_seq_is_refused_once_and_a_good_ack_after_it_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(write_config(tmp_path))
    with Journal(config.journal_path, "T01") as journal:
        for _ in range(3):
            journal.append(dict(ROW))
        uplink = Uplink(config, journal, FakeClock())
        with caplog.at_level(logging.ERROR, logger="terminal.uplink"):
            _ack(uplink, 10)
            for _ in range(3):
                uplink._step()  # the sender thread's turns (not connected: acks only)
            assert journal.acked == 0  # nothing skipped
            _ack(uplink, 2)
            uplink._step()
        assert journal.acked == 2
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == ["hub acked seq 10 beyond last_seq 3: ignored"]
        assert uplink.counts["refused_acks"] == 1
