"""Hub homes with signed events ingested directly (no broker), for the upstream and work-queue tests
and the upstream bench."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.config import HubConfig, write_new
from hub.ingest import Incoming, Ingestor
from hub.store import Store
from hub.store import registry as reg
from hub.upstream import outbox
from protocol.config import build
from protocol.frames import Event, encode_batch

KEY = bytes(range(32))
EPOCH = "0123456789abcdef"
TZ = ZoneInfo("Asia/Shanghai")
#: 2026-11-20 09:30:00 Asia/Shanghai, a Friday.
T0 = int(dt.datetime(2026, 11, 20, 9, 30, tzinfo=TZ).timestamp() * 1000)
FAST = {"poll_s": 0.02, "backoff_initial_s": 0.02, "backoff_max_s": 0.2, "timeout_s": 2.0, "totals_interval_s": 0.0}


def make_home(tmp: Path, windows: tuple[str, ...] = ("W01",), **upstream: Any) -> tuple[HubConfig, Store]:
    write_new(tmp, "H1", "127.0.0.1:1883", "127.0.0.1:8080", "")
    config = build(HubConfig, {"hall": "H1", "upstream": {**FAST, **upstream}}, "test")
    store = Store(tmp / "hub.db", create=True)
    for i, window in enumerate(windows):
        reg.add_window(store, window, f"{window} 窗", "市场监管局" if i == 0 else None)
        reg.insert_device(store, f"T{i + 1:02d}", window, "gpio", "free", KEY.hex(), "x")
    return config, store


def rating(seq: int, level: str = "satisfied", epoch: str = EPOCH, case: str | None = None, t_ms: int = T0) -> Event:
    return Event(
        epoch=epoch, seq=seq, kind="rating", level=level, trigger="invite" if case else "free", case=case,
        item="ITEM-1" if case else None, staff="S01" if case else None, boot="b", wall_ms=t_ms, synced=True, age_ms=1,
    )  # fmt: skip


def reason(seq: int, ref: int, reasons: tuple[str, ...] = ("cold",), epoch: str = EPOCH) -> Event:
    return Event(epoch=epoch, seq=seq, kind="reason", ref=ref, reasons=reasons, boot="b", wall_ms=T0, synced=True)


def ingest(store: Store, events: list[Event], device: str = "T01") -> None:
    msg = Incoming(f"haocha/v1/H1/{device}/ev", encode_batch(KEY, "H1", device, events), T0)
    Ingestor(store, "H1", TZ).ingest([msg])


def outbox_rows(store: Store) -> list[tuple[str, str, str]]:
    return list(store.conn.execute("SELECT record_id, kind, status FROM outbox ORDER BY id"))


def bodies(store: Store) -> list[dict[str, Any]]:
    """Every outbox record's body as the sender would post it, in queue order."""
    return [row.body for row in outbox.read(store.conn, "H1", "1")]


def status(store: Store, oid: int) -> str:
    return str(store.conn.execute("SELECT status FROM outbox WHERE id = ?", (oid,)).fetchone()[0])
