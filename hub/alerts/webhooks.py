"""Alert notifications to webhooks: a generic JSON body, the WeCom (企业微信) and DingTalk (钉钉)
group robot formats, and the thread that delivers them.

Each alert gets one delivery row per webhook when it opens (:mod:`hub.alerts.lifecycle`); the
:class:`Notifier` posts the due ones and marks each ``sent`` once its webhook took it, so a hub
restart never sends an alert twice and a failing webhook is retried with backoff until it takes
it. It runs on its own thread: a slow or failing webhook never holds up the rule evaluation.
Webhook URLs hold keys (WeCom's ``key=``, DingTalk's ``access_token=``): logs name webhooks by
their ``name`` only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ..alert_settings import RULE_TITLES, Webhook
from ..config import DB_NAME, HubConfig
from ..store import Store, now_ms
from .lifecycle import get

_LOG = logging.getLogger(__name__)
#: WeCom's markdown ``content`` holds at most 4096 bytes of UTF-8; DingTalk's is kept as short.
MAX_MARKDOWN_BYTES = 4000
#: First retry delay of a failed delivery; it doubles up to ``[alerts] retry_max_s``.
RETRY_FIRST_S = 2.0
#: The notifier looks for due deliveries at least this often (a wake-up brings new ones at once).
IDLE_S = 5.0


class DeliveryError(Exception):
    """A webhook did not take a notification (network error, HTTP error, robot ``errcode``)."""


def json_body(alert: dict[str, Any], hall: str, tz: dt.tzinfo) -> dict[str, Any]:
    """The generic body: every field of the alert, ``key`` stable across resends for dedupe."""
    return {
        "source": "haocha",
        "hall": hall,
        "key": f"{hall}-alert-{alert['id']}" if alert["id"] is not None else f"{hall}-unstored-{alert['opened_ms']}",
        "id": alert["id"],
        "rule": alert["rule"],
        "title": RULE_TITLES.get(alert["rule"], alert["rule"]),
        "subject": alert["subject"],
        "summary": alert["summary"],
        "detail": alert["detail"],
        "opened_ms": alert["opened_ms"],
        "opened_at": _local(alert["opened_ms"], tz).isoformat(timespec="seconds"),
    }


def _local(ms: int, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz)


def _title(alert: dict[str, Any], hall: str) -> str:
    return f"好差评告警 · {hall} · {RULE_TITLES.get(alert['rule'], alert['rule'])}"


def _markdown(alert: dict[str, Any], hall: str, tz: dt.tzinfo) -> str:
    when = _local(alert["opened_ms"], tz).strftime("%Y-%m-%d %H:%M:%S")
    text = f"### {_title(alert, hall)}\n{alert['summary']}\n\n> 时间：{when}\n\n" + (
        f"> 告警编号：{alert['id']}（haocha alerts ack {alert['id']} --comment …）\n"
        if alert["id"] is not None
        else "> 中心数据库无法写入：此告警未能保存，写入恢复后在告警列表中出现\n"
    )
    return _cut(text, MAX_MARKDOWN_BYTES)


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    return text if len(data) <= limit else data[: limit - 3].decode(errors="ignore") + "…"


def wecom_body(alert: dict[str, Any], hall: str, tz: dt.tzinfo) -> dict[str, Any]:
    """A WeCom group robot markdown message."""
    return {"msgtype": "markdown", "markdown": {"content": _markdown(alert, hall, tz)}}


def dingtalk_body(alert: dict[str, Any], hall: str, tz: dt.tzinfo) -> dict[str, Any]:
    """A DingTalk group robot markdown message (the title shows in the chat list)."""
    return {"msgtype": "markdown", "markdown": {"title": _title(alert, hall), "text": _markdown(alert, hall, tz)}}


BODIES = {"json": json_body, "wecom": wecom_body, "dingtalk": dingtalk_body}


def dingtalk_signed(url: str, secret: str, at_ms: int) -> str:
    """``url`` with DingTalk's signature: ``timestamp`` (ms) and ``sign`` = URL-encoded Base64 of
    HMAC-SHA256, keyed with the robot's secret, over ``"{timestamp}\\n{secret}"``."""
    digest = hmac.new(secret.encode(), f"{at_ms}\n{secret}".encode(), hashlib.sha256).digest()
    query = urllib.parse.urlencode({"timestamp": str(at_ms), "sign": base64.b64encode(digest).decode()})
    return f"{url}{'&' if '?' in url else '?'}{query}"


def post(hook: Webhook, alert: dict[str, Any], hall: str, tz: dt.tzinfo) -> None:
    """Post ``alert`` to ``hook`` in its format; DeliveryError unless it was taken."""
    body = json.dumps(BODIES[hook.kind](alert, hall, tz), ensure_ascii=False).encode()
    url = dingtalk_signed(hook.url, hook.secret, now_ms()) if hook.kind == "dingtalk" and hook.secret else hook.url
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
            answer = response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, bad URLs
        raise DeliveryError(str(getattr(exc, "reason", exc))[:160]) from None
    if hook.kind != "json":
        _robot_answer(answer)


def _robot_answer(answer: bytes) -> None:
    """WeCom and DingTalk answer HTTP 200 with ``errcode`` 0 on success, another code otherwise."""
    try:
        reply = json.loads(answer)
    except ValueError:
        raise DeliveryError(f"the robot's answer is not JSON: {answer[:80]!r}") from None
    if not isinstance(reply, dict) or reply.get("errcode") != 0:
        raise DeliveryError(f"the robot refused it: {str(reply)[:160]}")


class Notifier:
    """The delivery thread (see the module docstring)."""

    def __init__(self, config: HubConfig, home: Path) -> None:
        self.config = config
        self.home = home
        self.hooks = {w.name: w for w in config.alerts.webhooks}
        self._wake = threading.Event()
        self._lock = threading.Lock()
        #: Alerts the store could not take (disk full), to post at once: (rule, subject) → (alert,
        #: webhooks still to post to); and the webhooks each one reached, for the stored alert later.
        self._unstored: dict[tuple[str, str], tuple[dict[str, Any], set[str]]] = {}
        self.unstored_sent: dict[tuple[str, str], set[str]] = {}

    def wake(self) -> None:
        """Any thread: deliveries were queued."""
        self._wake.set()

    def send_unstored(self, alert: dict[str, Any]) -> None:
        """Any thread: post an alert the store could not take (``id`` None), once per webhook,
        retried at every pass until taken while the hub runs. Used when the database cannot be
        written (the disk is full): the alert that says so could not be stored either."""
        key = (alert["rule"], alert["subject"])
        with self._lock:
            if key not in self._unstored and key not in self.unstored_sent:
                self._unstored[key] = (alert, set(self.hooks))
                self.unstored_sent[key] = set()
        self.wake()

    def unstored_sent_to(self, rule: str, subject: str) -> set[str]:
        """Webhooks that got (rule, subject) while the store could not take it."""
        with self._lock:
            return set(self.unstored_sent.get((rule, subject), ()))

    def settle_unstored(self, rule: str) -> None:
        """The store took ``rule``'s alerts: forget its unstored ones (those that hold are stored
        now, with the webhooks they reached marked sent; the others cleared)."""
        with self._lock:
            for key in [k for k in self.unstored_sent if k[0] == rule]:
                self._unstored.pop(key, None)
                del self.unstored_sent[key]

    def post_unstored(self) -> None:
        """Delivery thread: post the unstored alerts to the webhooks that have not taken them."""
        with self._lock:
            todo = [(key, alert, set(left)) for key, (alert, left) in self._unstored.items()]
        for key, alert, left in todo:
            for name in left:
                try:
                    post(self.hooks[name], alert, self.config.hall, self.config.tz)
                except DeliveryError as exc:
                    _LOG.warning("webhook %s did not take an unstored alert (%s); retrying", name, exc)
                    continue
                _LOG.info("unstored alert %s %s sent to webhook %s", *key, name)
                with self._lock:
                    if key in self._unstored:
                        self._unstored[key][1].discard(name)
                        self.unstored_sent[key].add(name)
            with self._lock:
                if key in self._unstored and not self._unstored[key][1]:
                    del self._unstored[key]

    def run(self, stopping: threading.Event) -> None:
        """Deliver until ``stopping``; never ends by an exception (each is logged, then retried)."""
        store: Store | None = None
        failing = False
        while not stopping.is_set():
            wait = IDLE_S
            self.post_unstored()
            try:
                store = store or Store(self.home / DB_NAME)
                wait = self.deliver_due(store, now_ms())
                failing = False
            except Exception:
                if not failing:
                    _LOG.exception("alert notifications cannot be read or marked; retrying")
                failing = True
                if store is not None:
                    store.close()
                store = None
            self._wake.wait(wait)
            self._wake.clear()
        if store is not None:
            store.close()

    def deliver_due(self, store: Store, at_ms: int) -> float:
        """Post every delivery due at ``at_ms``; returns seconds until the next one is due."""
        names = list(self.hooks)
        if not names:
            return IDLE_S
        marks = ", ".join("?" * len(names))
        rows = store.conn.execute(
            f"SELECT alert_id, webhook, attempts FROM alert_deliveries WHERE state = 'pending' AND next_ms <= ? "
            f"AND webhook IN ({marks}) ORDER BY next_ms LIMIT 100",
            (at_ms, *names),
        ).fetchall()
        for alert_id, webhook, attempts in rows:
            self._deliver(store, alert_id, self.hooks[webhook], attempts)
        nxt = store.conn.execute(
            f"SELECT min(next_ms) FROM alert_deliveries WHERE state = 'pending' AND webhook IN ({marks})", names
        ).fetchone()[0]
        return IDLE_S if nxt is None else max(0.05, min(IDLE_S, (nxt - now_ms()) / 1000))

    def _deliver(self, store: Store, alert_id: int, hook: Webhook, attempts: int) -> None:
        try:
            post(hook, get(store, alert_id), self.config.hall, self.config.tz)
        except DeliveryError as exc:
            delay = min(self.config.alerts.retry_max_s, RETRY_FIRST_S * 2 ** min(attempts, 30)) * random.uniform(0.8, 1)
            _LOG.warning("webhook %s did not take alert %d (%s); retrying in %.0fs", hook.name, alert_id, exc, delay)
            store.conn.execute(
                "UPDATE alert_deliveries SET attempts = attempts + 1, next_ms = ?, error = ? "
                "WHERE alert_id = ? AND webhook = ?",
                (now_ms() + int(delay * 1000), str(exc), alert_id, hook.name),
            )
            return
        store.conn.execute(
            "UPDATE alert_deliveries SET state = 'sent', sent_ms = ?, attempts = attempts + 1, error = NULL "
            "WHERE alert_id = ? AND webhook = ?",
            (now_ms(), alert_id, hook.name),
        )
        _LOG.info("alert %d sent to webhook %s", alert_id, hook.name)
