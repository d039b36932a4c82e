"""Bar charts of benchmark results as SVG, with nothing but the standard library.

The bench scripts' ``--plot OUT.svg`` writes their table as a chart for the documentation
(``docs/performance.md``): one panel per measured quantity, a group of bars per row, a bar per
series, each labelled with its value. matplotlib is not a dependency of the project, and a
chart of a few bars does not need it.

    panel = Panel("median us per call, 4 elements", ["torchscript", "onnx"],
                  {"raw": [9.1, 4.0], "neuropod": [11.0, 6.2]})
    write_svg("overhead.svg", "neuropod vs raw framework calls", [panel])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

#: Bar colours, one per series, distinguishable for colour-blind readers (Okabe-Ito).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")

WIDTH = 760
LABEL_WIDTH = 190
BAR_HEIGHT = 14
GROUP_GAP = 10
PANEL_GAP = 34
FONT = "font-family='sans-serif'"


@dataclass(frozen=True)
class Panel:
    """One chart: a group of horizontal bars per row, one bar per series.

    Args:
        title: what the bars measure, with its unit.
        rows: the label of each group, top to bottom.
        series: the values of each series, one per row (``None``: not measured).
        log: a logarithmic axis, for values spanning orders of magnitude.
    """

    title: str
    rows: Sequence[str]
    series: Mapping[str, Sequence[float | None]]
    log: bool = False

    def __post_init__(self) -> None:
        for name, values in self.series.items():
            if len(values) != len(self.rows):
                raise ValueError(f"series {name!r} has {len(values)} values for {len(self.rows)} rows")

    def height(self) -> int:
        group = BAR_HEIGHT * len(self.series) + GROUP_GAP
        return 24 + group * len(self.rows)


def write_svg(path: str | Path, title: str, panels: Sequence[Panel]) -> Path:
    """Write the panels, stacked under a title and a legend, as an SVG file; its path."""
    names = list(dict.fromkeys(name for panel in panels for name in panel.series))
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}
    parts: list[str] = []
    y = 28
    parts.append(f"<text x='10' y='{y}' {FONT} font-size='15' font-weight='bold'>{escape(title)}</text>")
    y += 22
    x = 10
    for name in names:
        parts.append(f"<rect x='{x}' y='{y - 10}' width='12' height='12' fill='{colour[name]}'/>")
        parts.append(f"<text x='{x + 16}' y='{y}' {FONT} font-size='12'>{escape(name)}</text>")
        x += 26 + 7 * len(name)
    y += 24
    for panel in panels:
        parts.extend(_panel(panel, y, colour))
        y += panel.height() + PANEL_GAP
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{y}' viewBox='0 0 {WIDTH} {y}'>"
        f"<rect width='100%' height='100%' fill='white'/>{''.join(parts)}</svg>\n"
    )
    path = Path(path)
    path.write_text(svg, encoding="utf-8")
    return path


def _panel(panel: Panel, top: int, colour: Mapping[str, str]) -> list[str]:
    values = [v for series in panel.series.values() for v in series if v is not None and v > 0]
    largest = max(values, default=1.0)
    smallest = min(values, default=1.0)
    span = WIDTH - LABEL_WIDTH - 90

    def length(value: float) -> float:
        if panel.log:
            low = math.floor(math.log10(smallest))
            high = math.log10(largest) if largest > smallest else low + 1
            return span * (math.log10(value) - low + 0.05) / (high - low + 0.05)
        return span * value / largest

    heading = f"<text x='10' y='{top + 12}' {FONT} font-size='12' font-weight='bold'>"
    parts = [f"{heading}{escape(panel.title)}</text>"]
    y = top + 24
    for i, row in enumerate(panel.rows):
        middle = y + BAR_HEIGHT * len(panel.series) / 2 + 4
        anchor = f"x='{LABEL_WIDTH - 8}' y='{middle}' text-anchor='end'"
        parts.append(f"<text {anchor} {FONT} font-size='12'>{escape(row)}</text>")
        for name, series in panel.series.items():
            value = series[i]
            if value is not None and value > 0:
                width = max(1.0, length(value))
                parts.append(
                    f"<rect x='{LABEL_WIDTH}' y='{y}' width='{width:.1f}' height='{BAR_HEIGHT - 2}' "
                    f"fill='{colour[name]}'><title>{escape(name)}: {_number(value)}</title></rect>"
                )
                parts.append(
                    f"<text x='{LABEL_WIDTH + width + 4:.1f}' y='{y + BAR_HEIGHT - 4}' {FONT} "
                    f"font-size='10'>{_number(value)}</text>"
                )
            y += BAR_HEIGHT
        y += GROUP_GAP
    return parts


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
