"""The upstream test data lives in :mod:`simulators.upstream_data` (the benches use it too)."""

from simulators.upstream_data import (
    EPOCH,
    FAST,
    KEY,
    T0,
    TZ,
    bodies,
    ingest,
    make_home,
    outbox_rows,
    rating,
    reason,
    status,
)

__all__ = [
    "EPOCH",
    "FAST",
    "KEY",
    "T0",
    "TZ",
    "bodies",
    "ingest",
    "make_home",
    "outbox_rows",
    "rating",
    "reason",
    "status",
]
