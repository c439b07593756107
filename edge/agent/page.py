"""The hub's local page: server-rendered HTML with inline SVG, readable on a phone, no JavaScript build.

Pure functions from plain data to text, so the page is testable without a server.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

TREND_ARROWS = ((-3.0, "⇊"), (-2.0, "↓"), (-1.0, "↘"), (1.0, "→"), (2.0, "↗"), (3.0, "↑"))


def trend_arrow(trend_mg_dl_min: float | None) -> str:
    if trend_mg_dl_min is None or not math.isfinite(trend_mg_dl_min):
        return ""
    for upper, arrow in TREND_ARROWS:
        if trend_mg_dl_min < upper:
            return arrow
    return "⇈"


@dataclass(frozen=True)
class PageData:
    now_ms: int
    glucose_text: str | None
    glucose_mg_dl: float | None
    trend_mg_dl_min: float | None
    reading_age_min: float | None
    iob_u: float | None
    cob_g: float | None
    isf_text: str | None
    history: Sequence[tuple[int, float]]  # (epoch ms, mg/dL), last 24 h
    forecast_minutes: Sequence[float]
    forecast_mean: Sequence[float]
    forecast_lower: Sequence[float]
    forecast_upper: Sequence[float]
    advice: dict | None
    alerts: Sequence[dict]
    hub_ok: bool
    hub_status_text: str


def _scale(value: float, low: float, high: float, size: float) -> float:
    return size * (value - low) / (high - low) if high > low else 0.0


def glucose_chart_svg(data: PageData, width: int = 480, height: int = 300) -> str:
    """Last 24 h and the forecast (mean and 95% band) over the 70-180 mg/dL target range."""
    g_low, g_high = 40.0, 400.0
    t_end = data.now_ms + 2 * 3_600_000
    t_start = data.now_ms - 24 * 3_600_000

    def x(t_ms: float) -> float:
        return _scale(t_ms, t_start, t_end, width)

    def y(g: float) -> float:
        return height - _scale(min(max(g, g_low), g_high), g_low, g_high, height)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Glucose, last 24 hours and forecast" class="chart">',
             f'<rect x="0" y="{y(180):.1f}" width="{width}" height="{y(70) - y(180):.1f}" class="target"/>']
    for level in (54, 70, 180, 250):
        parts.append(f'<line x1="0" x2="{width}" y1="{y(level):.1f}" y2="{y(level):.1f}" class="grid"/>'
                     f'<text x="4" y="{y(level) - 3:.1f}" class="label">{level}</text>')
    parts.append(f'<line x1="{x(data.now_ms):.1f}" x2="{x(data.now_ms):.1f}" y1="0" y2="{height}" class="now"/>')
    for t_ms, glucose in data.history:
        if t_start <= t_ms <= data.now_ms:
            cls = "low" if glucose < 70 else "high" if glucose > 180 else "in"
            parts.append(f'<circle cx="{x(t_ms):.1f}" cy="{y(glucose):.1f}" r="2.5" class="pt {cls}"/>')
    rows = [(m, g, lo, hi) for m, g, lo, hi in zip(data.forecast_minutes, data.forecast_mean, data.forecast_lower,
                                                   data.forecast_upper) if all(map(math.isfinite, (m, g, lo, hi)))]
    if len(rows) >= 2:  # a horizon the forecaster cannot say (NaN) is left out, never drawn as garbage
        points_upper = [(x(data.now_ms + m * 60_000), y(hi)) for m, _, _, hi in rows]
        points_lower = [(x(data.now_ms + m * 60_000), y(lo)) for m, _, lo, _ in rows]
        band = points_upper + points_lower[::-1]
        parts.append('<polygon class="band" points="' + " ".join(f"{px:.1f},{py:.1f}" for px, py in band) + '"/>')
        mean = [(x(data.now_ms + m * 60_000), y(g)) for m, g, _, _ in rows]
        parts.append('<polyline class="forecast" points="' + " ".join(f"{px:.1f},{py:.1f}" for px, py in mean) + '"/>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:0;padding:12px;max-width:760px;background:#fafafa;color:#222}
.now-box{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap}
.glucose{font-size:56px;font-weight:700}.arrow{font-size:40px}.age{color:#666}
.cards{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0}.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px 12px}
.advice{background:#eef6ff;border:1px solid #9cc3f0;border-radius:8px;padding:10px;margin:8px 0}
.alert{border-radius:8px;padding:8px;margin:4px 0}.urgent{background:#fdd;border:1px solid #d33}
.warning{background:#fff3cd;border:1px solid #e0b000}.info{background:#eef;border:1px solid #99c}
.hub-down{background:#d33;color:#fff;padding:10px;border-radius:8px;font-weight:700}
svg.chart{width:100%;height:auto;background:#fff;border:1px solid #ddd;border-radius:8px}
.target{fill:#e6f4ea}.grid{stroke:#ccc;stroke-width:.5}.label{font-size:14px;fill:#666}.now{stroke:#999;stroke-dasharray:3 3}
.pt.in{fill:#2a7}.pt.low{fill:#d33}.pt.high{fill:#e90}.band{fill:#8ab4f8;opacity:.35}.forecast{fill:none;stroke:#1a73e8;stroke-width:2}
small{color:#666}
"""


def render_page(data: PageData) -> str:
    esc = html.escape
    arrow = trend_arrow(data.trend_mg_dl_min)
    glucose = esc(data.glucose_text) if data.glucose_text else "—"
    age = f"{data.reading_age_min:.0f} min ago" if data.reading_age_min is not None else "no reading yet"
    when = datetime.fromtimestamp(data.now_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<meta http-equiv='refresh' content='60'><title>GlucoTwin hub</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    if not data.hub_ok:
        rows.append(f"<div class='hub-down' id='hub-status'>{esc(data.hub_status_text)}</div>")
    rows.append(f"<div class='now-box'><span class='glucose' id='glucose'>{glucose}</span>"
                f"<span class='arrow' id='trend'>{arrow}</span><span class='age'>{esc(age)}</span></div>")
    iob = f"{data.iob_u:.2f} U" if data.iob_u is not None else "—"
    cob = f"{data.cob_g:.0f} g" if data.cob_g is not None else "—"
    rows.append(f"<div class='cards'><div class='card' id='iob'>Insulin on board<br><b>{iob}</b></div>"
                f"<div class='card' id='cob'>Carbs on board<br><b>{cob}</b></div>"
                f"<div class='card'>Sensitivity (twin)<br><b>{esc(data.isf_text or '—')}</b></div></div>")
    for alert in data.alerts:
        rows.append(f"<div class='alert {esc(alert.get('severity', 'info'))}'>{esc(alert.get('message', ''))}</div>")
    if data.advice:
        reasons = "".join(f"<li>{esc(str(r))}</li>" for r in data.advice.get("reasons", []))
        limits = "".join(f"<li>{esc(str(r))}</li>" for r in data.advice.get("limits_applied", []))
        timing = f"<p>{esc(data.advice['timing'])}</p>" if data.advice.get("timing") else ""
        rows.append(f"<div class='advice' id='advice'><b>{esc(data.advice.get('summary', ''))}</b>{timing}"
                    f"<ul>{reasons}{limits}</ul><small>Advice only: confirm on the hub or with "
                    f"<code>glucotwin confirm {esc(str(data.advice.get('id', '')))}</code>.</small></div>")
    rows.append(glucose_chart_svg(data))
    rows.append(f"<p><small>Last 24 h and 2-h forecast with its 95% band. Updated {esc(when)}. "
                f"{esc(data.hub_status_text)}</small></p></body></html>")
    return "".join(rows)
