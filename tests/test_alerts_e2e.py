"""An alert end to end: a terminal presses bad ratings through a real Mosquitto and hub; the
hub's alert thread opens the alert and its notifier posts it to two webhook receivers, exactly
once each, also after the hub is killed and started again."""

from __future__ import annotations

import signal
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hub.alerts import lifecycle
from simulators.hall import Hall, wait_for
from tests.rig import TerminalRig
from tests.webhook_receiver import Receiver

BAD = "dissatisfied"


@pytest.fixture
def alert_hall(tmp_path: Path, receiver: Receiver) -> Iterator[Hall]:
    hooks = [
        {"name": "generic", "kind": "json", "url": receiver.url("/json")},
        {"name": "wecom", "kind": "wecom", "url": receiver.url("/cgi-bin/webhook/send?key=k")},
    ]
    hall = Hall(tmp_path / "hall", alerts={"interval_s": 0.5, "silent": {"enabled": False}, "webhooks": hooks})
    try:
        hall.add_window("W01", "综合受理一号窗")
        hall.add_device("T01", "W01")
        no_lockout(hall.terminal_config("T01"))
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: "hub connected to" in hall.log("hub"), 30, "the hub's first session")
        yield hall
    finally:
        hall.stop_all()


def no_lockout(config: Path) -> None:
    """Free mode's 10 s between accepted presses would make the test wait 30 s for nothing."""
    data = tomllib.loads(config.read_text())
    data.setdefault("timing", {})["lockout_s"] = 0.0
    config.write_text(tomli_w.dumps(data))


def live_alert(hall: Hall) -> dict[str, Any] | None:
    with hall.store() as store:
        alerts = lifecycle.list_alerts(store, "live")
    return alerts[0] if alerts else None


def undelivered(hall: Hall) -> int:
    with hall.store() as store:
        return int(store.conn.execute("SELECT count(*) FROM alert_deliveries WHERE state != 'sent'").fetchone()[0])


def press_and_see(hall: Hall, rig: TerminalRig, ratings: int) -> None:
    """Press one more bad rating and wait until the hub's alert thread has counted it: proof the
    loop ran after everything before (the same alert is updated, no new one opened)."""
    rig.press(BAD)
    wait_for(
        lambda: (a := live_alert(hall)) is not None and a["detail"]["ratings"] == ratings,
        30,
        f"the alert to count {ratings} ratings",
    )


def test_four_bad_ratings_reach_each_webhook_exactly_once(alert_hall: Hall, receiver: Receiver) -> None:
    rig = TerminalRig(alert_hall, "T01")
    try:
        for _ in range(4):
            rig.press(BAD)
        pressed = time.monotonic()
        wait_for(lambda: len(receiver.taken()) == 2, 60, "the alert at both webhooks within a minute")
        print(f"4th bad press → both webhooks: {time.monotonic() - pressed:.2f} s")
        [generic] = receiver.taken("/json")
        assert (generic.body["rule"], generic.body["subject"]) == ("bad_share", "W01")
        assert generic.body["detail"]["ratings"] == generic.body["detail"]["bad"] == 4
        assert "综合受理一号窗" in generic.body["summary"]
        [wecom] = receiver.taken("/cgi-bin/webhook/send")
        assert wecom.body["msgtype"] == "markdown" and "4/4" in wecom.body["markdown"]["content"]

        press_and_see(alert_hall, rig, 5)
        wait_for(lambda: undelivered(alert_hall) == 0, 30, "nothing left to deliver")
        assert len(receiver.taken()) == 2  # still one post per webhook

        alert_hall.kill("hub", signal.SIGKILL)
        alert_hall.start_hub()
        press_and_see(alert_hall, rig, 6)  # the restarted hub's alert thread has run
        assert undelivered(alert_hall) == 0
        assert len(receiver.taken()) == 2 and receiver.refused == 0
        alert = live_alert(alert_hall)
        assert alert is not None and alert["id"] == generic.body["id"]
    finally:
        rig.close()
    assert "Traceback" not in alert_hall.log("hub")
