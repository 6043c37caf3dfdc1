"""Operators' and clients' input at the command line (SPEC section 10): CSV that spreadsheets read
as text, ids that are exactly ids (no trailing newline), ticket numbers of any length."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from haocha.cli import main
from hub import broker
from hub import config as hub_config

FORMULA = '=HYPERLINK("http://x","y")'
#: What a spreadsheet reads as the start of a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--home", str(home)])


def ok(home: Path, *args: str) -> str:
    result = run(home, *args)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def refused(home: Path, *args: str) -> str:
    result = run(home, *args)
    assert result.exit_code == 1, (args, result.output)
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ok(tmp_path, "hub", "init", "--hall", "H1")
    ok(tmp_path, "window", "add", "W01", "--name", "综合窗")
    ok(tmp_path, "window", "add", "W02", "--name", "-2+3")
    ok(tmp_path, "item", "add", FORMULA, "--name", "+1 cmd")
    ok(tmp_path, "case", "open", "--window", "W01", "--case", "C-1", "--item", FORMULA, "--staff", "@SUM(A1)")
    return tmp_path


def cells(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if row]


def assert_no_formula(rows: list[list[str]]) -> None:
    """No text cell starts a formula; a number (even negative) would parse as one."""
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS) or _number(cell), (cell, row)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_cli_csv_writes_formulas_as_text(home: Path) -> None:
    items = cells(ok(home, "item", "list", "--format", "csv"))
    assert items == [["item", "name"], ["'" + FORMULA, "'+1 cmd"]]
    windows = cells(ok(home, "window", "list", "--format", "csv"))
    assert windows[1:] == [["W01", "综合窗", ""], ["W02", "'-2+3", ""]]
    text = ok(home, "stats", "--by", "item,staff", "--format", "csv")
    rows = cells(text)
    assert_no_formula(rows)
    (row,) = [r for r in rows if r[0] == "'" + FORMULA]
    assert row[1] == "'@SUM(A1)" and row[2] == "1"  # cases: a number, left as a number
    assert '"\'=HYPERLINK(""http://x"",""y"")",\'@SUM(A1),1,' in text  # quoted by the csv module, once


def test_report_csv_writes_formulas_as_text(home: Path) -> None:
    rows = cells(ok(home, "report", "--format", "csv"))
    assert_no_formula(rows)
    assert rows[[r[1] for r in rows].index("'" + FORMULA)][:4] == ["事项", "'" + FORMULA, "'+1 cmd", "1"]


def test_safe_cell_keeps_numbers_and_quotes_every_formula_start() -> None:
    from hub.spreadsheet import safe_cell, to_csv

    assert [safe_cell(v) for v in (-3, 2.5, 0, None, True)] == [-3, 2.5, 0, None, True]
    assert [safe_cell(s) for s in ("=1", "+1", "-1", "@A", "\t=1", "\r=1", "a=1", "")] == [
        "'=1", "'+1", "'-1", "'@A", "'\t=1", "'\r=1", "a=1", ""
    ]  # fmt: skip
    assert to_csv([["n", "text"], [-3, "=1+1"], [None, 'a,"b"']]) == 'n,text\r\n-3,\'=1+1\r\n,"a,""b"""\r\n'


def _passwd_users(home: Path) -> list[str]:
    """The password file ``broker run`` writes from the registry, without the hub's own line
    (its hash is salted afresh at every write)."""
    broker.write_files(hub_config.load(home), home)
    return (broker.broker_dir(home) / "passwd").read_text().splitlines()[1:]


@pytest.mark.parametrize("args", [
    ("device", "add", "T9\n", "--window", "W01"),
    ("device", "add", "T9\r\n", "--window", "W01"),
    ("device", "add", "T9 ", "--window", "W01"),
    ("window", "add", "W9\n", "--name", "x"),
])  # fmt: skip
def test_ids_with_a_trailing_newline_are_refused(home: Path, args: tuple[str, ...]) -> None:
    ok(home, "device", "add", "T01", "--window", "W01")
    before = (_passwd_users(home), ok(home, "window", "list", "--format", "json"), sorted(home.glob("devices/*")))
    assert "invalid" in refused(home, *args)
    after = (_passwd_users(home), ok(home, "window", "list", "--format", "json"), sorted(home.glob("devices/*")))
    assert after == before and [line.split(":")[0] for line in after[0]] == ["T01"]


def test_a_hall_id_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    assert "hall" in refused(tmp_path, "hub", "init", "--hall", "H1\n")
    assert not (tmp_path / hub_config.CONFIG_NAME).exists()


@pytest.mark.parametrize("ref", ["9" * 19, "9" * 5_000, "1\n"])
def test_ticket_numbers_of_any_length_are_unknown(home: Path, ref: str) -> None:
    assert "unknown ticket" in refused(home, "ticket", "show", ref)
