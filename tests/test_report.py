"""``haocha report``: rates per window and item, ranking, reasons, work queue, in three formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from haocha.cli import main

from .upstream_helpers import ingest, make_home, rating, reason


def _home(tmp: Path) -> Path:
    _cfg, store = make_home(tmp, ("W01", "W02"))
    with store:
        ingest(store, [rating(1), rating(2, "dissatisfied"), reason(3, 2, ("cold", "lazy")), rating(4, "basic")], "T01")
        ingest(store, [rating(1, "very_dissatisfied"), reason(2, 1, ("cold",)), rating(3, "satisfied")], "T02")
    return tmp


def report(home: Path, fmt: str) -> str:
    args = ["report", "--period", "quarter", "--date", "2026-11-20", "--format", fmt, "--home", str(home)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_report_ranks_windows_by_bad_rate_and_breaks_down_reasons(tmp_path: Path) -> None:
    rep = json.loads(report(_home(tmp_path), "json"))
    assert (rep["period"], rep["from"], rep["to"]) == ("2026-Q4", "2026-10-01", "2026-12-31")
    assert [(r["window"], round(r["bad_rate"], 3)) for r in rep["ranking"]] == [("W02", 0.5), ("W01", 0.333)]
    assert rep["reasons"] == {"cold": 2, "lazy": 1}
    assert rep["work_queue"]["tickets"] == 2 and rep["work_queue"]["rectification_rate"] is None
    assert rep["total"]["evaluations"] == 5


def test_table_csv_and_html_carry_the_same_sections_in_chinese_by_name(tmp_path: Path) -> None:
    home = _home(tmp_path)
    table = report(home, "table")
    assert "## 差评率排名" in table and "冷（态度冷漠）" in table and "W02 窗" in table
    data = report(home, "csv")
    assert data.startswith("\ufeff")  # Excel reads UTF-8 Chinese only after a BOM
    rows = list(csv.reader(io.StringIO(data[1:])))
    assert ["差评率排名", "1", "W02", "W02 窗", "50.0", "2"] in rows  # numbers as numbers, rates in %
    # W01: 3 ratings, no case, 2 of 3 satisfied, 1 bad review (its ticket not yet verified)
    assert ["窗口", "W01", "W01 窗", "市场监管局", "0", "3", "", "66.67", "33.33", "3.0", "1", ""] in rows
    assert rows[0][:7] == ["表", "窗口编号", "窗口名称", "部门", "办件量", "评价数", "评价率(%)"]
    page = report(home, "html")
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3 and "差评原因" in page
    assert "http" not in page.replace("http-equiv", "")  # no CDN, nothing fetched


def test_csv_into_a_folder_gives_one_table_per_file(tmp_path: Path) -> None:
    """A spreadsheet opens each file as one sheet with its own header row (issue 11: one table per
    file); the files are the sections of the period report, numbers as numbers."""
    home = _home(tmp_path)
    out = tmp_path / "report-2026Q4"
    args = ["report", "--period", "quarter", "--date", "2026-11-20", "--format", "csv", "--out", f"{out}/"]
    result = CliRunner().invoke(main, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["01-窗口.csv", "02-事项.csv", "03-差评率排名.csv", "04-差评原因.csv", "05-差评处置.csv",
                     "06-超期工单.csv"]  # fmt: skip
    text = (out / "03-差评率排名.csv").read_text(encoding="utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows == [["排名", "窗口编号", "窗口名称", "差评率(%)", "评价数"], ["1", "W02", "W02 窗", "50.0", "2"],
                    ["2", "W01", "W01 窗", "33.33", "3"]]  # fmt: skip
    assert all(float(row[3]) >= 0 for row in rows[1:])
