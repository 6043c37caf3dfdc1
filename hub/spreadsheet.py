"""CSV for spreadsheets (SPEC section 10): text never runs as a formula.

Item codes, staff ids and window names come from outside the hub; a spreadsheet opening
``=HYPERLINK("http://x","y")`` from a CSV cell runs it. As OWASP advises, a text cell starting
with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading single quote; numbers stay
numbers, and the csv module does the quoting.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet should read it: text that would start a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """A ``csv.writer`` whose every cell goes through :func:`safe_cell`."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def to_csv(rows: Iterable[Sequence[Any]]) -> str:
    """The rows (header included) as CSV text, every cell made safe."""
    out = io.StringIO()
    SafeWriter(out).writerows(rows)
    return out.getvalue()
