"""A small line chart drawn with braille dots, with an optional shaded interval band.

Textual's ``Sparkline`` draws one series with no axis and no interval; a lift history is only
honest with its 95 % interval around it, and a reward-rate history compares several arms. This
draws both in a few dozen lines instead of adding a plotting dependency: each terminal cell is a
2 × 4 grid of braille dots, the band is the cells' background, and the labels are text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

# Bit of each dot of a braille cell, by (column, row) within the 2 × 4 cell (Unicode's order).
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
PALETTE = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "bright_blue")
BAND_STYLE = "on #2e3a4a"


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]
    """One value per x position; None leaves a gap (no data that day)."""
    color: str = ""


@dataclass(frozen=True)
class Band:
    """An interval per x position (e.g. a 95 % CI), shaded behind the lines."""

    lo: Sequence[float | None]
    hi: Sequence[float | None]
    label: str = "95 % interval"


@dataclass(frozen=True)
class Chart:
    series: Sequence[Series]
    band: Band | None = None
    x_labels: tuple[str, str] = ("", "")
    reference: float | None = None
    """A dotted horizontal line (0 for a lift: no difference)."""
    fmt: Callable[[float], str] = field(default="{:.3g}".format)


def _limits(chart: Chart) -> tuple[float, float]:
    values = [v for s in chart.series for v in s.values if v is not None]
    if chart.band:
        values += [v for v in (*chart.band.lo, *chart.band.hi) if v is not None]
    if chart.reference is not None:
        values.append(chart.reference)
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _at(values: Sequence[float | None], x: float) -> float | None:
    """The value at fractional position x, linear between neighbouring known points."""
    left, right = int(x), min(int(x) + 1, len(values) - 1)
    a, b = values[left], values[right]
    if a is None or b is None:
        return a if x - left < 0.5 else b
    return a + (b - a) * (x - left)


def draw(chart: Chart, width: int, height: int) -> Text:
    """The chart as ``height`` lines of ``width`` cells: a legend, the plot, the x labels."""
    points = max((len(s.values) for s in chart.series), default=0)
    if points == 0 or not any(v is not None for s in chart.series for v in s.values):
        return Text("no data")
    low, high = _limits(chart)
    labels = [chart.fmt(high), chart.fmt((low + high) / 2), chart.fmt(low)]
    gutter = max(map(len, labels)) + 1
    cols, rows = max(2, width - gutter), max(2, height - 2)
    dots_x, dots_y = cols * 2, rows * 4

    def dot_x(i: float) -> int:
        return round(i * (dots_x - 1) / max(1, points - 1)) if points > 1 else dots_x // 2

    def dot_y(v: float) -> int:
        return round((high - v) / (high - low) * (dots_y - 1))

    bits = [[0] * cols for _ in range(rows)]
    owner: list[list[str]] = [[""] * cols for _ in range(rows)]
    for n, series in enumerate(chart.series):
        color = series.color or PALETTE[n % len(PALETTE)]
        marks: list[tuple[int, int]] = []
        for i, value in enumerate(series.values):
            if value is None:
                continue
            marks.append((dot_x(i), dot_y(value)))
            following = series.values[i + 1] if i + 1 < len(series.values) else None
            if following is not None:
                x0, y0, x1, y1 = dot_x(i), dot_y(value), dot_x(i + 1), dot_y(following)
                steps = max(abs(x1 - x0), abs(y1 - y0), 1)
                marks += [
                    (round(x0 + (x1 - x0) * s / steps), round(y0 + (y1 - y0) * s / steps))
                    for s in range(steps + 1)
                ]
        for x, y in marks:
            bits[y // 4][x // 2] |= DOT_BITS[x % 2][y % 4]
            owner[y // 4][x // 2] = color

    shaded = [[False] * cols for _ in range(rows)]
    if chart.band:
        for c in range(cols):
            at = (c * 2 + 0.5) / (dots_x - 1) * (points - 1) if points > 1 else 0.0
            lo, hi = _at(chart.band.lo, at), _at(chart.band.hi, at)
            if lo is None or hi is None:
                continue
            top, bottom = dot_y(hi) // 4, dot_y(lo) // 4
            for r in range(max(0, top), min(rows - 1, bottom) + 1):
                shaded[r][c] = True
    ref_row = dot_y(chart.reference) // 4 if chart.reference is not None else -1

    text = Text(no_wrap=True, overflow="crop")
    legend = [
        (f"━ {s.label}", s.color or PALETTE[n % len(PALETTE)]) for n, s in enumerate(chart.series)
    ]
    if chart.band:
        legend.append((f"█ {chart.band.label}", BAND_STYLE.removeprefix("on ")))
    text.append(" " * gutter)
    for label, style in legend:
        text.append(label + "  ", style)
    text.append("\n")
    for r in range(rows):
        axis = labels[0] if r == 0 else labels[2] if r == rows - 1 else ""
        if r == rows // 2 and rows > 2:
            axis = labels[1]
        text.append(axis.rjust(gutter - 1) + "┤", "dim")
        for c in range(cols):
            background = BAND_STYLE if shaded[r][c] else ""
            if bits[r][c]:
                text.append(chr(0x2800 + bits[r][c]), f"{owner[r][c]} {background}".strip())
            elif r == ref_row:
                text.append("┈", f"dim {background}".strip())
            else:
                text.append(" ", background)
        text.append("\n")
    first, last = chart.x_labels
    text.append(" " * gutter + first + last.rjust(max(0, cols - len(first))), "dim")
    return text


class LineChart(Widget):
    """Shows the last :class:`Chart` given to :meth:`plot`, redrawn at the widget's size."""

    DEFAULT_CSS = "LineChart { height: 10; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chart: Chart | None = None

    def plot(self, chart: Chart | None) -> None:
        self.chart = chart
        self.refresh()

    def render(self) -> RenderResult:
        if self.chart is None:
            return ""
        return draw(self.chart, self.size.width, self.size.height)
