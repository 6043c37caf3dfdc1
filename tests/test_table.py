"""CLI tables measure text as a terminal shows it (issue 13): CJK columns line up."""

from __future__ import annotations

from hub.table import display_width, render


def test_wide_characters_take_two_columns_and_combining_marks_none() -> None:
    assert display_width("W01") == 3
    assert display_width("一号窗口") == 8
    assert display_width("ＡＢ") == 4  # fullwidth Latin
    assert display_width("e\u0301") == 1  # e + combining acute
    assert display_width("·—") == 2  # ambiguous width: one column, as most terminals show it


def test_columns_of_chinese_and_latin_names_line_up() -> None:
    text = render(["window", "name"], [["W01", "一号窗口"], ["W02", "Counter 2"], ["W003", "综合"]])
    lines = text.splitlines()
    starts = {line.index(line.split()[1]) if line.strip("- ") else None for line in lines}
    assert starts - {None} == {8}, text  # every second column starts at the same display column
    assert [display_width(line) for line in lines] == [12, 17, 16, 17, 12]


def test_right_aligned_with_a_total() -> None:
    text = render(["item", "n"], [["满意", "3"]], right=True, footer=["TOTAL", "3"])
    assert text.splitlines() == [" item  n", "-----  -", " 满意  3", "-----  -", "TOTAL  3"]
