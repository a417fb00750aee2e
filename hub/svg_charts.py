"""Inline SVG bar charts for the HTML report: plain strings, no JavaScript, every text HTML-escaped."""

from __future__ import annotations

import math
from html import escape

from hub.terminal import printable


def esc(value: object) -> str:
    """HTML-escaped text of a value (quotes included), control and bidi characters written as their escapes (a
    ``U+202E`` in a service name would reverse the numbers printed after it); None is empty."""
    return escape("" if value is None else printable(value), quote=True)


_e = esc


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def axis_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round axis ticks covering ``[lo, hi]`` (which includes 0)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start, end = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return [start + i * step for i in range(round((end - start) / step) + 1)]


def tick_label(v: float, step: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:,.{1 if step < 1e6 else 0}f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:,.{1 if step < 1e3 else 0}f}k"
    return f"{v:,.{0 if step >= 1 else 2}f}"


def bars_h(items: list[tuple[str, float]], axis: str, title: str, rest: bool = False) -> str:
    """Horizontal bar chart: one bar per (label, value), value axis at the bottom; with ``rest`` the last bar
    (the sum of the remaining groups) is grey."""
    left, right, bar, gap, top = 250, 90, 18, 6, 10
    width = 960
    plot = width - left - right
    height = top + len(items) * (bar + gap) + 48
    values = [v for _, v in items]
    ticks = axis_ticks(min(0.0, *values), max(0.0, *values))
    lo, hi = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">']
    base_y = top + len(items) * (bar + gap)
    for t in ticks:
        parts.append(f'<line class="grid" x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{base_y}"/>'
                     f'<text class="tick mid" x="{x(t):.1f}" y="{base_y + 16}">{_e(tick_label(t, step))}</text>')
    for i, (label, v) in enumerate(items):
        y = top + i * (bar + gap)
        x0, x1 = sorted((x(0), x(v)))
        cls = "bar neg" if v < 0 else "bar rest" if rest and i == len(items) - 1 else "bar"
        parts.append(f'<text class="label" x="{left - 8}" y="{y + bar - 5}" text-anchor="end"><title>{_e(label)}</title>'
                     f'{_e(_short(label, 38))}</text>'
                     f'<rect class="{cls}" x="{x0:.1f}" y="{y}" '
                     f'width="{max(x1 - x0, 1):.1f}" height="{bar}">'
                     f'<title>{_e(label)}: {_e(f"{v:,.2f}")}</title></rect>'
                     f'<text class="value{" end" if v < 0 else ""}" x="{(x0 - 6 if v < 0 else x1 + 6):.1f}" y="{y + bar - 5}">'
                     f'{_e(f"{v:,.2f}")}</text>')
    parts.append(f'<line class="axis" x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{base_y}"/>'
                 f'<text class="axis-title mid" x="{left + plot / 2:.1f}" y="{height - 6}">{_e(axis)}</text></svg>')
    return "".join(parts)


def bars_v(months: list[str], series: list[tuple[str, str, list[float]]], axis: str, title: str) -> str:
    """Grouped vertical bars: one group per month, one bar per (name, css class, values) series."""
    width, height, left, right, top, bottom = 960, 300, 80, 20, 30, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, _, vs in series for v in vs]
    ticks = axis_ticks(min(0.0, *values), max(0.0, *values))
    lo, hi = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0

    def y(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    slot = plot_w / max(len(months), 1)
    bar = min(slot * 0.8 / len(series), 48)
    every = max(1, math.ceil(len(months) * 56 / plot_w))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">']
    for t in ticks:
        parts.append(f'<line class="grid" x1="{left}" y1="{y(t):.1f}" x2="{width - right}" y2="{y(t):.1f}"/>'
                     f'<text class="tick" x="{left - 8}" y="{y(t) + 4:.1f}" text-anchor="end">{_e(tick_label(t, step))}</text>')
    for m, month in enumerate(months):
        cx = left + slot * (m + 0.5)
        for s, (name, cls, vs) in enumerate(series):
            bx = cx - bar * len(series) / 2 + s * bar
            y0, y1 = sorted((y(0), y(vs[m])))
            parts.append(f'<rect class="{cls}" x="{bx:.1f}" y="{y0:.1f}" width="{bar - 2:.1f}" height="{max(y1 - y0, 1):.1f}">'
                         f'<title>{_e(month)} {_e(name)}: {_e(f"{vs[m]:,.2f}")}</title></rect>')
        if m % every == 0:
            parts.append(f'<text class="tick" x="{cx:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{_e(month)}</text>')
    legend = "".join(f'<rect class="{cls}" x="{left + i * 150}" y="6" width="12" height="12"/>'
                     f'<text class="legend" x="{left + i * 150 + 18}" y="16">{_e(name)}</text>'
                     for i, (name, cls, _) in enumerate(series))
    parts.append(f'{legend}<line class="axis" x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}"/>'
                 f'<text class="axis-title mid" x="{left + plot_w / 2:.1f}" y="{height - 8}">Month (x_Month)</text>'
                 f'<text class="axis-title mid" transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)">'
                 f'{_e(axis)}</text></svg>')
    return "".join(parts)


def band(days: list[str], actual: list[float | None], expected: list[float], lower: list[float], upper: list[float],
         shade: tuple[str, str], axis: str, title: str) -> str:
    """A daily line of ``actual`` over the ``expected`` line and its band (lower to upper), the days ``shade``
    (first, last) shaded: an anomaly's 30 days."""
    width, height, left, right, top, bottom = 960, 300, 80, 20, 30, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for v in (*actual, *expected, *lower, *upper) if v is not None]
    ticks = axis_ticks(min(0.0, *values), max(0.0, *values))
    lo, hi = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    n = max(len(days) - 1, 1)

    def x(i: float) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">']
    for t in ticks:
        parts.append(f'<line class="grid" x1="{left}" y1="{y(t):.1f}" x2="{width - right}" y2="{y(t):.1f}"/>'
                     f'<text class="tick" x="{left - 8}" y="{y(t) + 4:.1f}" text-anchor="end">{_e(tick_label(t, step))}</text>')
    if shade[0] in days and shade[1] in days:
        a, b = days.index(shade[0]), days.index(shade[1])
        parts.append(f'<rect class="abnormal" x="{x(a - 0.5):.1f}" y="{top}" width="{x(b + 0.5) - x(a - 0.5):.1f}" '
                     f'height="{plot_h}"><title>abnormal: {_e(shade[0])} to {_e(shade[1])}</title></rect>')
    ring = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(upper)] + [f"{x(i):.1f},{y(v):.1f}"
                                                                       for i, v in reversed(list(enumerate(lower)))]
    parts.append(f'<polygon class="band" points="{" ".join(ring)}"/>')
    parts.append(f'<polyline class="expected" points="{" ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(expected))}"/>')
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(actual) if v is not None)
    parts.append(f'<polyline class="actual" points="{points}"/>')
    for i, v in enumerate(actual):
        if v is not None:
            parts.append(f'<circle class="actual" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5"><title>{_e(days[i])}: '
                         f'{_e(f"{v:,.2f}")} (expected {_e(f"{expected[i]:,.2f}")})</title></circle>')
    every = max(1, math.ceil(len(days) * 70 / plot_w))
    for i, d in enumerate(days):
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{_e(d[5:])}</text>')
    parts.append(f'<text class="axis-title mid" transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)">{_e(axis)}</text>'
                 "</svg>")
    return "".join(parts)
