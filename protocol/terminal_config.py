"""``terminal.toml``: the one file a technician copies onto a terminal (written by ``device add``).

Relative paths resolve against the folder of the file. Every value that rows carry (window, staff,
item, reason and level ids, the device id in a staff key's local case number) is checked with
:mod:`protocol.rules`: a terminal refuses to start with a config that would make rows the hub can
only store as invalid, rather than light "thank you" for them.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .config import ConfigError, build, field, non_negative, one_of, port_number, positive, read_toml
from .levels import DEFAULT_REASONS, LEVEL_IDS, UNSPECIFIED_REASON
from .rules import TEXT_MAX, valid_id, valid_text
from .transport import client_tls

KINDS = ("gpio", "modbus", "serial", "micro")
MODES = ("free", "invited", "staff")

#: BCM pins of the reference wiring (README, "Wiring a Raspberry Pi terminal").
DEFAULT_KEY_PINS = {"very_satisfied": 5, "satisfied": 6, "basic": 13, "dissatisfied": 19, "very_dissatisfied": 26}


def _device_id(value: str) -> str | None:
    return None if valid_id(value) and value != "hub" else "must be 1-32 of A-Z a-z 0-9 _ - and not 'hub'"


def _hall_or_window_id(value: str) -> str | None:
    return None if valid_id(value) else "must be 1-32 of A-Z a-z 0-9 _ -"


def _text(value: str | None) -> str | None:
    """A case, item or staff value that events carry."""
    return None if value is None or valid_text(value) else f"must be 1-{TEXT_MAX} characters without control characters"


def _mac_key(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{64}", value) else "must be 64 lowercase hex digits (32 bytes)"


def _key_pins(value: dict[str, int]) -> str | None:
    unknown = set(value) - set(LEVEL_IDS)
    if unknown:
        return f"names unknown levels {', '.join(sorted(unknown))}"
    return None if len(value) in (3, 5) else "must map 3 or 5 level ids to pins"


def _reason_ids(value: tuple[str, ...] | dict[str, int]) -> str | None:
    bad = [r for r in value if not valid_id(r) or r == UNSPECIFIED_REASON]
    return f"has invalid reason ids {bad}" if bad else None


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    host: str = field("127.0.0.1", "MQTT broker host (the hall hub)")
    port: int = field(1883, "MQTT broker port", check=port_number)
    user: str = field("", "broker user name: the device id")
    password: str = field("", "broker password made by `device add`")
    previous_password: str | None = field(
        None,
        "the password before a rotation: tried when the broker refuses `password` (the broker switches "
        "once the hub has seen the new key in use)",
    )
    keepalive_s: int = field(15, "MQTT keepalive; a dead link is noticed within 1.5x this", check=positive)
    ca: str = field(
        "",
        "the hall CA's certificate (`device add` writes ca.crt), relative to this file: MQTT runs over TLS 1.2+ "
        "and the broker's certificate must be signed by it and name `host`; empty: plain MQTT, which the "
        "hall's broker refuses",
    )
    client_cert: str = field("", "this terminal's certificate, when the hall requires client certificates")
    client_key: str = field("", "the private key of client_cert (secret)")


@dataclasses.dataclass(frozen=True)
class TimingSettings:
    lockout_s: float = field(10.0, "free mode: seconds between accepted presses", check=non_negative)
    invite_s: float = field(60.0, "how long an invitation keeps the rating keys lit", check=positive)
    reason_s: float = field(20.0, "how long to wait for a reason key after a bad rating", check=positive)
    thanks_s: float = field(2.0, "how long the thank-you light stays on", check=positive)


@dataclasses.dataclass(frozen=True)
class UplinkSettings:
    window: int = field(1000, "most unacknowledged journal rows handed to MQTT at once", check=positive)
    batch: int = field(
        50, "most events in one MQTT message (1..200)", check=lambda v: None if 0 < v <= 200 else "must be 1..200"
    )
    resend_s: float = field(
        5.0, "resend the unacked window when the hub's ack has not moved for this long", check=positive
    )
    state_s: float = field(30.0, "seconds between retained state updates", check=positive)


@dataclasses.dataclass(frozen=True)
class GpioSettings:
    keys: dict[str, int] = field(
        default_factory=lambda: dict(DEFAULT_KEY_PINS),
        doc="level id → BCM pin of its key (3 or 5 keys)",
        check=_key_pins,
    )
    reason_keys: dict[str, int] = field(
        default_factory=dict, doc="reason id → BCM pin; none: no reason step", check=_reason_ids
    )
    staff_key: int | None = field(None, "BCM pin of the staff key (staff mode)")
    ready_light: int | None = field(12, "BCM pin of the light behind the rating keys (lit while a rating is possible)")
    thanks_light: int | None = field(20, "BCM pin of the thank-you light")
    buzzer: int | None = field(16, "BCM pin of the buzzer")
    bounce_ms: int = field(30, "debounce time of every key, milliseconds", check=positive)
    pull_up: bool = field(True, "keys close to ground (internal pull-up) rather than to 3.3 V")


#: Button numbers of the reference evaluator panel (docs/panels.md): five level keys, six reason
#: keys, the staff key.
DEFAULT_PANEL_KEYS = {"very_satisfied": 1, "satisfied": 2, "basic": 3, "dissatisfied": 4, "very_dissatisfied": 5}
DEFAULT_PANEL_REASONS = {"cold": 6, "lazy": 7, "shirk": 8, "arbitrary": 9, "greedy": 10, "other": 11}
MAX_BUTTONS = 16


def _button(value: int | None) -> str | None:
    return None if value is None or 1 <= value <= MAX_BUTTONS else f"must be a button number 1..{MAX_BUTTONS}"


def _level_buttons(value: dict[str, int]) -> str | None:
    bad = [n for n in value.values() if _button(n)]
    return f"has button numbers outside 1..{MAX_BUTTONS}: {bad}" if bad else _key_pins(value)


def _reason_buttons(value: dict[str, int]) -> str | None:
    bad = [n for n in value.values() if _button(n)]
    return f"has button numbers outside 1..{MAX_BUTTONS}: {bad}" if bad else _reason_ids(value)


def _parity(value: str) -> str | None:
    return one_of("N", "E", "O")(value)


def _unit_id(value: int) -> str | None:
    return None if 1 <= value <= 247 else "must be a Modbus unit id 1..247"


def _distinct_buttons(table: str, keys: dict[str, int], reason_keys: dict[str, int], staff_key: int | None) -> None:
    """Raise ConfigError if two keys share one button number."""
    seen: dict[int, str] = {}
    named = [*keys.items(), *reason_keys.items(), *([("staff", staff_key)] if staff_key is not None else [])]
    for name, number in named:
        if number in seen:
            raise ConfigError(f"[{table}] button {number} is given to both {seen[number]!r} and {name!r}")
        seen[number] = name


@dataclasses.dataclass(frozen=True)
class PanelKeySettings:
    """What the Modbus and serial panels share: the key map (button numbers 1..16) and the press
    ledger that keeps a press from being journaled twice across a crash."""

    keys: dict[str, int] = field(
        default_factory=lambda: dict(DEFAULT_PANEL_KEYS),
        doc="level id → button number (1..16) of its key, 3 or 5 keys",
        check=_level_buttons,
    )
    reason_keys: dict[str, int] = field(
        default_factory=lambda: dict(DEFAULT_PANEL_REASONS),
        doc="reason id → button number; none: no reason step",
        check=_reason_buttons,
    )
    staff_key: int | None = field(12, "button number of the staff key (staff mode)", check=_button)
    state: Path = field(Path("panel-state.db"), "file of the presses already journaled, relative to this file")
    table: ClassVar[str] = "panel"

    def __post_init__(self) -> None:
        _distinct_buttons(self.table, self.keys, self.reason_keys, self.staff_key)


@dataclasses.dataclass(frozen=True)
class ModbusSettings(PanelKeySettings):
    """An evaluator panel on an RS-485 bus speaking Modbus RTU (register map: docs/panels.md)."""

    port: str = field("/dev/ttyUSB0", "serial port of the RS-485 adapter, or socket://HOST:PORT (RTU over TCP)")
    baudrate: int = field(19200, "bits per second on the bus", check=positive)
    parity: str = field("E", "N, E or O (Modbus RTU default: E)", check=_parity)
    stopbits: int = field(1, "1 or 2", check=lambda v: None if v in (1, 2) else "must be 1 or 2")
    unit: int = field(1, "Modbus unit id of this window's panel (1..247)", check=_unit_id)
    poll_s: float = field(0.05, "seconds between polls of the press counters", check=positive)
    timeout_s: float = field(0.5, "seconds to wait for one answer of the panel", check=positive)
    retries: int = field(
        1, "requests resent after a timeout before the panel counts as not answering", check=non_negative
    )
    reconnect_s: float = field(
        1.0,
        "seconds between attempts to reach a panel that stopped answering, or to hand on a press the journal refused",
        check=positive,
    )
    refresh_s: float = field(
        5.0, "seconds between rewrites of the lights (a rebooted panel forgets them)", check=positive
    )
    table: ClassVar[str] = "modbus"


@dataclasses.dataclass(frozen=True)
class SerialSettings(PanelKeySettings):
    """An evaluator panel on a serial or USB line speaking the framed line protocol of docs/panels.md."""

    port: str = field("/dev/ttyUSB0", "serial port, or socket://HOST:PORT")
    baudrate: int = field(9600, "bits per second", check=positive)
    read_s: float = field(0.02, "longest wait for bytes in one read; also the delay of a light change", check=positive)
    link_timeout_s: float = field(3.0, "no valid frame for this long: the panel counts as unplugged", check=positive)
    reconnect_s: float = field(
        1.0,
        "seconds between attempts to reopen a port that failed, or to accept a press the journal refused",
        check=positive,
    )
    refresh_s: float = field(
        2.0, "seconds between resends of the light state (a rebooted panel forgets it)", check=positive
    )
    table: ClassVar[str] = "serial"


@dataclasses.dataclass(frozen=True)
class TerminalConfig:
    device: str = field(doc="device id, also its broker user", check=_device_id)
    hall: str = field(doc="hall id (topic prefix haocha/v1/{hall}/{device})", check=_hall_or_window_id)
    window: str = field(doc="the window this terminal serves", check=_hall_or_window_id)
    key: str = field(doc="MAC key, 64 hex digits (secret)", check=_mac_key)
    key_id: int = field(
        1, "id of the MAC key: frames name it, so the hub knows which of the device's keys to check", check=positive
    )
    kind: str = field("gpio", "panel driver: gpio, modbus, serial or micro", check=one_of(*KINDS))
    mode: str = field("free", "free (lockout), invited (business system) or staff (staff key)", check=one_of(*MODES))
    journal: Path = field(Path("journal.db"), "journal file (SQLite), relative to this file")
    staff: str | None = field(None, "staff member signed in at this window, carried by every event", check=_text)
    item: str | None = field(None, "default service item code for free and staff-key ratings", check=_text)
    reasons: tuple[str, ...] = field(DEFAULT_REASONS, "bad-review reason ids offered at this hall", check=_reason_ids)
    clock: str = field(
        "auto", "auto (systemd-timesyncd flag), synced or unsynced", check=one_of("auto", "synced", "unsynced")
    )
    broker: BrokerSettings = field(default_factory=BrokerSettings, doc="[broker] table")
    timing: TimingSettings = field(default_factory=TimingSettings, doc="[timing] table")
    uplink: UplinkSettings = field(default_factory=UplinkSettings, doc="[uplink] table")
    gpio: GpioSettings = field(default_factory=GpioSettings, doc="[gpio] table (kind = gpio)")
    modbus: ModbusSettings = field(default_factory=ModbusSettings, doc="[modbus] table (kind = modbus)")
    serial: SerialSettings = field(default_factory=SerialSettings, doc="[serial] table (kind = serial)")
    #: Folder of the file, for relative paths; not a TOML key.
    base: Path = dataclasses.field(default=Path("."), metadata={"doc": "", "internal": True})
    #: The file itself, which a rotation from the hub updates (None: not read from a file).
    source: Path | None = dataclasses.field(default=None, metadata={"doc": "", "internal": True})

    @property
    def journal_path(self) -> Path:
        return self.journal if self.journal.is_absolute() else self.base / self.journal

    def broker_file(self, name: str) -> Path | None:
        """A file ``[broker]`` names (``ca``, ``client_cert``, ``client_key``), resolved; None when unset."""
        value: str = getattr(self.broker, name)
        return self.resolve(Path(value)) if value else None

    def broker_tls(self) -> ssl.SSLContext | None:
        """The TLS context for the broker (the hall CA, and this terminal's certificate when it has
        one); None for plain MQTT (``ca`` empty). ConfigError when a file cannot be used."""
        ca = self.broker_file("ca")
        if ca is None:
            return None
        return client_tls(ca, self.broker_file("client_cert"), self.broker_file("client_key"))

    def resolve(self, path: Path) -> Path:
        """``path`` made absolute against the folder of ``terminal.toml``."""
        return path if path.is_absolute() else self.base / path

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


def panel_table(kind: str) -> dict[str, Any]:
    """The ``[kind]`` table with every default spelled out, for ``device add`` to write into
    ``terminal.toml`` (a technician sees the port, unit and timings instead of silent defaults).
    Keys whose default is None are left out (TOML has no null); empty for kinds without a table."""
    cls = {"gpio": GpioSettings, "modbus": ModbusSettings, "serial": SerialSettings}.get(kind)
    if cls is None:
        return {}
    table = dataclasses.asdict(cls())
    return {k: str(v) if isinstance(v, Path) else v for k, v in table.items() if v is not None}


def parse(data: Mapping[str, Any], source: str, base: Path = Path(".")) -> TerminalConfig:
    """Validate the contents of a ``terminal.toml`` (read, or about to be written by ``device
    add``); ConfigError names ``source`` and the bad key in one line."""
    for internal in ("base", "source"):
        if internal in data:
            raise ConfigError(f"{source}: unknown key '{internal}'")
    return dataclasses.replace(build(TerminalConfig, data, source), base=base)


def load(path: Path | str) -> TerminalConfig:
    """Read and validate ``terminal.toml``; ConfigError names the file and the bad key."""
    path = Path(path)
    config = parse(read_toml(path), str(path), path.resolve().parent)
    return dataclasses.replace(config, source=path.resolve())
