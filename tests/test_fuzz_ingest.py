"""Property-based fuzzing of parse → verify → ingest (SPEC section 10), bounded in time.

Hypothesis makes frames of every shape: random bytes, random JSON, well-formed events with random
field values *and a valid MAC* (what a stolen key can send), states, replays. Whatever it makes,
ingest must end each message stored, duplicate or rejected, never raise, and leave the store
consistent: the ack point is the contiguous prefix of stored seqs, the counters agree with the
stored events, stats and /metrics still answer. Inputs the fuzz found (or that were found by hand
before it) are kept below as explicit examples, so they run every time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.http.metrics import render_metrics
from hub.ingest import Incoming, Ingestor
from hub.stats import stats
from hub.store import Store
from hub.store import registry as reg
from protocol.errors import MalformedFrame, ProtocolError
from protocol.frames import EVENT_FIELDS, compute_mac, parse_batch, parse_event
from protocol.levels import LEVEL_IDS

KEY = bytes(range(32))
TZ = ZoneInfo("Asia/Shanghai")
T0 = 1_790_000_000_000
FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([2**62, 2**63 - 1, 2**63, -(2**63) - 1, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(["", "x" * 65, "办" * 64, "a\u0000b", "\u2028", "W01", "rating", "free", "satisfied"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
plausible = {
    "v": st.sampled_from([1, 1, 2]),
    "kind": st.sampled_from(["rating", "reason", "staff", "ignored", "vote"]),
    "level": st.sampled_from([*LEVEL_IDS, None]),
    "reasons": st.sampled_from([None, ["cold"], ["cold", "lazy"], [], ["x y"]]),
    "ref": st.integers(min_value=-2, max_value=12),
    "case": st.sampled_from([None, "C1", "C2", "T01-01234567-1"]),
    "item": st.sampled_from([None, "ITEM-1", "x" * 65]),
    "staff": st.sampled_from([None, "S01", ""]),
    "trigger": st.sampled_from(["free", "invite", "staff", None]),
    "window": st.sampled_from(["W01", "W02", None]),
    "boot": st.sampled_from(["b", ""]),
    "mono_ms": st.integers(min_value=-5, max_value=2**63),
    "wall_ms": st.one_of(st.just(T0), st.integers(min_value=-(2**63), max_value=2**64)),
    "synced": st.booleans(),
    "age_ms": st.one_of(st.none(), st.integers(min_value=-5, max_value=2**63)),
}


TEMPLATES: list[dict[str, Any]] = [
    {"kind": "rating", "level": "satisfied", "trigger": "free"},
    {"kind": "rating", "level": "very_dissatisfied", "trigger": "invite", "case": "C1"},
    {"kind": "rating", "level": "basic", "trigger": "invite", "case": "C2", "item": "ITEM-1", "staff": "S01"},
    {"kind": "rating", "level": "dissatisfied", "trigger": "staff", "case": "T01-01234567-1"},
    {"kind": "staff", "trigger": "staff", "case": "T01-01234567-1"},
    {"kind": "reason", "reasons": ["cold"], "ref": 1},
    {"kind": "ignored", "level": "satisfied"},
]


@st.composite
def wire_events(draw: st.DrawFn, epoch: str) -> dict[str, Any]:
    """A wire event signed with the device's key whenever its shape allows a MAC at all: mostly
    a valid event of each kind with one field changed (plausibly, randomly or removed), sometimes
    every field drawn on its own."""
    event: dict[str, Any] = {
        "v": 1,
        "epoch": draw(st.sampled_from([epoch] * 20 + ["fedcba9876543210", "XYZ"])),
        "seq": draw(st.sampled_from([*range(2, 13), *range(2, 13), 1, 0, 2**63, "1"])),
        "boot": "b",
        "mono_ms": draw(st.integers(min_value=0, max_value=10**7)),
        "wall_ms": T0,
        "synced": True,
        **draw(st.sampled_from(TEMPLATES)),
    }
    changed = draw(st.lists(st.sampled_from([n for n in EVENT_FIELDS if n not in ("epoch", "seq")]), max_size=2))
    if draw(st.booleans()):
        changed = [n for n in EVENT_FIELDS if n not in ("epoch", "seq")]
    for name in changed:
        choice = draw(st.sampled_from(["plausible"] * 20 + ["scalar", "json", "absent"]))
        event.pop(name, None)
        if choice == "plausible":
            event[name] = draw(plausible[name])
        elif choice != "absent":
            event[name] = draw(scalars if choice == "scalar" else json_values)
    try:
        parsed, _ = parse_event({**event, "mac": "0" * 64})
        event["mac"] = compute_mac(KEY, "H1", "T01", parsed)
    except (MalformedFrame, TypeError):
        event["mac"] = draw(st.sampled_from(["0" * 64, "zz"]))
    return event


def frame(events: list[Any]) -> bytes:
    return json.dumps({"v": 1, "ev": events}).encode()  # ASCII: lone surrogates survive as escapes


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Up to six messages for one ingest call, most of them event frames of a fresh epoch (so
    they store rather than repeat what earlier examples stored)."""
    epoch = draw(st.binary(min_size=8, max_size=8)).hex()
    events = st.lists(wire_events(epoch), min_size=1, max_size=3)
    ev_frames = st.builds(lambda evs: ("ev", frame(evs)), events)
    message = st.one_of(
        ev_frames,
        ev_frames,
        ev_frames,
        st.builds(lambda b: ("ev", b), st.binary(max_size=300)),
        st.builds(lambda v: ("ev", json.dumps(v).encode()), json_values),
        st.builds(lambda v: ("state", json.dumps(v).encode()), st.dictionaries(st.text(max_size=8), json_values)),
        st.builds(
            lambda online, backlog: ("state", json.dumps({"online": online, "backlog": backlog}).encode()),
            st.booleans(),
            scalars,
        ),
    )
    chosen = draw(st.lists(message, min_size=1, max_size=6))
    return chosen + draw(st.lists(st.sampled_from(chosen), max_size=2))  # replays


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store(tmp_path_factory.mktemp("fuzz") / "hub.db", create=True)
    reg.add_window(s, "W01", "一号窗", None)
    reg.insert_device(s, "T01", "W01", "gpio", "invited", KEY.hex(), "x")
    return s


def check_consistent(store: Store) -> None:
    """The store after any input: acks are contiguous prefixes, counters agree with the events."""
    conn = store.conn
    for device, epoch, upto in conn.execute("SELECT device, epoch, upto FROM epochs").fetchall():
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events WHERE device = ? AND epoch = ?", (device, epoch))]
        prefix = 0
        while prefix + 1 in set(seqs):
            prefix += 1
        assert upto == prefix, (device, epoch, upto, prefix)
    stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    counted = conn.execute("SELECT coalesce(sum(events), 0) FROM tallies WHERE grain = 'y'").fetchone()[0]
    assert stored == counted
    statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM events")}
    assert statuses <= {"accepted", "refused", "flagged", "invalid"}
    stats(store, ["device", "day"], None, None)
    render_metrics(store)


@FUZZ
@given(st.binary(max_size=2000))
@example(b"[" * 60_000)
@example(b'{"v":1,"ev":[{"seq":' + b"9" * 5_000 + b"}]}")
@example(b'{"v":1,"ev":[{"epoch":"0123456789abcdef","seq":1,"mac":"' + b"0" * 64 + b'","level":1e999}]}')
@example(b'{"v":1,"ev":[{"epoch":"0123456789abcdef","seq":1,"mac":"' + b"0" * 64 + b'","case":"\\ud800"}]}')
def test_parse_batch_raises_only_protocol_errors(payload: bytes) -> None:
    try:
        parse_batch(payload)
    except ProtocolError:
        pass


@FUZZ
@given(batches())
@example([("ev", frame([{"v": 1, "epoch": "0123456789abcdef", "seq": 1, "kind": "rating", "mac": "0" * 64}]))])
@example([("state", b'{"online": true, "backlog": "x"}'), ("state", b'{"online": true, "x": ' + b"[" * 5000 + b"}")])
def test_ingest_ends_every_message_and_keeps_the_store_consistent(store: Store, batch: list[tuple[str, bytes]]) -> None:
    incoming = [Incoming(f"haocha/v1/H1/T01/{leaf}", payload, T0) for leaf, payload in batch]
    result = Ingestor(store, "H1", TZ).ingest(incoming)
    assert "error" not in result.counts, result.counts  # no message should need the last-resort catch
    check_consistent(store)


def test_signed_events_with_wild_times_store_with_a_real_day(tmp_path: Path) -> None:
    """Found by hand before the fuzz existed (issue item 1): 2**62 as wall_ms or age_ms."""
    s = Store(tmp_path / "hub.db", create=True)
    reg.add_window(s, "W01", "一号窗", None)
    reg.insert_device(s, "T01", "W01", "gpio", "free", KEY.hex(), "x")
    events = []
    for seq, extra in enumerate([{"wall_ms": 2**62}, {"synced": False, "age_ms": 2**62}], start=1):
        wire = {"v": 1, "epoch": "0123456789abcdef", "seq": seq, "kind": "rating", "level": "basic",
                "trigger": "free", "boot": "b", "mono_ms": 1, "wall_ms": T0, "synced": True, **extra}  # fmt: skip
        parsed, _ = parse_event({**wire, "mac": "0" * 64})
        events.append({**wire, "mac": compute_mac(KEY, "H1", "T01", parsed)})
    result = Ingestor(s, "H1", TZ).ingest([Incoming("haocha/v1/H1/T01/ev", frame(events), T0)])
    assert dict(result.counts) == {"stored": 2, "invalid": 2}
    check_consistent(s)
