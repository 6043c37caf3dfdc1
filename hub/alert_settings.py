"""The ``[alerts]`` table of ``hub.toml``: rules, opening hours and webhooks.

Only :mod:`protocol.config` is imported here, so :mod:`hub.config` can hold these tables without
loading the alert engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from protocol.config import field, one_of, positive, shown

#: Rule name → its title in notifications and the console.
RULE_TITLES = {
    "bad_share": "差评集中",
    "silent": "终端静默",
    "backlog": "终端积压",
    "upstream_parked": "上报被拒",
    "upstream_pending": "上报滞留",
    "commit_failures": "数据库写入失败",
}
WEBHOOK_KINDS = ("json", "wecom", "dingtalk")
_HOURS_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")


def _share(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be a fraction more than 0 and at most 1"


def _hours(value: str) -> str | None:
    m = _HOURS_RE.fullmatch(value)
    if m is None:
        return "must be HH:MM-HH:MM (24-hour clock), e.g. 09:00-17:00"
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    return None if start < end <= 24 * 60 else "must end after it starts, on the same day"


def _url(value: str) -> str | None:
    return None if re.fullmatch(r"https?://[^\s/]+\S*", value) else "must be an http:// or https:// URL"


@dataclasses.dataclass(frozen=True)
class BadShareRule:
    enabled: bool = field(True, "alert when a window's share of bad reviews is high")
    share: float = field(0.5, "share of bad reviews (不满意, 非常不满意) that alerts, 0-1", check=_share)
    minutes: float = field(15.0, "sliding period the share is taken over", check=positive)
    min_ratings: int = field(4, "fewest ratings in the period for the share to count", check=positive)


@dataclasses.dataclass(frozen=True)
class SilentRule:
    enabled: bool = field(True, "alert when a terminal sends nothing during opening hours")
    minutes: float = field(60.0, "minutes of opening hours without any event from the terminal", check=positive)


@dataclasses.dataclass(frozen=True)
class BacklogRule:
    enabled: bool = field(True, "alert when an online terminal's backlog (unacknowledged events) keeps growing")
    min_backlog: int = field(100, "smallest backlog that alerts", check=positive)
    minutes: float = field(5.0, "the backlog has not shrunk over this long", check=positive)


@dataclasses.dataclass(frozen=True)
class UpstreamRule:
    parked: bool = field(True, "alert while the regional system has refused (parked) records")
    pending_minutes: float = field(
        60.0, "alert when the oldest record waiting to go upstream is older than this; 0: off",
        check=lambda v: None if v >= 0 else "must be 0 or more",
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CommitRule:
    enabled: bool = field(True, "alert when the hub's writer fails to commit (disk full, I/O error)")
    quiet_minutes: float = field(2.0, "the alert closes after this long without a failed commit", check=positive)


@dataclasses.dataclass(frozen=True)
class Webhook:
    name: str = field(doc="a name for logs and the console (the URL holds a key and is never logged)")
    url: str = field(doc="where alerts are posted (WeCom: …/cgi-bin/webhook/send?key=…)", check=_url)
    kind: str = field(
        "json",
        "`json` (a generic body), `wecom` (企业微信 group robot) or `dingtalk` (钉钉 group robot)",
        check=one_of(*WEBHOOK_KINDS),
    )
    secret: str = field("", "DingTalk robot signing secret (SEC…); empty: unsigned")
    timeout_s: float = field(10.0, "HTTP timeout of one post", check=positive)


def _webhooks(value: tuple[Webhook, ...]) -> str | None:
    names = [w.name for w in value]
    if any(not n for n in names) or len(set(names)) != len(names):
        return "must have distinct, non-empty names"
    bad = [w.name for w in value if w.secret and w.kind != "dingtalk"]
    return f"has a secret on a webhook that is not dingtalk: {shown(bad)}" if bad else None


@dataclasses.dataclass(frozen=True)
class AlertSettings:
    enabled: bool = field(True, "evaluate the alert rules in the hub daemon")
    interval_s: float = field(15.0, "how often the rules are evaluated", check=positive)
    opening: str = field("09:00-17:00", "the hall's opening hours (hall local time), for `silent`", check=_hours)
    days: str = field(
        "workdays",
        "opening days: `workdays` (Monday-Friday with [tickets] holidays and workdays) or `every` day",
        check=one_of("workdays", "every"),
    )
    clear_minutes: float = field(
        5.0,
        "an alert closes once its condition has been clear this long, so a condition that flickers is "
        "not notified again each time; 0: at the first evaluation that finds it clear",
        check=lambda v: None if v >= 0 else "must be 0 or more",
    )
    retry_max_s: float = field(300.0, "cap of the retry delay of a webhook that fails", check=positive)
    bad_share: BadShareRule = field(default_factory=BadShareRule, doc="[alerts.bad_share] table")
    silent: SilentRule = field(default_factory=SilentRule, doc="[alerts.silent] table")
    backlog: BacklogRule = field(default_factory=BacklogRule, doc="[alerts.backlog] table")
    upstream: UpstreamRule = field(default_factory=UpstreamRule, doc="[alerts.upstream] table")
    commit_failures: CommitRule = field(default_factory=CommitRule, doc="[alerts.commit_failures] table")
    webhooks: tuple[Webhook, ...] = field((), "[[alerts.webhooks]] tables: where alerts are posted", check=_webhooks)

    def opening_times(self) -> tuple[dt.time, dt.time | None]:
        """(start, end) of the opening hours; end None for 24:00."""
        start, end = self.opening.split("-")
        return dt.time.fromisoformat(start), None if end == "24:00" else dt.time.fromisoformat(end)
