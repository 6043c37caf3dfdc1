"""A small hall with exact figures, built through the real store, case and ingest functions (no
broker): the console page tests read it and know every number it must show."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.cases import CaseRequest, open_case
from hub.ingest import Incoming, Ingestor
from hub.store import Store
from hub.store import registry as reg
from protocol.frames import Event, encode_batch, encode_state

KEY = bytes(range(32))
EPOCH = "0123456789abcdef"
TZ = ZoneInfo("Asia/Shanghai")
HALL = "H1"
#: Past days with evaluations for the drill-down (hall-local noon).
PAST = (dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 9), dt.date(2026, 10, 20))


def noon_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(12), TZ).timestamp() * 1000)


def rating(seq: int, level: str, wall_ms: int, case: str | None = None, staff: str | None = None) -> Event:
    return Event(
        epoch=EPOCH,
        seq=seq,
        kind="rating",
        level=level,
        trigger="invite" if case else "free",
        case=case,
        staff=staff,
        boot="b",
        mono_ms=seq * 60_000,
        wall_ms=wall_ms,
        synced=True,
        age_ms=3,
    )


def send(ingestor: Ingestor, device: str, events: list[Event], at_ms: int) -> None:
    payload = encode_batch(KEY, HALL, device, events)
    ingestor.ingest([Incoming(f"haocha/v1/{HALL}/{device}/ev", payload, at_ms)])


def state(ingestor: Ingestor, device: str, at_ms: int, online: bool, **fields: object) -> None:
    payload = encode_state(online, **fields)
    ingestor.ingest([Incoming(f"haocha/v1/{HALL}/{device}/state", payload, at_ms)])


def build(path: Path, now_ms: int) -> Store:
    """Today (the hall-local day of ``now_ms``):
    - 一号窗 W01 (dept 民政), terminal T01 online: cases C1–C3 rated 非常满意, 满意, 不满意 (staff S1, S1, S2);
    - 二号窗 W02, terminal T02 offline (its last will): free ratings 基本满意, 非常不满意, 满意, 满意;
    - 三号窗 W03, terminal T03 that never spoke; no ratings.
    Past days (:data:`PAST`) on W01 by staff S1: 2 × 非常满意 and 1 × 不满意 each day.
    """
    store = Store(path, create=True)
    reg.add_window(store, "W01", "一号窗", "民政")
    reg.add_window(store, "W02", "二号窗", None)
    reg.add_window(store, "W03", "三号窗", None)
    for device, window in (("T01", "W01"), ("T02", "W02"), ("T03", "W03")):
        reg.insert_device(store, device, window, "modbus" if device == "T01" else "gpio", "free", KEY.hex(), "x")
    ing = Ingestor(store, HALL, TZ)
    seq = 0
    past: list[Event] = []
    for day in PAST:
        for level in ("very_satisfied", "very_satisfied", "dissatisfied"):
            seq += 1
            past.append(rating(seq, level, noon_ms(day), staff="S1"))
    send(ing, "T01", past, now_ms)
    for case in ("C1", "C2", "C3"):
        open_case(store, CaseRequest(case, "W01"), 60, TZ)
    today = [("very_satisfied", "C1", "S1"), ("satisfied", "C2", "S1"), ("dissatisfied", "C3", "S2")]
    send(ing, "T01", [rating(seq + i, lv, now_ms, c, s) for i, (lv, c, s) in enumerate(today, 1)], now_ms)
    free = ["basic", "very_dissatisfied", "satisfied", "satisfied"]
    send(ing, "T02", [rating(i, lv, now_ms) for i, lv in enumerate(free, 1)], now_ms)
    state(ing, "T01", now_ms, True, fw="1.4.0", kind="modbus", epoch=EPOCH, last_seq=seq + 5, acked=seq + 3,
          backlog=2, clock="synced", panel={"ok": True, "detail": "RTU 9600"})  # fmt: skip
    state(ing, "T02", now_ms - 3_600_000, False)
    return store
