"""``hub.toml``: the hub's configuration, made by ``haocha hub init``."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from protocol.config import ConfigError, build, field, non_negative, one_of, port_number, positive, read_toml, shown
from protocol.levels import LEVEL_IDS
from protocol.rules import INVITE_TTL_MAX_MS
from protocol.topics import valid_id

from .alert_settings import AlertSettings

CONFIG_NAME = "hub.toml"
DB_NAME = "hub.db"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "is not a known time zone"
    return None


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    host: str = field("127.0.0.1", "MQTT broker host (terminals get it from `device add`)")
    port: int = field(1883, "MQTT broker port", check=port_number)
    user: str = field("hub", "the hub's broker user")
    password: str = field("", "the hub's broker password (made by `hub init`)")
    receive_maximum: int = field(1000, "MQTT 5 Receive Maximum: messages in flight to the hub", check=positive)
    max_queued_messages: int = field(
        100000, "broker queue per offline client (Mosquitto's default is 1000)", check=positive
    )
    max_queued_bytes: int = field(
        128 * 1024 * 1024,
        "broker queue per offline client in payload bytes, whichever limit comes first; the default "
        "holds max_queued_messages single-event frames and bounds what hostile frames can fill",
        check=positive,
    )
    autosave_interval_s: int = field(60, "Mosquitto persistence snapshot interval", check=positive)
    mosquitto: str = field("mosquitto", "the Mosquitto binary `broker run` starts")


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    host: str = field("127.0.0.1", "address of the hub's HTTP API")
    port: int = field(8080, "port of the hub's HTTP API", check=port_number)
    token: str = field("", "bearer token for writes (made by `hub init`)")
    tls: bool = field(
        False, "serve HTTPS with tls/http.crt, signed by the hall CA (clients trust tls/ca.crt); false: plain HTTP"
    )


#: Reason id → ``evalDetail`` code. Placeholders: replace them with the province's code table.
DEFAULT_REASON_CODES = {
    "cold": "501",
    "lazy": "502",
    "shirk": "503",
    "arbitrary": "504",
    "greedy": "505",
    "other": "506",
    "unspecified": "507",
}
TOTALS_PERIODS = ("day", "week", "month", "quarter", "year")


def _backoff_cap(value: float) -> str | None:
    return None if 0 < value <= 30 else "must be more than 0 and at most 30 seconds"


def _periods(value: tuple[str, ...]) -> str | None:
    bad = [p for p in value if p not in TOTALS_PERIODS]
    return f"has unknown periods {bad}; choose from {', '.join(TOTALS_PERIODS)}" if bad else None


def _dates(value: tuple[str, ...]) -> str | None:
    import datetime as dt

    for text in value:
        try:
            dt.date.fromisoformat(text)
        except ValueError:
            return f"must hold YYYY-MM-DD dates ({shown(text)} is not one)"
    return None


@dataclasses.dataclass(frozen=True)
class UpstreamSettings:
    url: str = field("", "base URL of the regional 好差评 system (http:// or https://); empty: no upstream")
    ca: str = field(
        "",
        "CA bundle (PEM file) an https:// upstream's certificate is checked against, relative to the home; "
        "empty: the system's trusted CAs",
    )
    adapter: str = field("national", "record format: `national` (SPEC section 6 field names)")
    signing: str = field(
        "none", "request signature: `hmac-sha256` (needs `secret`) or `none`", check=one_of("hmac-sha256", "none")
    )
    secret: str = field("", "signing secret shared with the regional system")
    app_id: str = field("", "application id sent with every request (X-App-Id)")
    batch_size: int = field(100, "most records in one request", check=positive)
    timeout_s: float = field(10.0, "HTTP timeout of one request", check=positive)
    poll_s: float = field(1.0, "how often an idle sender looks for new records", check=positive)
    backoff_initial_s: float = field(1.0, "first retry delay after a failed request", check=positive)
    backoff_max_s: float = field(30.0, "retry delay cap (exponential backoff with jitter)", check=_backoff_cap)
    totals_interval_s: float = field(3600.0, "how often totals are queued; 0: only `upstream push-totals`")
    totals_periods: tuple[str, ...] = field(("day", "month"), "periods whose totals the schedule sends", check=_periods)
    reason_codes: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_REASON_CODES), doc="reason id → evalDetail code"
    )
    gap_hold_s: float = field(
        600.0,
        "how long ratings stored beyond a gap in a terminal's sequence wait for it before going upstream "
        "(and opening tickets) out of order",
        check=positive,
    )
    keep_sent_days: float = field(
        30.0, "days sent records stay in the outbox (for `upstream status` and inspection); 0: forever",
        check=lambda v: None if v >= 0 else "must be 0 or more",
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TicketSettings:
    deadline_days: int = field(15, "working days to answer a bad review", check=positive)
    holidays: tuple[str, ...] = field((), "public holidays (YYYY-MM-DD), not working days", check=_dates)
    workdays: tuple[str, ...] = field((), "weekend days that are working days (调休, YYYY-MM-DD)", check=_dates)


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    max_batch: int = field(2000, "most MQTT messages committed in one transaction", check=positive)


@dataclasses.dataclass(frozen=True)
class MisuseSettings:
    burst_gap_s: float = field(
        0.0,
        "flag free-mode ratings closer than this on one terminal (a person cannot be served that fast); 0: off",
        check=lambda v: None if v >= 0 else "must be 0 or more",
    )


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    difficult_min_ratings: int = field(
        30, "最难办窗口: a window needs at least this many ratings in the period to be listed", check=positive
    )
    difficult_top: int = field(10, "最难办窗口: how many windows the list names", check=positive)


def _names(value: tuple[str, ...]) -> str | None:
    bad = [n for n in value if not n or any(c.isspace() or c in "/,*" for c in n)]
    return f"has names that are not host names or addresses: {bad}" if bad else None


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    client_certificates: bool = field(
        False,
        "every terminal also proves itself with its own certificate from the hall CA (Mosquitto "
        "require_certificate, use_identity_as_username); `device add` writes client.crt and client.key",
    )
    cert_days: int = field(825, "validity of the certificates `hub init` and `tls renew` issue", check=positive)
    names: tuple[str, ...] = field(
        (),
        "more names or addresses clients reach the broker and the API by (besides [broker] host, [http] host "
        "and loopback); `tls renew` puts them in the certificates",
        check=_names,
    )


@dataclasses.dataclass(frozen=True)
class ConsoleSettings:
    max_failed_logins: int = field(5, "failed logins in a row that lock an account", check=positive)
    lockout_minutes: float = field(15.0, "how long a locked account stays locked", check=positive)
    session_hours: float = field(12.0, "how long a console login lasts at most", check=positive)
    idle_minutes: float = field(
        30.0, "a console login unused this long ends (a supervisor who walks away from a hall PC)", check=positive
    )


@dataclasses.dataclass(frozen=True)
class HubConfig:
    hall: str = field(doc="hall id", check=lambda v: None if valid_id(v) else "must be 1-32 of A-Z a-z 0-9 _ -")
    timezone: str = field(
        "Asia/Shanghai", "hall local time zone: days, months and years of the counters", check=_timezone
    )
    satisfaction_threshold: str = field("basic", "lowest level counted as satisfied", check=one_of(*LEVEL_IDS))
    invite_s: float = field(
        60.0,
        "how long an invitation stays open (at most a week: terminals refuse longer ones)",
        check=lambda v: None if 0 < v * 1000 <= INVITE_TTL_MAX_MS else "must be more than 0 and at most a week",
    )
    key_grace_s: float = field(
        7 * 86400.0,
        "after a device's key is rotated, how long frames signed with its old key are still accepted "
        "(frames in flight or held by the broker while the hub was down)",
        check=non_negative,
    )
    broker: BrokerSettings = field(default_factory=BrokerSettings, doc="[broker] table")
    http: HttpSettings = field(default_factory=HttpSettings, doc="[http] table")
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings, doc="[upstream] table")
    tickets: TicketSettings = field(default_factory=TicketSettings, doc="[tickets] table")
    ingest: IngestSettings = field(default_factory=IngestSettings, doc="[ingest] table")
    misuse: MisuseSettings = field(default_factory=MisuseSettings, doc="[misuse] table")
    tls: TlsSettings = field(default_factory=TlsSettings, doc="[tls] table: the hall CA's certificates")
    alerts: AlertSettings = field(default_factory=AlertSettings, doc="[alerts] table: alert rules and webhooks")
    reports: ReportSettings = field(default_factory=ReportSettings, doc="[reports] table: published rankings")
    console: ConsoleSettings = field(default_factory=ConsoleSettings, doc="[console] table: logins and sessions")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def resolve_home(home: str | Path | None) -> Path:
    """``--home``, else ``$HAOCHA_HOME``, else the current directory."""
    return Path(home or os.environ.get("HAOCHA_HOME") or ".").resolve()


def load(home: Path) -> HubConfig:
    path = home / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{path}: no such file (run `haocha hub init --home {home} --hall H` first)")
    return build(HubConfig, read_toml(path), str(path))


def rotate_token(home: Path) -> str:
    """A new HTTP bearer token in ``hub.toml`` (a running hub checks the next request against it);
    the old one stops at once. Returns the new token."""
    path = home / CONFIG_NAME
    load(home)  # a valid file first: never rewrite one that is broken
    data = read_toml(path)
    token = secrets.token_urlsafe(32)
    data.setdefault("http", {})["token"] = token
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        tomli_w.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return token


def split_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or port_number(int(port)):
        raise ConfigError(f"{what} {shown(text)} must be HOST:PORT")
    return host, int(port)


def write_new(home: Path, hall: str, broker: str, http: str, upstream: str) -> HubConfig:
    """Make ``hub.toml`` with fresh secrets; refuses to overwrite an existing one."""
    bhost, bport = split_address(broker, "--broker")
    hhost, hport = split_address(http, "--http")
    data = {
        "hall": hall,
        "timezone": "Asia/Shanghai",
        "broker": {"host": bhost, "port": bport, "user": "hub", "password": secrets.token_urlsafe(24)},
        "http": {"host": hhost, "port": hport, "token": secrets.token_urlsafe(32)},
        "upstream": {"url": upstream},
    }
    config = build(HubConfig, data, "hub init")
    path = home / CONFIG_NAME
    with open(path, "xb") as f:
        os.fchmod(f.fileno(), 0o600)
        tomli_w.dump(data, f)
    return config
