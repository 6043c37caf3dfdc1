"""``hub.toml``: the hub's configuration, made by ``haocha hub init``."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from protocol.config import ConfigError, build, field, one_of, port_number, positive, read_toml
from protocol.levels import LEVEL_IDS
from protocol.topics import valid_id

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
    autosave_interval_s: int = field(60, "Mosquitto persistence snapshot interval", check=positive)
    mosquitto: str = field("mosquitto", "the Mosquitto binary `broker run` starts")


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    host: str = field("127.0.0.1", "address of the hub's HTTP API")
    port: int = field(8080, "port of the hub's HTTP API", check=port_number)
    token: str = field("", "bearer token for writes (made by `hub init`)")


@dataclasses.dataclass(frozen=True)
class UpstreamSettings:
    url: str = field("", "base URL of the regional 好差评 system; empty: no upstream")


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
class HubConfig:
    hall: str = field(doc="hall id", check=lambda v: None if valid_id(v) else "must be 1-32 of A-Z a-z 0-9 _ -")
    timezone: str = field(
        "Asia/Shanghai", "hall local time zone: days, months and years of the counters", check=_timezone
    )
    satisfaction_threshold: str = field("basic", "lowest level counted as satisfied", check=one_of(*LEVEL_IDS))
    invite_s: float = field(60.0, "how long an invitation stays open", check=positive)
    broker: BrokerSettings = field(default_factory=BrokerSettings, doc="[broker] table")
    http: HttpSettings = field(default_factory=HttpSettings, doc="[http] table")
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings, doc="[upstream] table")
    ingest: IngestSettings = field(default_factory=IngestSettings, doc="[ingest] table")
    misuse: MisuseSettings = field(default_factory=MisuseSettings, doc="[misuse] table")

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


def split_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or port_number(int(port)):
        raise ConfigError(f"{what} {text!r} must be HOST:PORT")
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
