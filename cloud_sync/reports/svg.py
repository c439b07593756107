"""Server-side SVG for the clinician pages: pure functions from report data to an SVG string (no JS).

* :func:`tir_bar_svg` - the AGP stacked time-in-ranges bar.
* :func:`modal_day_svg` - the 24-h modal day: 5-95 and 25-75 percentile bands and the median over the
  70-180 mg/dL target band.
* :func:`daily_profiles_svg` - one small strip per day (a row of days, wrapped by week).
* :func:`parameter_series_svg` - a twin parameter over time (e.g. insulin sensitivity) with its 95 % band.

Every chart is a standalone ``<svg xmlns=...>`` element with a ``<title>``, a ``viewBox`` (it scales with
the page and prints), classes naming each part (tests and CSS find them) and text escaped for XML.
Glucose is drawn on a linear axis clipped at ``y_max_mg_dl``; gaps (NaN bins, or readings further apart than
``gap_min``) break lines and bands instead of bridging them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from cloud_sync.reports.agp import DailyProfile, ModalDay, RangeBar

__all__ = ["tir_bar_svg", "modal_day_svg", "daily_profiles_svg", "parameter_series_svg", "RANGE_COLOURS",
           "SVG_NS"]

SVG_NS = "http://www.w3.org/2000/svg"
RANGE_COLOURS = {"very_low": "#a50026", "low": "#f46d43", "target": "#1a9850", "high": "#fdae61",
                 "very_high": "#d73027"}
BAND_OUTER, BAND_INNER, MEDIAN, TARGET_FILL = "#c6dbef", "#6baed6", "#08306b", "#e5f5e0"
FONT = "font-family='Helvetica, Arial, sans-serif'"


def _f(x: float) -> str:
    return f"{x:.1f}"


def _open(width: int, height: int, title: str, css_class: str) -> str:
    return (f"<svg xmlns='{SVG_NS}' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
            f"class='{css_class}' role='img' aria-label='{escape(title, {chr(39): '&apos;'})}'>"
            f"<title>{escape(title)}</title>")


# --- time in ranges bar --------------------------------------------------------------------------------------
def tir_bar_svg(bar: RangeBar, width: int = 260, height: int = 300) -> str:
    """Stacked bar (very low at the bottom) with each range's label and percentage at its right.

    Segments are drawn with their true height; labels are spread so that small ranges stay legible.
    """
    top, bottom, bar_x, bar_w = 10, height - 12, 10, 46
    usable = bottom - top
    parts = [_open(width, height, "Time in ranges", "tir-bar")]
    total = sum(p for _, _, p in bar.segments if not math.isnan(p))
    if total <= 0:
        parts.append(f"<text x='{bar_x}' y='{height / 2}' {FONT} font-size='13' class='no-data'>No data</text>")
        return "".join(parts) + "</svg>"
    y = bottom
    label_ys: list[float] = []
    for key, label, pct in bar.segments:
        h = usable * (pct if not math.isnan(pct) else 0.0) / total
        y -= h
        parts.append(f"<rect class='tir-segment tir-{key}' data-range='{key}' data-percent='{pct:.2f}' "
                     f"x='{bar_x}' y='{_f(y)}' width='{bar_w}' height='{_f(h)}' fill='{RANGE_COLOURS[key]}'/>")
        label_ys.append(y + h / 2)
    # labels at their segment's centre, then spread >= 16 px apart inside the chart (bottom-up, then top-down)
    spread = list(label_ys)
    spread[0] = min(spread[0], bottom - 4)
    for i in range(1, len(spread)):
        spread[i] = min(spread[i], spread[i - 1] - 16)
    spread[-1] = max(spread[-1], top + 8)
    for i in range(len(spread) - 2, -1, -1):
        spread[i] = max(spread[i], spread[i + 1] + 16)
    for (key, label, pct), ly in zip(bar.segments, spread):
        parts.append(f"<text class='tir-label' x='{bar_x + bar_w + 8}' y='{_f(ly + 4)}' {FONT} font-size='12'>"
                     f"<tspan font-weight='bold'>{pct:.0f}%</tspan> {escape(label)}</text>")
    return "".join(parts) + "</svg>"


# --- modal day -----------------------------------------------------------------------------------------------
def _runs(values: Sequence[float]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def modal_day_svg(modal: ModalDay, width: int = 900, height: int = 340, y_max_mg_dl: float = 350.0) -> str:
    """The AGP's 24-h chart: target band, percentile bands (5-95, 25-75) and the median line."""
    left, right, top, bottom = 46, 22, 10, 28
    pw, ph = width - left - right, height - top - bottom
    day = 1440.0

    def x(minute: float) -> float:
        return left + pw * minute / day

    def y(mg_dl: float) -> float:
        return top + ph * (1 - min(max(mg_dl, 0.0), y_max_mg_dl) / y_max_mg_dl)

    parts = [_open(width, height, "Ambulatory glucose profile (modal day)", "agp-modal-day")]
    parts.append(f"<rect class='agp-plot-area' x='{left}' y='{top}' width='{pw}' height='{ph}' fill='white' "
                 f"stroke='#999'/>")
    parts.append(f"<rect class='agp-target-band' x='{left}' y='{_f(y(180))}' width='{pw}' "
                 f"height='{_f(y(70) - y(180))}' fill='{TARGET_FILL}'/>")
    for level, colour in ((54, "#a50026"), (70, "#1a9850"), (180, "#1a9850"), (250, "#d73027")):
        parts.append(f"<line class='agp-threshold' x1='{left}' x2='{left + pw}' y1='{_f(y(level))}' "
                     f"y2='{_f(y(level))}' stroke='{colour}' stroke-width='1' stroke-dasharray='4 3'/>")
        parts.append(f"<text x='{left - 4}' y='{_f(y(level) + 4)}' text-anchor='end' {FONT} font-size='11'>"
                     f"{level}</text>")
    for hour in range(0, 25, 3):
        parts.append(f"<line x1='{_f(x(hour * 60))}' x2='{_f(x(hour * 60))}' y1='{top}' y2='{top + ph}' "
                     f"stroke='#ddd'/>")
        parts.append(f"<text x='{_f(x(hour * 60))}' y='{height - 10}' text-anchor='middle' {FONT} "
                     f"font-size='11'>{hour:02d}:00</text>")
    centres = modal.bin_centres_min
    s = modal.smoothed
    for lo, hi, colour, name in ((5, 95, BAND_OUTER, "agp-band-5-95"), (25, 75, BAND_INNER, "agp-band-25-75")):
        for run in _runs([a if not math.isnan(b) else math.nan for a, b in zip(s[lo], s[hi])]):
            upper = " ".join(f"{_f(x(centres[i]))},{_f(y(s[hi][i]))}" for i in run)
            lower = " ".join(f"{_f(x(centres[i]))},{_f(y(s[lo][i]))}" for i in reversed(run))
            parts.append(f"<polygon class='{name}' points='{upper} {lower}' fill='{colour}' stroke='none'/>")
    for run in _runs(s[50]):
        points = " ".join(f"{_f(x(centres[i]))},{_f(y(s[50][i]))}" for i in run)
        parts.append(f"<polyline class='agp-median' points='{points}' fill='none' stroke='{MEDIAN}' "
                     f"stroke-width='2.5'/>")
    if not any(modal.counts):
        parts.append(f"<text x='{left + pw / 2}' y='{top + ph / 2}' text-anchor='middle' {FONT} "
                     f"font-size='14' class='no-data'>No readings in this period</text>")
    parts.append(f"<text x='12' y='{top + ph / 2}' transform='rotate(-90 12 {top + ph / 2})' text-anchor='middle' "
                 f"{FONT} font-size='11'>mg/dL</text>")
    return "".join(parts) + "</svg>"


# --- daily profiles ------------------------------------------------------------------------------------------
def daily_profiles_svg(days: Sequence[DailyProfile], width: int = 900, per_row: int = 7, cell_h: int = 90,
                       y_max_mg_dl: float = 350.0, gap_min: float = 15.0) -> str:
    """Small multiples, one per day (7 a row): the day's trace over the target band, date and TIR."""
    rows = max(1, math.ceil(len(days) / per_row))
    cell_w = width / per_row
    height = rows * (cell_h + 18)
    parts = [_open(width, height, "Daily glucose profiles", "agp-daily-profiles")]
    for n, profile in enumerate(days):
        ox, oy = (n % per_row) * cell_w, (n // per_row) * (cell_h + 18) + 16
        w = cell_w - 4

        def x(minute: float, ox: float = ox, w: float = w) -> float:
            return ox + 2 + w * minute / 1440.0

        def y(mg_dl: float, oy: float = oy) -> float:
            return oy + cell_h * (1 - min(max(mg_dl, 0.0), y_max_mg_dl) / y_max_mg_dl)

        tir = "" if math.isnan(profile.time_in_range_70_180_pct) else f" TIR {profile.time_in_range_70_180_pct:.0f}%"
        parts.append(f"<g class='agp-day' data-day='{profile.day.isoformat()}'>")
        parts.append(f"<text x='{_f(ox + 4)}' y='{_f(oy - 4)}' {FONT} font-size='10'>"
                     f"{profile.day.strftime('%a %d %b')}{tir}</text>")
        parts.append(f"<rect x='{_f(ox + 2)}' y='{_f(oy)}' width='{_f(w)}' height='{cell_h}' fill='white' "
                     f"stroke='#bbb'/>")
        parts.append(f"<rect class='agp-target-band' x='{_f(ox + 2)}' y='{_f(y(180))}' width='{_f(w)}' "
                     f"height='{_f(y(70) - y(180))}' fill='{TARGET_FILL}'/>")
        segment: list[str] = []
        last_minute = None
        for minute, glucose in profile.points:
            if last_minute is not None and minute - last_minute > gap_min and segment:
                parts.append(_trace(segment))
                segment = []
            segment.append(f"{_f(x(minute))},{_f(y(glucose))}")
            last_minute = minute
        if segment:
            parts.append(_trace(segment))
        parts.append("</g>")
    return "".join(parts) + "</svg>"


def _trace(points: list[str]) -> str:
    return (f"<polyline class='agp-day-trace' points='{' '.join(points)}' fill='none' stroke='{MEDIAN}' "
            f"stroke-width='1'/>")


# --- twin parameters over time -------------------------------------------------------------------------------
def parameter_series_svg(points: Sequence[tuple[int, float, float | None, float | None]], label: str,
                         unit: str = "", width: int = 900, height: int = 220) -> str:
    """``points`` = (time_ms, value, lower, upper) sorted by time; the band is drawn where both bounds exist."""
    left, right, top, bottom = 60, 60, 10, 28
    pw, ph = width - left - right, height - top - bottom
    title = f"{label} over time" + (f" ({unit})" if unit else "")
    parts = [_open(width, height, title, "twin-parameter")]
    parts.append(f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='white' stroke='#999'/>")
    pts = [p for p in points if math.isfinite(p[1])]
    if not pts:
        parts.append(f"<text x='{left + pw / 2}' y='{top + ph / 2}' text-anchor='middle' {FONT} font-size='13' "
                     f"class='no-data'>No estimates</text>")
        return "".join(parts) + "</svg>"
    values = [p[1] for p in pts] + [b for p in pts for b in (p[2], p[3]) if b is not None and math.isfinite(b)]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad
    t0, t1 = pts[0][0], pts[-1][0]
    span = max(t1 - t0, 1)

    def x(t: int) -> float:
        return left + pw * (t - t0) / span

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f"<line x1='{left}' x2='{left + pw}' y1='{_f(y(v))}' y2='{_f(y(v))}' stroke='#eee'/>")
        parts.append(f"<text x='{left - 4}' y='{_f(y(v) + 4)}' text-anchor='end' {FONT} font-size='10'>"
                     f"{v:.3g}</text>")
    for t in (t0, t0 + span // 2, t1):
        stamp = datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
        parts.append(f"<text x='{_f(x(t))}' y='{height - 10}' text-anchor='middle' {FONT} font-size='10'>"
                     f"{stamp}</text>")
    banded = [p for p in pts if p[2] is not None and p[3] is not None and math.isfinite(p[2]) and math.isfinite(p[3])]
    if len(banded) >= 2:
        upper = " ".join(f"{_f(x(t))},{_f(y(u))}" for t, _, _, u in banded)
        lower = " ".join(f"{_f(x(t))},{_f(y(lw))}" for t, _, lw, _ in reversed(banded))
        parts.append(f"<polygon class='twin-band' points='{upper} {lower}' fill='{BAND_OUTER}' stroke='none'/>")
    line = " ".join(f"{_f(x(t))},{_f(y(v))}" for t, v, _, _ in pts)
    parts.append(f"<polyline class='twin-line' points='{line}' fill='none' stroke='{MEDIAN}' stroke-width='1.5'/>")
    if len(pts) == 1:
        parts.append(f"<circle class='twin-point' cx='{_f(x(t0))}' cy='{_f(y(pts[0][1]))}' r='3' fill='{MEDIAN}'/>")
    return "".join(parts) + "</svg>"
