"""Charts as inline SVG made on the server: no script, no CDN (hall networks are offline).

Each function takes plain numbers and labels and returns one ``<svg>`` element that scales to
its container's width (``viewBox``), with a ``<title>`` per mark for a hover tooltip and text
labels drawn in the page's CJK font.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from protocol.levels import LEVEL_IDS, Level

#: One colour per level, best to worst (green → red); readable on white and in greyscale print.
LEVEL_COLOURS = {
    "very_satisfied": "#2e7d32",
    "satisfied": "#7cb342",
    "basic": "#f9a825",
    "dissatisfied": "#ef6c00",
    "very_dissatisfied": "#c62828",
}
LABELS_ZH = {lv: Level(lv).label_zh for lv in LEVEL_IDS}  # enum lookups per bar were half a card's cost
_FONT = "font-family=\"'Noto Sans CJK SC','WenQuanYi Zen Hei',sans-serif\""


def level_bar(levels: dict[str, int], width: int = 600, height: int = 28) -> str:
    """A 100 % stacked bar of the five levels, best on the left; grey when there is nothing."""
    total = sum(levels.get(lv, 0) for lv in LEVEL_IDS)
    parts = [f'<svg class="levelbar" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
             f'aria-label="评价等级分布" width="100%" height="{height}">']  # fmt: skip
    if total == 0:
        parts.append(f'<rect width="{width}" height="{height}" fill="#e0e4e8"><title>暂无评价</title></rect>')
    x = 0.0
    for lv in LEVEL_IDS if total else ():
        n = levels.get(lv, 0)
        w = width * n / total
        if n:
            tip = f"{LABELS_ZH[lv]} {n}（{n / total:.1%}）"
            parts.append(
                f'<rect x="{x:.2f}" width="{w:.2f}" height="{height}" fill="{LEVEL_COLOURS[lv]}">'
                f"<title>{tip}</title></rect>"  # nothing to escape: a fixed label and numbers
            )
        x += w
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(points: Sequence[tuple[str, float]], title: str, fmt: Callable[[float], str] = lambda v: f"{v:g}") -> str:
    """Vertical bars, one per labelled value, on an axis from 0 to the largest value."""
    plot = _Plot(len(points), 0.0, max((v for _, v in points), default=0.0) or 1.0)
    marks = []
    for i, (label, value) in enumerate(points):
        x, w = plot.slot(i)
        y = plot.y(value)
        marks.append(
            f'<rect x="{x + w * 0.15:.1f}" y="{y:.1f}" width="{w * 0.7:.1f}" height="{plot.bottom - y:.1f}" '
            f'fill="#1565c0"><title>{escape(label)}：{escape(fmt(value))}</title></rect>'
        )
    return plot.svg(title, [label for label, _ in points], marks, fmt)


def line_chart(
    points: Sequence[tuple[str, float | None]],
    title: str,
    lo: float,
    hi: float,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    colour: str = "#b71c1c",
) -> str:
    """A line through the labelled values on a fixed axis [lo, hi]; a gap where a value is None."""
    plot = _Plot(len(points), lo, hi)
    marks: list[str] = []
    runs: list[list[str]] = [[]]
    for i, (label, value) in enumerate(points):
        if value is None:
            runs.append([])  # a gap: the line does not cross a period with no figure
            continue
        x, w = plot.slot(i)
        cx, cy = x + w / 2, plot.y(value)
        runs[-1].append(f"{cx:.1f},{cy:.1f}")
        marks.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}">'
            f"<title>{escape(label)}：{escape(fmt(value))}</title></circle>"
        )
    d = " ".join("M" + " L".join(run) for run in runs if len(run) > 1)
    line = f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>' if d else ""
    return plot.svg(title, [label for label, _ in points], [line, *marks], fmt)


class _Plot:
    """Geometry shared by the charts: a 480×240 box, a left axis with three ticks, x labels."""

    W, H, LEFT, RIGHT, TOP, BOTTOM = 480, 240, 52, 10, 34, 200

    def __init__(self, n: int, lo: float, hi: float) -> None:
        self.n, self.lo, self.hi = max(n, 1), lo, hi if hi > lo else lo + 1
        self.bottom = self.BOTTOM

    def slot(self, i: int) -> tuple[float, float]:
        w = (self.W - self.LEFT - self.RIGHT) / self.n
        return self.LEFT + i * w, w

    def y(self, value: float) -> float:
        span = self.hi - self.lo
        clamped = min(max(value, self.lo), self.hi)
        return self.BOTTOM - (clamped - self.lo) / span * (self.BOTTOM - self.TOP)

    def svg(self, title: str, labels: list[str], marks: list[str], fmt: Callable[[float], str]) -> str:
        ticks = []
        for k in range(3):
            v = self.lo + (self.hi - self.lo) * k / 2
            y = self.y(v)
            ticks.append(
                f'<line x1="{self.LEFT}" x2="{self.W - self.RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7eb"/>'
                f'<text x="{self.LEFT - 6}" y="{y + 5:.1f}" text-anchor="end" font-size="13" fill="#556">'
                f"{escape(fmt(v))}</text>"
            )
        every = max(1, -(-len(labels) // 6))  # at most six x labels: they must not overlap
        xlabels = []
        for i, label in enumerate(labels):
            if i % every == 0:
                x, w = self.slot(i)
                xlabels.append(
                    f'<text x="{x + w / 2:.1f}" y="{self.BOTTOM + 20}" text-anchor="middle" font-size="13" '
                    f'fill="#556">{escape(_short(label))}</text>'
                )
        return (
            f'<svg class="chart" viewBox="0 0 {self.W} {self.H}" width="100%" role="img" '
            f'aria-label="{escape(title)}" {_FONT}>'
            f'<text x="{self.LEFT}" y="20" font-size="16" font-weight="bold" fill="#1d2733">{escape(title)}</text>'
            f"{''.join(ticks)}{''.join(marks)}{''.join(xlabels)}"
            f'<line x1="{self.LEFT}" x2="{self.W - self.RIGHT}" y1="{self.BOTTOM}" y2="{self.BOTTOM}" stroke="#99a"/>'
            "</svg>"
        )


def _short(label: str) -> str:
    """``2026-11-03`` → ``11-03``; weeks and months keep their form."""
    return label[5:] if len(label) == 10 else label
