"""The rectification rate (整改率) in ``haocha stats``: bad-review tickets opened in the period, those
verified valid, those given feedback, per row and in the total, from the counters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from haocha.cli import main
from hub import tickets
from hub.stats import stats
from hub.store import Store
from protocol.frames import Event

from .upstream_helpers import EPOCH, TZ, ingest, make_home

D0, D1, D2, D3 = dt.date(2026, 11, 10), dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 20)
CONTRACT_KEYS = {"cases", "evaluations", "levels", "evaluation_rate", "satisfaction_rate", "bad_rate", "mean_score",
                 "ignored", "flagged", "refused", "rated", "events"}  # fmt: skip
NEW_KEYS = {"tickets", "valid_tickets", "rectified", "rectification_rate", "invalid"}


def press(seq: int, level: str, day: dt.date, device: str = "T01", item: str | None = None,
          staff: str | None = None) -> Event:  # fmt: skip
    """A rating given on ``day``; with an item, bound to a staff-key case of the terminal."""
    t_ms = int(dt.datetime.combine(day, dt.time(10), TZ).timestamp() * 1000)
    case = f"{device}-{EPOCH[:8]}-{seq}" if item else None
    return Event(
        epoch=EPOCH, seq=seq, kind="rating", level=level, trigger="staff" if case else "free", case=case, item=item,
        staff=staff, boot="b", wall_ms=t_ms, synced=True, age_ms=1,
    )  # fmt: skip


def ticket_of(store: Store, device: str, seq: int) -> str:
    row = store.conn.execute(
        "SELECT t.id FROM tickets t JOIN events e ON e.id = t.event_id WHERE e.device = ? AND e.seq = ?", (device, seq)
    ).fetchone()
    return str(row[0])


def valid(store: Store, ref: str, rectify: bool) -> None:
    tickets.assign(store, ref, "张三", "窗口科")
    tickets.verify(store, ref, True)
    if rectify:
        tickets.feedback(store, ref, "已约谈整改")


def invalid(store: Store, ref: str) -> None:
    tickets.assign(store, ref, "李四", None)
    tickets.appeal(store, ref, "恶意差评")
    tickets.verify(store, ref, False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """W01 (T01) and W02 (T02) over four days; the --from/--to range used below is D1…D2.

    W01: D0 valid, not rectified · D1 ITEM-A/S01 valid + feedback, one satisfied · D2 ITEM-A/S02 valid,
    no feedback, and one invalid after appeal · D3 registered. W02: D1 no bad review · D2 ITEM-B/S03
    valid + feedback, one valid + feedback, one basic."""
    _cfg, store = make_home(tmp_path, ("W01", "W02"))
    with store:
        ingest(store, [press(1, "dissatisfied", D0), press(2, "dissatisfied", D1, item="ITEM-A", staff="S01"),
                       press(3, "satisfied", D1), press(4, "very_dissatisfied", D2, item="ITEM-A", staff="S02"),
                       press(5, "dissatisfied", D2), press(6, "dissatisfied", D3)], "T01")  # fmt: skip
        ingest(store, [press(1, "dissatisfied", D2, "T02", "ITEM-B", "S03"), press(2, "very_dissatisfied", D2, "T02"),
                       press(3, "basic", D2, "T02"), press(4, "very_satisfied", D1, "T02")], "T02")  # fmt: skip
        valid(store, ticket_of(store, "T01", 1), rectify=False)
        valid(store, ticket_of(store, "T01", 2), rectify=True)
        valid(store, ticket_of(store, "T01", 4), rectify=False)
        invalid(store, ticket_of(store, "T01", 5))
        valid(store, ticket_of(store, "T02", 1), rectify=True)
        valid(store, ticket_of(store, "T02", 2), rectify=True)
    return tmp_path


def work(row: dict[str, Any]) -> tuple[int, int, int, float | None]:
    return row["tickets"], row["valid_tickets"], row["rectified"], row["rectification_rate"]


def by(store: Store, names: list[str], start: dt.date | None = D1, end: dt.date | None = D2) -> dict[Any, Any]:
    result = stats(store, names, start, end)
    rows = {tuple(r[k] for k in names) if len(names) > 1 else r[names[0]]: work(r) for r in result["rows"]}
    return {**rows, "TOTAL": work(result["total"])}


def test_rates_per_window_and_total_count_only_tickets_opened_in_the_range(home: Path) -> None:
    with Store(home / "hub.db") as store:
        assert by(store, ["window"]) == {"W01": (3, 2, 1, 0.5), "W02": (2, 2, 2, 1.0), "TOTAL": (5, 4, 3, 0.75)}
        assert by(store, ["window"], None, None) == {
            "W01": (5, 3, 1, 1 / 3), "W02": (2, 2, 2, 1.0), "TOTAL": (7, 5, 3, 0.6)
        }  # fmt: skip
        assert by(store, ["window"], D3, D3) == {"W01": (1, 0, 0, None), "TOTAL": (1, 0, 0, None)}
        assert by(store, ["device"]) == {"T01": (3, 2, 1, 0.5), "T02": (2, 2, 2, 1.0), "TOTAL": (5, 4, 3, 0.75)}


def test_rows_of_every_grouping_carry_their_own_tickets(home: Path) -> None:
    with Store(home / "hub.db") as store:
        assert by(store, ["window", "day"]) == {
            ("W01", "2026-11-18"): (1, 1, 1, 1.0),
            ("W01", "2026-11-19"): (2, 1, 0, 0.0),
            ("W02", "2026-11-18"): (0, 0, 0, None),  # a row for its rating; no bad review
            ("W02", "2026-11-19"): (2, 2, 2, 1.0),
            "TOTAL": (5, 4, 3, 0.75),
        }
        assert by(store, ["item"]) == {
            "": (2, 1, 1, 1.0), "ITEM-A": (2, 2, 1, 0.5), "ITEM-B": (1, 1, 1, 1.0), "TOTAL": (5, 4, 3, 0.75)
        }  # fmt: skip
        assert by(store, ["staff", "window"]) == {
            ("", "W01"): (1, 0, 0, None), ("", "W02"): (1, 1, 1, 1.0), ("S01", "W01"): (1, 1, 1, 1.0),
            ("S02", "W01"): (1, 1, 0, 0.0), ("S03", "W02"): (1, 1, 1, 1.0), "TOTAL": (5, 4, 3, 0.75),
        }  # fmt: skip


def test_existing_keys_stay_and_the_counters_agree_with_the_report(home: Path) -> None:
    with Store(home / "hub.db") as store:
        result = stats(store, ["window"], D1, D2)
        for row in [*result["rows"], result["total"]]:
            assert set(row) - {"window"} == CONTRACT_KEYS | NEW_KEYS
        w01 = result["rows"][0]
        assert (w01["window"], w01["evaluations"], w01["levels"]["dissatisfied"]) == ("W01", 4, 2)
        assert (w01["bad_rate"], w01["satisfaction_rate"], w01["mean_score"]) == (0.75, 0.25, 2.25)
        for start, end in [(D1, D2), (D0, D3), (D3, D3), (None, None)]:
            queue = tickets.rectification(store, start, end)
            total = stats(store, [], start, end)["total"]
            assert work(total) == (queue["tickets"], queue["valid"], queue["feedback"], queue["rectification_rate"])


def test_refused_changes_and_resent_events_count_nothing_twice(home: Path) -> None:
    with Store(home / "hub.db") as store:
        before = by(store, ["window"], None, None)
        with pytest.raises(tickets.TicketStateError):
            tickets.feedback(store, ticket_of(store, "T01", 2), "again")
        with pytest.raises(tickets.TicketStateError):
            tickets.verify(store, ticket_of(store, "T01", 6), True)  # registered, not assigned
        ingest(store, [press(5, "dissatisfied", D2), press(6, "dissatisfied", D3)], "T01")  # duplicates
        assert by(store, ["window"], None, None) == before


def test_a_ticket_counts_when_it_opens_on_its_rating_day(tmp_path: Path) -> None:
    """A bad review held behind a gap opens its ticket once the gap fills, on the review's day."""
    _cfg, store = make_home(tmp_path, ("W01",))
    with store:
        ingest(store, [press(2, "very_dissatisfied", D1)], "T01")
        assert by(store, ["day"], None, None) == {"2026-11-18": (0, 0, 0, None), "TOTAL": (0, 0, 0, None)}
        ingest(store, [press(1, "basic", D2)], "T01")
        assert by(store, ["day"], None, None) == {
            "2026-11-18": (1, 0, 0, None), "2026-11-19": (0, 0, 0, None), "TOTAL": (1, 0, 0, None)
        }  # fmt: skip


def test_migration_fills_the_counters_from_existing_tickets(home: Path) -> None:
    path = home / "hub.db"
    with Store(path) as store:
        expected = {names: stats(store, list(names), D0, D3) for names in [("window", "day"), ("item", "staff")]}
        for column in ("tickets", "valid_tickets", "rectified", "invalid"):  # the tallies table of schema version 4
            store.conn.execute(f"ALTER TABLE tallies DROP COLUMN {column}")
        store.conn.execute("ALTER TABLE events DROP COLUMN raw")
        store.conn.execute("ALTER TABLE events DROP COLUMN kid")  # migration 7
        store.conn.execute("ALTER TABLE devices DROP COLUMN kid")
        store.conn.execute("DROP TABLE device_keys")
        for table in ("upstream_days", "console_sessions", "user_tokens", "users"):  # migrations 9 and 8
            store.conn.execute(f"DROP TABLE {table}")
        store.conn.execute("DROP INDEX audit_time")
        store.conn.execute("DROP INDEX audit_subject")
        store.conn.execute("DROP TABLE alert_deliveries")  # migration 10
        store.conn.execute("DROP TABLE alerts")
        for table in ("config_reports", "config_pushes", "config_layers"):  # migration 11
            store.conn.execute(f"DROP TABLE {table}")
        store.conn.execute("DROP TABLE release_devices")  # migration 12
        store.conn.execute("DROP TABLE releases")
        store.conn.execute("PRAGMA user_version = 4")
    with Store(path) as store:
        assert {names: stats(store, list(names), D0, D3) for names in expected} == expected


def cli(home: Path, fmt: str) -> str:
    args = ["stats", "--by", "window", "--from", "2026-11-18", "--to", "2026-11-19", "--format", fmt]
    result = CliRunner().invoke(main, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_json_csv_and_table_show_the_rate(home: Path) -> None:
    out = json.loads(cli(home, "json"))
    assert [(r["window"], *work(r)) for r in out["rows"]] == [("W01", 3, 2, 1, 0.5), ("W02", 2, 2, 2, 1.0)]
    assert work(out["total"]) == (5, 4, 3, 0.75)
    rows = list(csv.DictReader(io.StringIO(cli(home, "csv"))))
    assert [(r["window"], r["tickets"], r["rectified"], r["rectification_rate"]) for r in rows] == [
        ("W01", "3", "1", "0.5"), ("W02", "2", "2", "1.0"), ("TOTAL", "5", "3", "0.75")
    ]  # fmt: skip
    head, _rule, w01, w02, _rule2, total = cli(home, "table").splitlines()
    assert head.split()[-2:] == ["tickets", "rectified%"]
    assert [line.split()[-2:] for line in (w01, w02, total)] == [["3", "50.0%"], ["2", "100.0%"], ["5", "75.0%"]]
