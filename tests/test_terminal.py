"""The terminal's journal and rating rules, with gpiozero's MockFactory pins and a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from terminal.clock import Clock
from terminal.config import load
from terminal.errors import ConfigError, InvalidRow, JournalError
from terminal.journal import Journal, read_summary
from terminal.panel import PanelSignal
from terminal.runner import Terminal

KEY_HEX = "ab" * 32
#: A row that obeys protocol.rules, for tests of the journal's mechanics.
ROW = {"kind": "rating", "level": "basic", "trigger": "free", "window": "W01", "boot": "b", "mono_ms": 1, "wall_ms": 0}


def write_config(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "terminal.toml"
    path.write_text(
        f'device = "T01"\nhall = "H1"\nwindow = "W01"\nkey = "{KEY_HEX}"\n{extra}\n[broker]\nport = 9\n'
    )  # nobody listens: the uplink just keeps retrying
    return path


class FakeClock(Clock):
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        super().__init__("unsynced", boot_id="boot")
        self.now = 1_000_000

    def mono_ms(self) -> int:
        return self.now


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def make_terminal(tmp_path: Path, factory: MockFactory, extra: str = "", **kw: Any) -> Terminal:
    term = Terminal(
        load(write_config(tmp_path, extra)), clock=kw.pop("clock", None) or FakeClock(), pin_factory=factory, **kw
    )
    term.start()
    return term


def press(factory: MockFactory, pin: int) -> None:
    factory.pin(pin).drive_low()
    factory.pin(pin).drive_high()


# -- journal ----------------------------------------------------------------------------------
def test_seq_is_never_reused_after_every_row_is_acked(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "T01") as journal:
        epoch = journal.epoch
        assert [journal.append(ROW) for _ in range(3)] == [1, 2, 3]
        assert journal.ack(3)
        assert journal.rows_after(0, 10) == []
    with Journal(tmp_path / "j.db", "T01") as journal:
        assert journal.epoch == epoch
        assert journal.append(ROW) == 4
        assert read_summary(tmp_path / "j.db") == {
            "device": "T01",
            "epoch": epoch,
            "last_seq": 4,
            "acked": 3,
            "pending": 1,
        }


def test_ack_pointer_only_grows_and_cannot_pass_last_seq(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "T01") as journal:
        for _ in range(5):
            journal.append(ROW)
        assert journal.ack(4)
        assert not journal.ack(2)
        assert journal.acked == 4
        assert [r.seq for r in journal.rows_after(0, 10)] == [5]
        with pytest.raises(JournalError):
            journal.ack(6)


def test_journal_is_wal_with_autoincrement_and_belongs_to_one_device(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db", "T01").close()
    db = sqlite3.connect(tmp_path / "j.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "AUTOINCREMENT" in db.execute("SELECT sql FROM sqlite_master WHERE name='journal'").fetchone()[0]
    db.close()
    with pytest.raises(JournalError, match="belongs to device 'T01'"):
        Journal(tmp_path / "j.db", "T02")


def test_wiped_journal_gets_a_new_epoch(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "T01") as journal:
        first = journal.epoch
    for leftover in tmp_path.glob("j.db*"):
        leftover.unlink()
    with Journal(tmp_path / "j.db", "T01") as journal:
        assert journal.epoch != first and len(journal.epoch) == 32


# -- rules ------------------------------------------------------------------------------------
def test_free_mode_lockout_turns_fast_presses_into_ignored_events(tmp_path: Path, factory: MockFactory) -> None:
    clock = FakeClock()
    with make_terminal(tmp_path, factory, clock=clock) as term:
        press(factory, 5)  # very_satisfied
        press(factory, 6)  # within the 10 s lockout
        clock.now += 10_000
        press(factory, 13)
        kinds = [(r.body["kind"], r.body.get("level"), r.body.get("trigger")) for r in term.journal.rows_after(0, 10)]
    assert kinds == [("rating", "very_satisfied", "free"), ("ignored", "satisfied", None), ("rating", "basic", "free")]


def test_keys_light_up_at_start_in_free_mode_only(tmp_path: Path, factory: MockFactory) -> None:
    with make_terminal(tmp_path / "free", factory):
        assert factory.pin(12).state  # ready light
    factory.reset()
    with make_terminal(tmp_path / "invited", factory, 'mode = "invited"'):
        assert not factory.pin(12).state  # dark until an invitation comes


def test_thanks_light_comes_only_after_the_commit(tmp_path: Path, factory: MockFactory) -> None:
    seen: list[bool] = []

    class WatchedJournal(Journal):
        def append(self, body: dict[str, Any], case_from_seq: bool = False) -> int:
            seen.append(bool(factory.pin(20).state))  # thanks light while the commit runs
            return super().append(body, case_from_seq)

    with make_terminal(tmp_path, factory) as term:
        term.evaluator.journal = WatchedJournal(term.config.journal_path, "T01")
        press(factory, 5)
        assert seen == [False] and factory.pin(20).state
        term.evaluator.journal.close()


def test_a_failed_commit_shows_no_thanks_and_counts_nothing(tmp_path: Path, factory: MockFactory) -> None:
    class BrokenJournal(Journal):
        def append(self, body: dict[str, Any], case_from_seq: bool = False) -> int:
            raise JournalError("disk full")

    with make_terminal(tmp_path, factory) as term:
        term.evaluator.journal = BrokenJournal(tmp_path / "other.db", "T01")
        press(factory, 5)
        assert not factory.pin(20).state
        assert term.evaluator.counts["ratings"] == 0
        term.evaluator.journal.close()


def test_bad_rating_waits_for_a_reason_then_times_out(tmp_path: Path, factory: MockFactory) -> None:
    clock = FakeClock()
    extra = "[gpio.reason_keys]\ncold = 17\nlazy = 27\n"
    with make_terminal(tmp_path, factory, extra, clock=clock) as term:
        press(factory, 19)  # dissatisfied → ask for a reason
        press(factory, 27)  # lazy
        clock.now += 20_000
        press(factory, 26)  # very_dissatisfied
        clock.now += 20_001
        term.evaluator.tick()
        press(factory, 17)  # too late: the reason wait has ended, nothing journaled
        rows = [
            (r.seq, r.body["kind"], r.body.get("reasons"), r.body.get("ref")) for r in term.journal.rows_after(0, 9)
        ]
    assert rows == [(1, "rating", None, None), (2, "reason", ["lazy"], 1), (3, "rating", None, None)]


def test_invited_mode_rates_only_the_first_press_of_an_invitation(tmp_path: Path, factory: MockFactory) -> None:
    clock = FakeClock()
    with make_terminal(tmp_path, factory, 'mode = "invited"', clock=clock) as term:
        press(factory, 5)  # no invitation: staff pressing by themselves
        term.commands.handle({"cmd": "invite", "case": "C-1", "item": "ITEM", "staff": "S1", "ttl_ms": 60_000})
        press(factory, 6)
        press(factory, 13)  # second press of the same invitation
        term.commands.handle({"cmd": "invite", "case": "C-2", "ttl_ms": 1000})
        clock.now += 1000  # expired
        press(factory, 5)
        rows = [(r.body["kind"], r.body.get("case"), r.body.get("trigger")) for r in term.journal.rows_after(0, 9)]
    assert rows == [
        ("ignored", None, None),
        ("rating", "C-1", "invite"),
        ("ignored", None, None),
        ("ignored", None, None),
    ]


def test_staff_key_opens_a_local_case_bound_to_the_next_rating(tmp_path: Path, factory: MockFactory) -> None:
    with make_terminal(tmp_path, factory, 'mode = "staff"\nstaff = "S7"\n[gpio]\nstaff_key = 21') as term:
        press(factory, 21)
        press(factory, 6)
        staff, rating = term.journal.rows_after(0, 9)
        local_case = f"T01-{term.journal.epoch[:8]}-1"
    assert staff.body["case"] == local_case and staff.body["staff"] == "S7"
    assert (rating.body["case"], rating.body["trigger"], rating.body["staff"]) == (local_case, "staff", "S7")


def test_three_key_layout(tmp_path: Path, factory: MockFactory) -> None:
    extra = "[gpio.keys]\nsatisfied = 5\nbasic = 6\ndissatisfied = 13\n"
    with make_terminal(tmp_path, factory, extra) as term:
        assert term.panel.levels == {"satisfied", "basic", "dissatisfied"}
        press(factory, 13)
        assert term.journal.rows_after(0, 1)[0].body["level"] == "dissatisfied"


# -- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    ("colour = 1", "unknown key 'colour'"),
    ('mode = "party"', "'mode' must be one of"),
    ("[timing]\nlockout_s = -1", "'timing.lockout_s' must be 0 or more"),
    ("[gpio]\nbounce_ms = 'fast'", "'gpio.bounce_ms' must be an integer"),
    ("[gpio.keys]\ngreat = 5", "names unknown levels great"),
    ("[uplink]\nwindo = 5", "unknown key 'uplink.windo'"),
])  # fmt: skip
def test_bad_config_gives_one_clear_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(write_config(tmp_path, extra))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_relative_journal_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, 'journal = "data/j.db"'))
    assert config.journal_path == tmp_path / "data" / "j.db"


# -- rows that would break protocol.rules (SPEC section 10) --------------------------------------
@pytest.mark.parametrize("extra, message", [
    ('staff = ""', "'staff' must be 1-64 characters"),
    (f'item = "{"x" * 65}"', "'item' must be 1-64 characters"),
    ('item = "A\\u2028B"', "'item' must be 1-64 characters"),
    ('staff = "S\\u0000"', "'staff' must be 1-64 characters"),
    ('reasons = ["cold", "lazy\\n"]', "'reasons' has invalid reason ids"),
    ('[gpio.reason_keys]\n"cold\\n" = 17', "'gpio.reason_keys' has invalid reason ids"),
])  # fmt: skip
def test_config_that_would_make_invalid_rows_is_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(write_config(tmp_path, extra))
    assert "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path / "terminal.toml"))


def test_window_id_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('window = "W01"', 'window = "W01\\n"'))
    with pytest.raises(ConfigError, match="'window' must be 1-32 of") as info:
        load(path)
    assert "\n" not in str(info.value)


def test_a_64_character_item_is_fine(tmp_path: Path) -> None:
    assert load(write_config(tmp_path, f'item = "{"办" * 64}"')).item == "办" * 64


def test_an_invalid_row_is_not_journaled_and_uses_no_seq(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "T01") as journal:
        with pytest.raises(InvalidRow, match="item: expected 1-64 characters"):
            journal.append({**ROW, "item": "x" * 65})
        with pytest.raises(InvalidRow, match="kind: a staff event needs"):
            journal.append({"kind": "staff", "trigger": "staff", "window": "W01", "boot": "b"})
        assert journal.last_seq == 0 and journal.rows_after(0, 9) == []
        assert journal.append(ROW) == 1
        staff_row = {"kind": "staff", "trigger": "staff", "window": "W01", "boot": "b"}
        assert journal.append(staff_row, case_from_seq=True) == 2  # its local case number makes it valid
        assert journal.rows_after(1, 9)[0].body["case"] == f"T01-{journal.epoch[:8]}-2"


def test_a_press_whose_row_breaks_a_rule_is_refused_and_the_terminal_goes_on(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad value that got past every check (here set directly) still never reaches the journal:
    the citizen gets the refused beep, never "thank you", and the next good press works."""
    clock = FakeClock()
    with make_terminal(tmp_path, factory, clock=clock) as term:
        shown: list[PanelSignal] = []
        show = term.panel.show
        term.evaluator.panel.show = lambda feedback: (shown.append(feedback), show(feedback))  # type: ignore[method-assign]
        term.evaluator.sign_in("")
        press(factory, 5)
        assert term.journal.last_seq == 0
        assert shown == [PanelSignal.REFUSED] and not factory.pin(20).state
        errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "terminal.evaluator"]
        assert len(errors) == 1 and "staff: expected 1-64 characters" in errors[0].getMessage()
        term.evaluator.sign_in("S1")
        press(factory, 5)
        assert factory.pin(20).state  # thank you
        assert [(r.seq, r.body["staff"]) for r in term.journal.rows_after(0, 9)] == [(1, "S1")]
        assert term.evaluator.counts["invalid"] == 1


@pytest.mark.parametrize("offset_years", [-57, 125])  # a clock at 1970, or at 2150
def test_a_synced_clock_outside_the_rules_range_counts_as_unsynced(
    tmp_path: Path, factory: MockFactory, offset_years: int
) -> None:
    clock = Clock("synced", boot_id="boot", wall_offset_s=offset_years * 365.25 * 86_400)
    with make_terminal(tmp_path, factory, clock=clock) as term:
        press(factory, 5)
        [row] = term.journal.rows_after(0, 9)
    assert row.body["synced"] is False and row.body["wall_ms"] >= 0
    assert Clock("synced").synced()  # today's clock is in range


def _invite(item: object = "ITEM", **extra: object) -> dict[str, object]:
    return {"cmd": "invite", "case": "C-1", "item": item, "staff": "S1", "ttl_ms": 60_000, **extra}


BAD_COMMANDS = [
    _invite(item="x" * 65),
    _invite(case=""),
    _invite(case=None),
    _invite(staff="S\n1"),
    _invite(case=["C-1"]),
    _invite(ttl_ms=True),
    _invite(ttl_ms=1.5),
    _invite(ttl_ms=-5),
    _invite(ttl_ms=2**70),
    {"cmd": "staff", "staff": ""},
    {"cmd": "staff", "staff": "x" * 65},
    {"cmd": "cancel", "case": {"a": 1}},
    {"cmd": ["invite"]},
]


def test_a_bad_command_is_refused_with_one_warning_and_changes_nothing(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    with make_terminal(tmp_path, factory, 'mode = "invited"\nstaff = "S0"', clock=clock) as term:
        term.commands.handle(_invite(case="C-0"))
        for bad in BAD_COMMANDS:
            caplog.clear()
            term.commands.handle(bad)  # never raises
            warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1 and len(warnings[0]) < 200, (bad, warnings)
            invitation = term.evaluator.invitation
            assert invitation is not None and invitation.case == "C-0", bad
            assert term.evaluator.staff == "S0", bad
        press(factory, 6)
        [row] = term.journal.rows_after(0, 9)
    assert (row.body["kind"], row.body["case"], row.body["item"]) == ("rating", "C-0", "ITEM")
    assert term.commands.counts["refused"] == len(BAD_COMMANDS) - 1  # and one unknown command


def test_an_invitation_with_a_65_character_item_is_refused_and_the_next_one_works(
    tmp_path: Path, factory: MockFactory
) -> None:
    clock = FakeClock()
    with make_terminal(tmp_path, factory, 'mode = "invited"', clock=clock) as term:
        term.commands.handle(_invite(item="x" * 65))
        assert term.evaluator.invitation is None and term.commands.counts["refused"] == 1
        press(factory, 6)  # no invitation: an ignored press, journaled
        assert not factory.pin(20).state
        term.commands.handle(_invite(case="C-2", item="I" * 64))
        press(factory, 6)
        rows = [(r.body["kind"], r.body.get("case"), r.body.get("item")) for r in term.journal.rows_after(0, 9)]
        assert factory.pin(20).state  # thank you
    assert rows == [("ignored", None, None), ("rating", "C-2", "I" * 64)]


def test_a_paused_terminal_goes_dark_takes_no_key_and_takes_keys_again_once_resumed(
    tmp_path: Path, factory: MockFactory
) -> None:
    """An update pauses the keys before it switches releases; if the switch fails, the terminal
    must count again (a paused terminal that never restarts would lose every rating after)."""
    with make_terminal(tmp_path, factory) as term:
        assert factory.pin(12).state  # free mode: ready
        assert term.evaluator.pause_if_idle()
        assert not factory.pin(12).state  # dark: no key is taken
        press(factory, 6)
        assert term.journal.last_seq == 0 and not factory.pin(20).state
        term.evaluator.resume()
        assert factory.pin(12).state
        press(factory, 6)
        assert term.journal.last_seq == 1 and factory.pin(20).state  # journaled, then thank you
