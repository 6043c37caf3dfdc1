"""Adapters: turn neutral outbox records into one regional system's wire format.

The outbox stores records in the hub's own terms (level ids, reason ids, epoch milliseconds); an
adapter maps them when sending, so a province with other field names or codes needs a new
adapter, not a migration. The default, :class:`NationalAdapter`, speaks the national interface
family's field names (SPEC section 6). Level ids map to ``satisfaction`` 1 = 非常不满意 …
5 = 非常满意: the upstream order, the reverse of GB/T 39046-2020 table A.8.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from protocol.levels import Level

from ..errors import UpstreamError

#: Upstream ``satisfaction`` codes, 1 = 非常不满意 … 5 = 非常满意.
SATISFACTION = {
    Level.VERY_DISSATISFIED.value: 1,
    Level.DISSATISFIED.value: 2,
    Level.BASIC.value: 3,
    Level.SATISFIED.value: 4,
    Level.VERY_SATISFIED.value: 5,
}
PF_HALL_TERMINAL = 5
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Context:
    """What an adapter may need beyond the record: hall time zone, codes, the registry."""

    tz: ZoneInfo
    reason_codes: Mapping[str, str]
    depts: Mapping[str, str | None]  # window → department


class Adapter(Protocol):
    name: str

    def path(self, kind: str) -> str:
        """URL path (below the upstream base URL) that takes records of ``kind``."""
        ...

    def encode(self, kind: str, record: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """The wire object of one outbox record."""
        ...

    def envelope(self, kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The request body carrying a batch of encoded records."""
        ...


def local_time(t_ms: int, tz: ZoneInfo) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in hall local time."""
    return dt.datetime.fromtimestamp(t_ms / 1000, tz).strftime(TIME_FORMAT)


class NationalAdapter:
    """Field names of the national 好差评 interface family."""

    name = "national"
    _PATHS: ClassVar[dict[str, str]] = {
        "evaluation": "/api/v1/evaluations",
        "update": "/api/v1/evaluations",
        "ticket": "/api/v1/tickets",
        "totals": "/api/v1/totals",
    }

    def path(self, kind: str) -> str:
        return self._PATHS[kind]

    def encode(self, kind: str, record: dict[str, Any], ctx: Context) -> dict[str, Any]:
        if kind in ("evaluation", "update"):
            return {"op": "update" if kind == "update" else "add", **self.evaluation(record, ctx)}
        if kind == "ticket":
            return self.ticket(record, ctx)
        return self.totals(record)

    def envelope(self, kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"records": records}

    def evaluation(self, r: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return {
            "recordId": r["record_id"],
            "hallCode": r["hall"],
            "windowNo": r["window"],
            "deviceNo": r["device"],
            "projectNo": r["case"] or r["record_id"],  # free mode: the local case number
            "taskCode": r["item"] or "",
            "proDepart": ctx.depts.get(r["window"]) or "",
            "proManager": r["staff"] or "",
            "pf": PF_HALL_TERMINAL,
            "satisfaction": SATISFACTION[r["level"]],
            "evalDetail": ",".join(_reason_code(x, ctx) for x in r["reasons"]),
            "assessTime": local_time(r["t_ms"], ctx.tz),
            "assessNumber": 1,
            "suspect": 1 if r.get("flagged") else 0,
        }

    def ticket(self, r: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return {
            "ticketNo": r["ticket_no"],
            "recordId": r["ticket_no"],
            "windowNo": r["window"],
            "taskCode": r["item"] or "",
            "projectNo": r["case_no"] or r["ticket_no"],
            "satisfaction": SATISFACTION[r["level"]],
            "evalDetail": ",".join(_reason_code(x, ctx) for x in r["reasons"]),
            "state": r["state"],
            "verdict": r["verdict"] or "",
            "handler": r["assignee"] or "",
            "handleDepart": r["dept"] or "",
            "appeal": r["appeal"] or "",
            "rectification": r["feedback"] or "",
            "registerDate": r["opened_day"],
            "changeTime": local_time(r["updated_ms"], ctx.tz),
        }

    def totals(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "totalsId": r["totals_id"],
            "hallCode": r["hall"],
            "period": r["period"],
            "periodStart": r["start"],
            "periodEnd": r["end"],
            "windowNo": r["window"],
            "taskCode": r["item"],
            "cases": r["cases"],
            "evaluations": r["evaluations"],
            "levels": {str(SATISFACTION[k]): v for k, v in r["levels"].items()},
            "evaluationRate": r["evaluation_rate"],
            "satisfactionRate": r["satisfaction_rate"],
            "badRate": r["bad_rate"],
        }


def _reason_code(reason: str, ctx: Context) -> str:
    return ctx.reason_codes.get(reason, reason)


ADAPTERS: dict[str, type[NationalAdapter]] = {"national": NationalAdapter}


def make_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise UpstreamError(f"unknown upstream adapter {name!r}; known: {', '.join(ADAPTERS)}") from None
