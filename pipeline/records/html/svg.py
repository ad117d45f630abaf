"""Small hand-drawn SVG plots for the HTML report: no plotting library, no script.

Each function returns one `<svg>` element as text, every label escaped, with `<title>`
tooltips on the marks (the browser shows them on hover; nothing else needs a script).
`line_chart` draws both the metrics across runs and a rollout's weight per interval (as
steps): one plot, so the report's charts look and read alike.
"""
from __future__ import annotations

import dataclasses
import math
from html import escape
from typing import Optional, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value == value else "0"


def _label(value: float) -> str:
    """Compact tick text: 0.85, 12, 1.2k, 3.4M."""
    size = abs(value)
    if size >= 1e9:
        return f"{value:.3g}"
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    span = high - low
    if not span > 0:
        return [low]
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 2.5, 5, 10)),  # the count nearest to the asked
               key=lambda candidate: abs(span / candidate - (count - 1)))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


@dataclasses.dataclass
class Series:
    """One line of a chart: a metric's value per run, and its threshold if any."""

    name: str
    values: list[Optional[float]]  # one per x position, None where the run has no value
    reference: Optional[float] = None  # a threshold, drawn dashed
    reference_label: str = ""
    value_text: str = "{:.4f}"  # how a value is written in its marker's tooltip


@dataclasses.dataclass
class Point:
    """One x position of a chart (a run), and how its markers are drawn."""

    label: str  # the x-axis text (a version, a date)
    detail: str  # the tooltip
    filled: bool = True  # pushed versions filled, other runs hollow
    current: bool = False  # the run the report is about (a larger marker)
    colour: Optional[str] = None  # instead of the series' colour (a failed interval: red)


# The key under a chart of runs: what filled, hollow and large markers mean.
RUN_KEY = (("pushed", Point("", "")), ("not pushed", Point("", "", filled=False)),
           ("this run", Point("", "", filled=False, current=True)))
KEY_COLOUR = "#555"


def _marker(cx: float, cy: float, radius: float, point: Point, colour: str,
            tooltip: str = "") -> str:
    """One circle, as a data point or as its sample in the key."""
    colour = point.colour or colour
    fill = colour if point.filled else "#fff"
    title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return (f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="{radius}" fill="{fill}" '
            f'stroke="{colour}" stroke-width="2">{title}</circle>')


def _steps(path: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The path as steps: each value holds from the previous x position up to its own (a
    weight judged during an interval held since the interval before ended)."""
    out = path[:1]
    for (x_before, _), (px, py) in zip(path, path[1:]):
        out += [(x_before, py), (px, py)]
    return out


def line_chart(series: Sequence[Series], points: Sequence[Point], width: int = 720,
               height: int = 260, title: str = "", steps: bool = False,
               include: Sequence[float] = (),
               key: Sequence[tuple[str, Point]] = RUN_KEY) -> str:
    """Values along x positions: one coloured line per series, thresholds dashed.

    steps: draw each line as steps rather than straight segments (a rollout's weight).
    include: values the y axis covers whatever the data (a share's 0 and 100 %).
    key: what the marker styles mean, each with a sample marker, under the plot.
    """
    left, right, top, bottom = 52, 150, 14, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    values += include
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    spread = max(high - low, 0.02)
    near = [s.reference for s in series  # a threshold far below the values would flatten them
            if s.reference is not None and low - spread <= s.reference <= high + spread]
    low, high = min([low, *near]), max([high, *near])
    pad = (high - low) * 0.08 or 0.01
    low, high = low - pad, high + pad
    count = max(len(points), 1)

    def x(index: int) -> float:
        return left + (plot_w / 2 if count == 1 else plot_w * index / (count - 1))

    def y(value: float) -> float:
        return top + plot_h * (high - value) / (high - low)

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>" if title else "",
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
             'fill="#fff" stroke="#bbb"/>']
    for value in nice_ticks(low, high, 6):  # horizontal grid and y ticks
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y(value))}" '
                     f'y2="{_num(y(value))}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{_num(y(value) + 4)}" text-anchor="end" '
                     f'class="tick">{escape(_label(value))}</text>')
    widest = max((len(p.label) for p in points), default=1) * 6.6 + 12
    every = max(1, math.ceil(count / max(1, int(plot_w // widest) + 1)))  # labels never touch
    for index, point in enumerate(points):
        last_fits = index == count - 1 and (count - 1) % every >= every / 2
        if index % every == 0 or last_fits:
            parts.append(f'<text x="{_num(x(index))}" y="{top + plot_h + 16}" '
                         f'text-anchor="middle" class="tick">{escape(point.label)}</text>')
    for number, item in enumerate(series):
        colour = PALETTE[number % len(PALETTE)]
        shown = item.reference is not None and low <= item.reference <= high
        if shown:
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y(item.reference))}"'
                         f' y2="{_num(y(item.reference))}" stroke="{colour}" '
                         'stroke-dasharray="5 4" stroke-width="1.2">'
                         f"<title>{escape(item.reference_label)}</title></line>")
        path = [(x(i), y(v)) for i, v in enumerate(item.values)
                if v is not None and math.isfinite(v)]
        if len(path) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{_num(px)},{_num(py)}"
                                    for px, py in (_steps(path) if steps else path)) + '"/>')
        for index, value in enumerate(item.values):
            if value is None or not math.isfinite(value):
                continue
            point = points[index]
            radius = 5.5 if point.current else 3.5 if count <= 30 else 2.5 if count <= 60 else 2
            tooltip = f"{item.name} {item.value_text.format(value)}: {point.detail}"
            parts.append(_marker(x(index), y(value), radius, point, colour, tooltip))
        legend_y = top + 10 + number * 36
        parts.append(f'<line x1="{left + plot_w + 12}" x2="{left + plot_w + 32}" '
                     f'y1="{legend_y}" y2="{legend_y}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{left + plot_w + 38}" y="{legend_y + 4}" class="legend">'
                     f"{escape(item.name)}</text>")
        if item.reference is not None:
            parts.append(f'<line x1="{left + plot_w + 12}" x2="{left + plot_w + 32}" '
                         f'y1="{legend_y + 16}" y2="{legend_y + 16}" stroke="{colour}" '
                         'stroke-dasharray="5 4"/>'
                         f'<text x="{left + plot_w + 38}" y="{legend_y + 20}" class="tick">'
                         f"{escape(item.reference_label)}"
                         f"{'' if shown else ' (off scale)'}</text>")
    key_y, key_x = top + plot_h + 36, left + 6.0
    for text, sample in key:
        radius = 5.5 if sample.current else 3.5
        parts.append(_marker(key_x, key_y - 4, radius, sample, KEY_COLOUR)
                     + f'<text x="{_num(key_x + radius + 4.5)}" y="{key_y}" class="tick">'
                     f"{escape(text)}</text>")
        key_x += radius + 4.5 + len(text) * 6.2 + 18  # 11 px text: about 6 px a character
    parts.append("</svg>")
    return "".join(parts)


def histogram(buckets: Sequence[tuple[float, float, float]], width: int = 180,
              height: int = 44, title: str = "") -> str:
    """Vertical bars for (low, high, count) buckets, the range written under them."""
    if not buckets:
        return ""
    peak = max(count for _, _, count in buckets) or 1.0
    bar_h = height - 14
    step = width / len(buckets)
    parts = [f'<svg class="hist" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>" if title else ""]
    for index, (low, high, count) in enumerate(buckets):
        bar = bar_h * count / peak
        parts.append(f'<rect x="{_num(index * step + 0.5)}" y="{_num(bar_h - bar)}" '
                     f'width="{_num(max(step - 1, 0.5))}" height="{_num(bar)}" fill="#4a7fb5">'
                     f"<title>{escape(f'{_label(low)} to {_label(high)}: {count:g}')}</title>"
                     "</rect>")
    parts.append(f'<line x1="0" x2="{width}" y1="{bar_h}" y2="{bar_h}" stroke="#999"/>'
                 f'<text x="0" y="{height - 2}" class="tick">{escape(_label(buckets[0][0]))}'
                 f'</text><text x="{width}" y="{height - 2}" text-anchor="end" class="tick">'
                 f"{escape(_label(buckets[-1][1]))}</text></svg>")
    return "".join(parts)


def bars(items: Sequence[tuple[str, float]], width: int = 250, row: int = 13,
         title: str = "") -> str:
    """Horizontal bars with their labels (a categorical column's most frequent values)."""
    if not items:
        return ""
    peak = max(count for _, count in items) or 1.0
    label_w, count_w = 122, 36
    bar_w = width - label_w - count_w
    height = row * len(items) + 2
    parts = [f'<svg class="bars" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>" if title else ""]
    for index, (label, count) in enumerate(items):
        top = index * row + 1
        text = label if len(label) <= 16 else label[:15] + "…"
        parts.append(f'<text x="{label_w - 4}" y="{top + row - 3}" text-anchor="end" '
                     f'class="tick">{escape(text)}<title>{escape(label)}</title></text>'
                     f'<rect x="{label_w}" y="{top + 1}" '
                     f'width="{_num(max(bar_w * count / peak, 1))}" height="{row - 3}" '
                     f'fill="#4a7fb5"><title>{escape(f"{label}: {count:g}")}</title></rect>'
                     f'<text x="{width}" y="{top + row - 3}" text-anchor="end" class="tick">'
                     f"{escape(_label(count))}</text>")
    parts.append("</svg>")
    return "".join(parts)
