"""Line charts laid out on the server, drawn by a template as inline SVG.

Why on the server: the pages run under a strict Content-Security-Policy (no inline script, nothing
from another origin), so a chart library would have to be served and kept up to date by us; a
metric history needs no more than a polyline with axes. The geometry is computed here, in plain
numbers and strings, and ``_chart.html`` draws it with autoescaping like any other value.

Long histories are downsampled before drawing: the points are cut into buckets in order and each
bucket keeps its lowest and highest value (in the order they were logged), so spikes and the
global minimum and maximum survive while a 100,000-step history still draws as ~1,000 points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]  # (x, y): x is the step, y the value

MAX_POINTS = 1000
WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 22, 42  # margins around the plot box, in SVG user units


def number(value: float, digits: int = 6) -> str:
    """A metric value for people: short, no float noise (0.30000000000000004 → 0.3)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


def downsample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most ``limit`` points (limit ≥ 4): the first, the last, and per bucket of the rest its
    lowest and highest point, in their original order."""
    if len(points) <= limit:
        return list(points)
    inner = points[1:-1]
    buckets = (limit - 2) // 2
    size = len(inner) / buckets
    out = [points[0]]
    for b in range(buckets):
        chunk = inner[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        low = min(range(len(chunk)), key=lambda i: chunk[i][1])
        high = max(range(len(chunk)), key=lambda i: chunk[i][1])
        out.extend(chunk[i] for i in sorted({low, high}))
    out.append(points[-1])
    return out


def nice_step(span: float, count: int) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 × 10ⁿ) giving about ``count`` ticks over ``span``."""
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return min((m * magnitude for m in (1, 2, 2.5, 5, 10)), key=lambda step: abs(span / step - count + 1))


def ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round values within [low, high], about ``count`` of them."""
    if high <= low:
        return [low]
    step = nice_step(high - low, count)
    if integer:
        step = float(max(1, round(step)))
    i = math.ceil(low / step - 1e-9)
    values = []
    while i * step <= high + step * 1e-9:
        values.append(i * step)
        i += 1
    return values


def _tick_label(value: float, step: float) -> str:
    """Rounded to the tick spacing, so labels read 0.1, 0.2 rather than 0.30000000000000004."""
    decimals = max(0, -math.floor(math.log10(step))) + 1 if step > 0 else 6
    rounded = round(value, decimals)
    return number(rounded + 0.0, 8)  # + 0.0 turns -0.0 into 0.0


@dataclass(frozen=True)
class Tick:
    pos: float  # along the axis, in SVG units
    label: str


@dataclass(frozen=True)
class Marker:
    """The lowest or highest point, with its label placed inside the drawing."""

    x: float
    y: float
    label: str
    label_x: float
    label_y: float
    anchor: str  # SVG text-anchor


@dataclass(frozen=True)
class Chart:
    title: str  # the accessible name: what a screen reader says instead of the drawing
    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    path: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_label: str
    low: Marker
    high: Marker
    total: int  # points given
    drawn: int  # points on the line after downsampling

    @property
    def middle(self) -> float:
        return (self.left + self.right) / 2


def _scale(lo: float, hi: float, start: float, end: float) -> tuple[float, float]:
    """(factor, offset) mapping [lo, hi] onto [start, end]."""
    factor = (end - start) / (hi - lo)
    return factor, start - lo * factor


def _marker(x: float, y: float, label: str, chart_box: tuple[int, int, int, int], above: bool) -> Marker:
    left, top, right, bottom = chart_box
    anchor = "end" if x > (left + right) / 2 else "start"
    label_x = x - 6 if anchor == "end" else x + 6
    label_y = y - 7 if above else y + 15
    label_y = min(max(label_y, top + 11), bottom - 4)
    return Marker(round(x, 1), round(y, 1), label, round(label_x, 1), round(label_y, 1), anchor)


def line_chart(name: str, points: Sequence[Point], *, x_label: str = "step") -> Chart | None:
    """A chart of ``points`` (finite values, in logging order), or None when fewer than two.

    When every point has the same x (a metric logged repeatedly without steps), the points are
    spread by their order instead, and the axis says so.
    """
    if len(points) < 2:
        return None
    if all(p[0] == points[0][0] for p in points):
        points = [(float(i), y) for i, (_, y) in enumerate(points)]
        x_label = "logged value (in order)"
    low_point = min(points, key=lambda p: p[1])
    high_point = max(points, key=lambda p: p[1])
    drawn = downsample(points)

    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = low_point[1], high_point[1]
    pad = (y_hi - y_lo) * 0.06 if y_hi > y_lo else (abs(y_lo) * 0.1 or 1.0)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    fx, ox = _scale(x_lo, x_hi, left, right)
    fy, oy = _scale(y_lo, y_hi, bottom, top)  # SVG's y grows downwards

    def px(p: Point) -> tuple[float, float]:
        return p[0] * fx + ox, p[1] * fy + oy

    path = "M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in map(px, drawn))
    xs = ticks(x_lo, x_hi, 6, integer=True)
    ys = ticks(y_lo, y_hi, 5)
    y_step = ys[1] - ys[0] if len(ys) > 1 else 1.0
    x_ticks = [Tick(round(v * fx + ox, 1), number(v, 8)) for v in xs]
    y_ticks = [Tick(round(v * fy + oy, 1), _tick_label(v, y_step)) for v in ys]

    box = (left, top, right, bottom)
    step_word = "step" if x_label == "step" else "#"
    low_text = f"min {number(low_point[1], 4)} ({step_word} {number(low_point[0], 8)})"
    high_text = f"max {number(high_point[1], 4)} ({step_word} {number(high_point[0], 8)})"
    low = _marker(*px(low_point), low_text, box, above=False)
    high = _marker(*px(high_point), high_text, box, above=True)
    span = f"{number(points[0][0], 8)} to {number(points[-1][0], 8)}"
    title = f"{name}: {len(points):,} points, {x_label} {span}; {low_text}; {high_text}"
    return Chart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        path=path,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        x_label=x_label,
        low=low,
        high=high,
        total=len(points),
        drawn=len(drawn),
    )
