"""Plain-text tables for the command line, measured as a terminal shows them.

A CJK character (窗口, 满意) takes two columns, a combining mark none: widths come from
``unicodedata.east_asian_width`` (wide and fullwidth: two columns), so columns of Chinese
window and item names line up.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal."""
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` columns, on the left when ``right``-aligned."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def render(
    head: Sequence[str], rows: Sequence[Sequence[str]], right: bool = False, footer: Sequence[str] | None = None
) -> str:
    """A header, a rule, the rows and, when given, a rule and a footer row (a total)."""
    every = [head, *rows, *([footer] if footer is not None else [])]
    widths = [max(display_width(cell) for cell in column) for column in zip(*every, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(pad(c, w, right) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(head), rule, *(line(r) for r in rows)]
    return "\n".join(lines + ([rule, line(footer)] if footer is not None else []))
