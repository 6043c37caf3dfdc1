"""SPEC section 10 at the ingest level (a real hub database, no broker): whatever one message
holds, it ends stored, duplicate or rejected with a counted reason; the rest of its batch commits;
a MAC-valid event that breaks a rule is stored as invalid and never blocks its device; cases
belong to their window; states are checked before they are kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.cases import CaseRequest, open_case
from hub.http.metrics import render_metrics
from hub.ingest import Incoming, Ingestor
from hub.stats import stats
from hub.store import Store
from hub.store import registry as reg
from protocol.frames import Event, compute_mac, dumps, encode_batch
from protocol.rules import WALL_MAX_MS

KEY = bytes(range(32))
KEY2 = bytes(range(1, 33))
EPOCH = "0123456789abcdef"
TZ = ZoneInfo("Asia/Shanghai")
T0 = 1_790_000_000_000
EV = "haocha/v1/H1/T01/ev"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "hub.db", create=True)
    reg.add_window(s, "W01", "一号窗", None)
    reg.add_window(s, "W02", "二号窗", None)
    reg.insert_device(s, "T01", "W01", "gpio", "invited", KEY.hex(), "x")
    reg.insert_device(s, "T02", "W02", "gpio", "invited", KEY2.hex(), "x")
    return s


def rating(seq: int, case: str | None = None, **fields: Any) -> Event:
    base: dict[str, Any] = dict(kind="rating", window="W01", level="satisfied", boot="b", wall_ms=T0, synced=True)
    base.update(trigger="invite" if case else "free", case=case, age_ms=3)
    return Event(epoch=EPOCH, seq=seq, **{**base, **fields})


def message(events: list[Event], device: str = "T01", key: bytes = KEY) -> Incoming:
    return Incoming(f"haocha/v1/H1/{device}/ev", encode_batch(key, "H1", device, events), T0)


def raw(payload: bytes, topic: str = EV) -> Incoming:
    return Incoming(topic, payload, T0)


def signed_wire(event: Event, device: str = "T01", key: bytes = KEY, **override: Any) -> dict[str, Any]:
    """A wire event whose MAC is valid for fields that may break the rules."""
    wire = {k: v for k, v in event.fields().items() if v is not None}
    wire.update(override)
    from protocol.frames import parse_event

    parsed, _ = parse_event({**wire, "mac": "0" * 64})
    return {**wire, "mac": compute_mac(key, "H1", device, parsed)}


def batch(*wires: dict[str, Any]) -> bytes:
    return dumps({"v": 1, "ev": list(wires)})


Outcome = tuple[dict[Any, int], dict[str, int]]


def ingest(store: Store, *messages: Incoming, ingestor: Ingestor | None = None) -> Outcome:
    result = (ingestor or Ingestor(store, "H1", TZ)).ingest(list(messages))
    return result.acks, dict(result.counts)


def events_count(store: Store, device: str = "T01") -> int:
    return int(store.conn.execute("SELECT count(*) FROM events WHERE device = ?", (device,)).fetchone()[0])


POISON = {
    "brackets_60000": b"[" * 60_000,
    "seq_5000_digits": b'{"v":1,"ev":[{"v":1,"epoch":"0123456789abcdef","seq":' + b"9" * 5_000 + b"}]}",
    "nested_event": b'{"v":1,"ev":[' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"]}",
    "not_utf8": b'{"v":1,"ev":[{"boot":"\xff\xfe"}]}',
    "lone_surrogate_key": b'{"\\ud800":1}',
    "float_seq": b'{"v":1,"ev":[{"v":1,"epoch":"0123456789abcdef","seq":1e308}]}',
}


@pytest.mark.parametrize("name", list(POISON))
def test_poison_frames_are_rejected_and_the_batch_commits(store: Store, name: str) -> None:
    """Item 1: each of these stopped the hub's writer for good; the good frames around it rolled back."""
    acks, counts = ingest(store, message([rating(1)]), raw(POISON[name]), message([rating(2)]))
    assert acks == {("T01", EPOCH): 2}
    assert counts == {"stored": 2, "malformed": 1}
    assert events_count(store) == 2


def test_huge_times_with_a_valid_mac_are_stored_invalid_and_ack_past_them(store: Store) -> None:
    """Item 1 (wall_ms / age_ms = 2**62, a date out of range in the tallies) and SPEC section 10:
    stored as invalid with its raw JSON, acked, counted, in no rate; the sequence goes on."""
    wires = [
        signed_wire(rating(1)),
        signed_wire(rating(2), wall_ms=2**62),
        signed_wire(rating(3), synced=False, age_ms=2**62),
        signed_wire(rating(4), item="x" * 65),
        signed_wire(rating(5), level="great"),
        signed_wire(rating(6), wall_ms=WALL_MAX_MS),
        signed_wire(rating(7)),
    ]
    acks, counts = ingest(store, raw(batch(*wires)))
    assert acks == {("T01", EPOCH): 7}
    assert counts == {"stored": 7, "invalid": 5}
    rows = store.conn.execute("SELECT seq, kind, status, status_reason, raw FROM events ORDER BY seq").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows if r[2] == "invalid"] == [(s, "invalid", "invalid") for s in range(2, 7)]
    assert rows[1][3].startswith("wall_ms:") and json.loads(rows[1][4])["wall_ms"] == 2**62
    assert rows[3][3].startswith("item:") and json.loads(rows[3][4])["item"] == "x" * 65
    total = stats(store, ["device"], None, None)["rows"][0]
    assert (total["events"], total["evaluations"], total["invalid"]) == (7, 2, 5)
    assert total["satisfaction_rate"] == 1.0
    # A resend of the invalid events is a duplicate, as for any stored event.
    acks, counts = ingest(store, raw(batch(*wires[1:3])))
    assert counts == {"duplicate": 2} and acks == {("T01", EPOCH): 7}
    metrics = render_metrics(store).decode()
    assert 'haocha_frames_total{outcome="invalid"} 5.0' in metrics


def test_a_bad_mac_on_a_rule_breaker_is_a_forgery_not_invalid(store: Store) -> None:
    wire = signed_wire(rating(1), wall_ms=2**62)
    acks, counts = ingest(store, raw(batch({**wire, "mac": "0" * 64})))
    assert acks == {} and counts == {"bad_mac": 1} and events_count(store) == 0


class _BuggyIngestor(Ingestor):
    """An ingestor with a bug that raises on one event: stands in for whatever input may find."""

    def _event(self, conn: Any, dev: Any, ev: Event, *args: Any) -> bool:
        if ev.seq == 2:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return super()._event(conn, dev, ev, *args)


def test_a_message_that_raises_is_rejected_as_error_and_the_others_commit(store: Store) -> None:
    """One isolation point per message: an exception nobody foresaw rejects that message (acked,
    so never redelivered forever) and the rest of the batch still commits."""
    buggy = _BuggyIngestor(store, "H1", TZ)
    acks, counts = ingest(store, message([rating(1)]), message([rating(2)]), message([rating(3)]), ingestor=buggy)
    assert counts == {"stored": 2, "error": 1}
    assert acks == {("T01", EPOCH): 1}  # seq 2 is not stored: the ack stops before the gap
    assert [r[0] for r in store.conn.execute("SELECT seq FROM events ORDER BY seq")] == [1, 3]
    metrics = render_metrics(store).decode()
    assert 'haocha_frames_total{outcome="error"} 1.0' in metrics


def state(payload: bytes, device: str = "T01") -> Incoming:
    return Incoming(f"haocha/v1/H1/{device}/state", payload, T0)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"online": true, "backlog": "x"}',
        b'{"online": true, "backlog": Infinity}',
        b'{"online": true, "backlog": -1}',
        b'{"online": true, "panel": "down"}',
        b'{"online": "yes"}',
        b'{"online": true, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"online": true, "fw": "' + b"v" * 1000 + b'"}',
    ],
    ids=["backlog-text", "backlog-infinity", "backlog-negative", "panel-text", "online-text", "nested", "long-fw"],
)
def test_bad_states_are_rejected_and_metrics_still_render(store: Store, payload: bytes) -> None:
    """Item 5: /metrics answered 500 while a terminal's retained state said "backlog": "x"."""
    _acks, counts = ingest(store, state(b'{"online": true, "backlog": 3, "extra": {"a": 1}}'))
    assert counts == {"state": 1}
    _acks, counts = ingest(store, state(payload))
    assert counts == {"malformed": 1}
    stored = store.conn.execute("SELECT state FROM devices WHERE id = 'T01'").fetchone()[0]
    assert json.loads(stored) == {"online": True, "backlog": 3}
    assert "haocha_terminal_backlog 3.0" in render_metrics(store).decode()


def test_metrics_survive_a_state_stored_before_states_were_checked(store: Store) -> None:
    store.conn.execute("UPDATE devices SET state = ? WHERE id = 'T01'", ('{"online": true, "backlog": "x"}',))
    store.conn.execute("UPDATE devices SET state = ? WHERE id = 'T02'", ("[" * 5000,))
    assert "haocha_devices_online 0.0" in render_metrics(store).decode()


def case_status(store: Store, case: str) -> str | None:
    row = store.conn.execute("SELECT status FROM cases WHERE case_no = ?", (case,)).fetchone()
    return None if row is None else str(row[0])


def test_a_rating_of_another_windows_case_is_flagged_and_leaves_the_case_alone(store: Store) -> None:
    """Item 4: T01 (W01) rated W02's open case; the case was marked rated and W02's genuine rating
    was then refused."""
    open_case(store, CaseRequest("C-W02", "W02"), 60, TZ)
    _acks, counts = ingest(store, message([rating(1, case="C-W02")]))
    assert counts == {"stored": 1}
    assert store.conn.execute("SELECT status, status_reason FROM events").fetchone() == ("flagged", "wrong_window")
    assert case_status(store, "C-W02") == "open"
    t02 = Event(epoch=EPOCH, seq=1, kind="rating", window="W02", level="basic", trigger="invite", case="C-W02",
                boot="b", wall_ms=T0, synced=True)  # fmt: skip
    ingest(store, message([t02], device="T02", key=KEY2))
    assert store.conn.execute("SELECT status FROM events WHERE device = 'T02'").fetchone() == ("accepted",)
    assert case_status(store, "C-W02") == "rated"
    w02 = stats(store, ["window"], None, None)["rows"][1]
    assert (w02["window"], w02["cases"], w02["evaluation_rate"], w02["refused"]) == ("W02", 1, 1.0, 0)


def test_a_rating_of_a_case_never_opened_creates_nothing(store: Store) -> None:
    """Item 4: rating a case number before the business system opened it made the later
    POST /api/v1/cases answer 409."""
    ingest(store, message([rating(1, case="C-LATER")]))
    assert store.conn.execute("SELECT status_reason FROM events").fetchone() == ("unknown_case",)
    assert case_status(store, "C-LATER") is None
    open_case(store, CaseRequest("C-LATER", "W01"), 60, TZ)  # no AlreadyExists
    ingest(store, message([rating(2, case="C-LATER")]))
    assert case_status(store, "C-LATER") == "rated"
    assert store.conn.execute("SELECT status FROM events WHERE seq = 2").fetchone() == ("accepted",)


def test_a_staff_case_number_that_is_not_local_is_flagged(store: Store) -> None:
    """A staff-key event or rating must carry the terminal's own local case number: another one
    would create or close someone else's case."""
    open_case(store, CaseRequest("C-BIZ", "W01"), 60, TZ)
    staff = Event(epoch=EPOCH, seq=1, kind="staff", window="W01", trigger="staff", case="C-BIZ", boot="b",
                  wall_ms=T0, synced=True)  # fmt: skip
    ingest(store, message([staff, rating(2, case="C-BIZ", trigger="staff")]))
    assert [tuple(r) for r in store.conn.execute("SELECT status, status_reason FROM events ORDER BY seq")] == [
        ("flagged", "unknown_case"),
        ("flagged", "unknown_case"),
    ]
    assert case_status(store, "C-BIZ") == "open"
    assert stats(store, ["window"], None, None)["rows"][0]["cases"] == 1  # the business system's case only


def test_second_rating_of_a_case_is_still_refused(store: Store) -> None:
    open_case(store, CaseRequest("C1", "W01"), 60, TZ)
    ingest(store, message([rating(1, case="C1"), rating(2, case="C1")]))
    statuses = [r[0] for r in store.conn.execute("SELECT status FROM events ORDER BY seq")]
    assert statuses == ["accepted", "refused"]
