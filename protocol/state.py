"""``state`` frames (SPEC section 3): a terminal's retained state, and the hub's own.

Built and parsed here only. ``online`` is always there; the rest is what the sender reports.
Unknown keys are dropped (a newer terminal may say more); a known key with a bad value refuses
the whole state (:func:`protocol.frames.normalise_state` checks each value).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from .frames import dumps, loads_object, normalise_state
from .updates import UpdateState


class ClockState(enum.StrEnum):
    """What a terminal says of its wall clock (``clock``)."""

    SYNCED = "synced"  #: NTP (or the board's RTC) says the wall clock is right
    UNSYNCED = "unsynced"  #: no sync yet: the hub derives event times from ``age_ms``


@dataclasses.dataclass(frozen=True, slots=True)
class PanelState:
    ok: bool
    detail: str = ""

    def fields(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigReport:
    """The configuration a terminal runs (``version``; 0: none from the hub, ``terminal.toml``
    alone) and the last one it refused, with why (protocol.settings)."""

    version: int = 0
    refused_version: int | None = None
    refused_reason: str = ""

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.refused_version is not None:
            out["refused"] = {"version": self.refused_version, "reason": self.refused_reason[:200]}
        return out

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> ConfigReport:
        refused = obj.get("refused")
        if refused is None:
            return cls(obj["version"])
        return cls(obj["version"], refused["version"], refused["reason"])


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    online: bool
    fw: str | None = None  #: firmware or program version
    kind: str | None = None  #: the terminal's panel driver: gpio, modbus, serial, micro
    mode: str | None = None  #: free, invited or staff
    window: str | None = None
    epoch: str | None = None
    last_seq: int | None = None
    acked: int | None = None
    backlog: int | None = None  #: journal rows not yet acknowledged
    boot: str | None = None
    clock: str | None = None  #: a :class:`ClockState` value
    panel: PanelState | None = None
    kid: int | None = None  #: the MAC key id in use
    update: UpdateState | None = None  #: where an update to a new release stands (SPEC section 13)
    config: ConfigReport | None = None  #: the hub's configuration applied, or refused

    def fields(self) -> dict[str, Any]:
        """The JSON object: ``online`` and every field the sender set."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = (
                    value.fields() if isinstance(value, PanelState | UpdateState | ConfigReport) else value
                )
        return out

    def encode(self) -> bytes:
        return dumps(self.fields())

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> State:
        """The state ``obj`` holds; MalformedFrame naming a known field that is wrong."""
        fields = normalise_state(obj)
        panel, update, config = fields.pop("panel", None), fields.pop("update", None), fields.pop("config", None)
        return cls(
            **fields,
            panel=None if panel is None else PanelState(panel["ok"], panel["detail"]),
            update=None if update is None else UpdateState.parse(update),
            config=None if config is None else ConfigReport.parse(config),
        )

    @classmethod
    def decode(cls, frame: bytes) -> State:
        return cls.parse(loads_object(frame))


ONLINE = State(online=True)
OFFLINE = State(online=False)
