"""Alert notifications against a local HTTP receiver: the generic JSON body, WeCom's and
DingTalk's robot formats (DingTalk's signature checked as DingTalk checks it), retries with
backoff, and exactly one delivery per alert and webhook across restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.alerts import lifecycle, webhooks
from hub.alerts.engine import AlertEngine
from hub.alerts.lifecycle import Finding
from hub.alerts.webhooks import Notifier
from hub.config import HubConfig
from hub.store import Store, now_ms
from protocol.config import build
from simulators.hall import wait_for
from tests.webhook_receiver import Receiver

SECRET = "SEC0123456789abcdef"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "hub.db", create=True) as s:
        yield s


def hub_config(receiver: Receiver, retry_max_s: float = 300.0) -> HubConfig:
    hooks = [
        {"name": "generic", "kind": "json", "url": receiver.url("/json")},
        {"name": "wecom", "kind": "wecom", "url": receiver.url("/cgi-bin/webhook/send?key=k1")},
        {"name": "dingtalk", "kind": "dingtalk", "url": receiver.url("/robot/send?access_token=t1"), "secret": SECRET},
    ]
    return build(HubConfig, {"hall": "H1", "alerts": {"webhooks": hooks, "retry_max_s": retry_max_s}}, "test")


def open_alert(store: Store, config: HubConfig, summary: str = "窗口 综合窗（W01）15 分钟内差评 4/4（100%）") -> int:
    [alert_id] = lifecycle.sync(
        store,
        "bad_share",
        [Finding("bad_share", "W01", summary, {"window": "W01", "ratings": 4, "bad": 4})],
        [w.name for w in config.alerts.webhooks],
        now_ms(),
    )
    return alert_id


def states(store: Store) -> dict[str, tuple[str, int]]:
    rows = store.conn.execute("SELECT webhook, state, attempts FROM alert_deliveries")
    return {w: (s, a) for w, s, a in rows}


def test_each_format_reaches_its_webhook_once_across_restarts(store: Store, receiver: Receiver) -> None:
    config = hub_config(receiver)
    alert_id = open_alert(store, config)
    Notifier(config, store.path.parent).deliver_due(store, now_ms())
    assert states(store) == {"generic": ("sent", 1), "wecom": ("sent", 1), "dingtalk": ("sent", 1)}
    Notifier(config, store.path.parent).deliver_due(store, now_ms() + 10**9)  # a restarted hub
    [generic] = receiver.taken("/json")
    [wecom] = receiver.taken("/cgi-bin/webhook/send")
    [ding] = receiver.taken("/robot/send")
    assert len(receiver.taken()) == 3

    assert generic.content_type == "application/json; charset=utf-8"
    body = generic.body
    assert body["key"] == f"H1-alert-{alert_id}" and body["id"] == alert_id
    assert (body["hall"], body["rule"], body["title"], body["subject"]) == ("H1", "bad_share", "差评集中", "W01")
    assert body["detail"] == {"window": "W01", "ratings": 4, "bad": 4}
    assert body["opened_at"].endswith("+08:00") and "4/4" in body["summary"]

    assert wecom.query == {"key": "k1"}
    assert list(wecom.body) == ["msgtype", "markdown"] and wecom.body["msgtype"] == "markdown"
    assert list(wecom.body["markdown"]) == ["content"]
    assert "差评集中" in wecom.body["markdown"]["content"] and "4/4" in wecom.body["markdown"]["content"]

    assert ding.body["msgtype"] == "markdown" and list(ding.body["markdown"]) == ["title", "text"]
    assert ding.body["markdown"]["title"] == "好差评告警 · H1 · 差评集中"
    assert "4/4" in ding.body["markdown"]["text"]


def test_dingtalk_signature_is_the_one_dingtalk_checks(store: Store, receiver: Receiver) -> None:
    config = hub_config(receiver)
    open_alert(store, config)
    before = now_ms()
    Notifier(config, store.path.parent).deliver_due(store, now_ms())
    [ding] = receiver.taken("/robot/send")
    assert ding.query["access_token"] == "t1"
    timestamp = ding.query["timestamp"]
    assert before <= int(timestamp) <= now_ms()  # milliseconds; DingTalk refuses one an hour off
    expected = hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest()
    assert base64.b64decode(ding.query["sign"]) == expected


def test_the_signed_url_is_url_encoded() -> None:
    url = webhooks.dingtalk_signed("https://oapi.dingtalk.com/robot/send?access_token=t", "s", 1700000000000)
    assert url.startswith("https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000&sign=")
    sign = url.rsplit("sign=", 1)[1]
    assert "+" not in sign and "/" not in sign and "=" not in sign  # %2B, %2F, %3D
    assert webhooks.dingtalk_signed("http://h/robot", "s", 1).startswith("http://h/robot?timestamp=1&sign=")


def test_markdown_stays_within_the_robots_limit(store: Store, receiver: Receiver) -> None:
    config = hub_config(receiver)
    open_alert(store, config, summary="差评" * 3000)
    Notifier(config, store.path.parent).deliver_due(store, now_ms())
    [wecom] = receiver.taken("/cgi-bin/webhook/send")
    assert len(wecom.body["markdown"]["content"].encode()) <= 4096


def test_a_failing_webhook_is_retried_until_it_takes_the_alert(store: Store, receiver: Receiver) -> None:
    config = hub_config(receiver, retry_max_s=0.3)
    receiver.answers = [(500, {}), (200, {"errcode": 310000, "errmsg": "sign not match"}), (200, {"errcode": 45009})]
    open_alert(store, config)
    notifier = Notifier(config, store.path.parent)
    stopping = threading.Event()
    thread = threading.Thread(target=notifier.run, args=(stopping,), daemon=True)
    thread.start()
    notifier.wake()
    try:
        wait_for(lambda: all(s == "sent" for s, _a in states(store).values()), 30, "every webhook to take the alert")
    finally:
        stopping.set()
        notifier.wake()
        thread.join(timeout=10)
    assert receiver.refused == 3
    assert sum(a for _s, a in states(store).values()) == 3 + 3  # three refusals, three deliveries
    assert len(receiver.taken()) == 3  # each webhook took it once
    assert store.conn.execute("SELECT count(*) FROM alert_deliveries WHERE error IS NOT NULL").fetchone() == (0,)


def test_an_unreachable_webhook_backs_off_and_the_others_go_on(
    store: Store, receiver: Receiver, tmp_path: Path
) -> None:
    config = hub_config(receiver)
    dead: dict[str, Any] = {"name": "dead", "kind": "json", "url": "http://127.0.0.1:9/x", "timeout_s": 1}
    hooks = [w.__dict__ for w in config.alerts.webhooks] + [dead]
    config = build(HubConfig, {"hall": "H1", "alerts": {"webhooks": hooks}}, "test")
    open_alert(store, config)
    wait = Notifier(config, tmp_path).deliver_due(store, now_ms())
    assert len(receiver.taken()) == 3
    state, attempts = states(store)["dead"]
    assert (state, attempts) == ("pending", 1) and 0 < wait <= webhooks.IDLE_S
    next_ms, error = store.conn.execute("SELECT next_ms, error FROM alert_deliveries WHERE webhook = 'dead'").fetchone()
    assert next_ms > now_ms() and "refused" in error.lower()


def test_an_alert_the_store_cannot_take_is_posted_at_once_and_never_again(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk is full: the writer's commits fail, and so does storing the alert that says so.
    It is posted anyway, once; stored later (the disk freed), it is not posted a second time."""
    config = hub_config(receiver)
    health = {"commit_failures": 0}
    engine = AlertEngine(config, store.path.parent, lambda: health)
    engine.tick(store, now_ms())
    store.conn.execute("CREATE TRIGGER full BEFORE INSERT ON alerts BEGIN SELECT RAISE(FAIL, 'disk is full'); END")
    health["commit_failures"] = 2
    with caplog.at_level(logging.ERROR, logger="hub.alerts.engine"):
        for _ in range(3):
            assert engine.tick(store, now_ms()) == []
            engine.notifier.post_unstored()
    assert [r.message for r in caplog.records] == [
        "alert rule commit_failures: the hub database cannot be read or written"
    ]
    assert len(receiver.taken()) == 3
    [generic] = receiver.taken("/json")
    assert generic.body["id"] is None and generic.body["key"].startswith("H1-unstored-")
    assert generic.body["rule"] == "commit_failures" and generic.body["title"] == "数据库写入失败"
    assert "未能保存" in receiver.taken("/cgi-bin/webhook/send")[0].body["markdown"]["content"]

    store.conn.execute("DROP TRIGGER full")
    [alert_id] = engine.tick(store, now_ms())
    assert states(store) == {"generic": ("sent", 0), "wecom": ("sent", 0), "dingtalk": ("sent", 0)}
    engine.notifier.deliver_due(store, now_ms() + 10**9)
    engine.notifier.post_unstored()
    assert len(receiver.taken()) == 3
    assert lifecycle.get(store, alert_id)["rule"] == "commit_failures"


def test_a_webhook_down_for_days_keeps_its_retry_delay_capped(store: Store, receiver: Receiver) -> None:
    config = hub_config(receiver, retry_max_s=300)
    open_alert(store, config)
    store.conn.execute("UPDATE alert_deliveries SET attempts = 5000")  # 2 ** 5000 s would not even be a float
    receiver.answers = [(503, {})] * 3
    Notifier(config, store.path.parent).deliver_due(store, now_ms())
    waits = [n - now_ms() for (n,) in store.conn.execute("SELECT next_ms FROM alert_deliveries")]
    assert all(0 < w <= 300_000 for w in waits) and receiver.refused == 3
