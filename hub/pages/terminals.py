"""What the hub knows of each terminal, for the Today cards and the devices page.

Read from the retained ``state`` each terminal publishes (stored on the ``devices`` row by
ingest), the frame counters (when anything last arrived from it) and the ack points (``epochs``).
The last press is one index lookup per terminal on ``events(device, epoch, seq)``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..layers import describe, device_status
from ..store import Store
from ..store.registry import stored_state

#: A terminal not heard from for this long (no state, no event) stands out as silent. Terminals
#: republish their state every 30 s by default, so a live one is never near it.
SILENT_AFTER_MS = 5 * 60_000
#: Frame outcomes that prove the terminal itself spoke (a rejected frame may be anyone's).
_HEARD = ("stored", "duplicate", "state", "invalid")


@dataclass(frozen=True, slots=True)
class Terminal:
    device: str
    window: str
    kind: str
    mode: str
    revoked: bool
    online: bool | None  #: None: it never published a state
    last_seen_ms: int | None  #: its last state or frame, as the hub received it
    last_press_ms: int | None  #: event time of the newest event stored from it
    backlog: int | None  #: journal rows not yet acked, as its last state said
    missing: int | None  #: events it journaled that the hub has not stored without a gap
    clock: str | None  #: "synced" or "unsynced", as its last state said
    panel_ok: bool | None  #: None: no panel reported (a GPIO terminal)
    panel_detail: str
    firmware: str | None
    silent: bool
    #: the hub's configuration: the version in force, and one pending or refused (hub.layers.describe)
    config: str | None = None  #: not revoked, and offline or not heard from for ``SILENT_AFTER_MS``


def terminals(store: Store, now_ms: int, silent_after_ms: int = SILENT_AFTER_MS) -> list[Terminal]:
    """Every provisioned terminal (revoked ones included, marked), by device id."""
    conn = store.conn
    heard = _last_heard(conn)
    epochs = {d: (e, upto, press) for d, e, upto, press in conn.execute(_LATEST_EPOCH)}
    configs = device_status(conn)
    out = []
    for device, window, kind, mode, revoked, state_text, state_ms in conn.execute(
        "SELECT id, window, kind, mode, revoked, state, state_ms FROM devices ORDER BY id"
    ):
        state = stored_state(state_text)
        seen = max((t for t in (state_ms, heard.get(device)) if t is not None), default=None)
        epoch, upto, press = epochs.get(device, (None, 0, None))
        online = state.get("online") if state else None
        silent = not revoked and (online is not True or seen is None or now_ms - seen > silent_after_ms)
        panel = state.get("panel")
        out.append(
            Terminal(
                device=device,
                window=window,
                kind=kind,
                mode=mode,
                revoked=bool(revoked),
                online=online,
                last_seen_ms=seen,
                last_press_ms=press,
                backlog=state.get("backlog"),
                missing=_missing(state, epoch, upto),
                clock=state.get("clock"),
                panel_ok=None if panel is None else bool(panel["ok"]),
                panel_detail="" if panel is None else str(panel["detail"]),
                firmware=state.get("fw"),
                silent=silent,
                config=describe(configs.get(device)),
            )
        )
    return out


#: The newest epoch (journal) of each device (SQLite takes bare columns from the max row), its
#: ack point, and the time of the newest event stored in it (one index lookup each).
_LATEST_EPOCH = """
    SELECT q.device, q.epoch, q.upto,
           (SELECT e.t_ms FROM events e WHERE e.device = q.device AND e.epoch = q.epoch ORDER BY e.seq DESC LIMIT 1)
    FROM (SELECT device, epoch, upto, max(last_ms) FROM epochs GROUP BY device) q"""


def _last_heard(conn: sqlite3.Connection) -> dict[str, int]:
    marks = ", ".join("?" * len(_HEARD))
    sql = f"SELECT device, max(last_ms) FROM frame_counts WHERE outcome IN ({marks}) GROUP BY device"
    return {d: t for d, t in conn.execute(sql, _HEARD) if t}


def _missing(state: dict[str, object], epoch: str | None, upto: int) -> int | None:
    """What the terminal says it journaled beyond what the hub stored without a gap."""
    last_seq = state.get("last_seq")
    if not isinstance(last_seq, int):
        return None
    if state.get("epoch") != epoch:
        return last_seq  # a journal the hub has nothing of yet
    return max(0, last_seq - upto)
