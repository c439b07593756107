"""Pure helpers behind the clinician pages: patient-list flags, twin parameter series, the advice log.

Flags (computed over the report window, 14 days by default, ending ``now_ms``):

* ``low_tir`` - time in range 70-180 mg/dL below 70 % (consensus goal for most adults with T1D).
* ``hypo`` - time below 54 mg/dL over 1 %, OR a hypoglycaemia event in the last 7 days: at least
  ``HYPO_EVENT_MIN`` (15) consecutive minutes below 70 mg/dL (level 1 or 2; consensus event definition,
  Battelino 2019 / Danne 2017), counted over readings no more than ``MAX_GAP_MIN`` apart, OR a synced
  urgent low alert in the last 7 days.
* ``stale`` - nothing synced for more than 24 h (or never).

Twin parameters arrive as ``{name: value}`` snapshots. A name ending in ``_sd`` is the standard deviation
of the parameter whose name starts with the same stem (``insulin_sensitivity_factor_sd`` belongs to
``insulin_sensitivity_factor_mg_dl_per_u``); the band drawn is value +/- 1.96 SD (a 95 % normal interval).
Explicit ``<name>_lower_95`` / ``<name>_upper_95`` take precedence when present.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from models.glycemic_metrics import GlycemicSummary

__all__ = [
    "PatientFlags", "compute_flags", "hypo_events", "parameter_series", "AdviceRow", "advice_log",
    "LOW_TIR_PCT", "TBR54_PCT", "STALE_AFTER_MS", "HYPO_EVENT_MIN", "MAX_GAP_MIN", "PARAMETER_UNITS",
]

LOW_TIR_PCT = 70.0
TBR54_PCT = 1.0
STALE_AFTER_MS = 24 * 3_600_000
HYPO_EVENT_MIN = 15.0
HYPO_THRESHOLD_MG_DL = 70.0
MAX_GAP_MIN = 15.0
RECENT_HYPO_MS = 7 * 86_400_000
Z95 = 1.96

PARAMETER_UNITS = {
    "insulin_sensitivity_factor_mg_dl_per_u": ("Insulin sensitivity factor", "mg/dL per U"),
    "sensitivity_ratio": ("Sensitivity ratio", "x profile"),
    "disturbance_mg_dl_per_min": ("Unexplained glucose disturbance", "mg/dL/min"),
    "insulin_on_board_u": ("Insulin on board", "U"),
    "carbs_on_board_g": ("Carbs on board", "g"),
    "isf_mg_dl_per_u": ("Insulin sensitivity factor", "mg/dL per U"),
    "cr_g_per_u": ("Carb ratio", "g per U"),
}


@dataclass(frozen=True)
class PatientFlags:
    low_tir: bool
    hypo: bool
    stale: bool
    reasons: tuple[str, ...]
    kinds: tuple[str, ...] = ()  # parallel to ``reasons``: "low_tir", "hypo" or "stale"

    @property
    def labelled(self) -> tuple[tuple[str, str], ...]:
        """(kind, reason) pairs, for display."""
        return tuple(zip(self.kinds, self.reasons))

    @property
    def any(self) -> bool:
        return self.low_tir or self.hypo or self.stale


def hypo_events(readings: Sequence[tuple[int, float]], threshold_mg_dl: float = HYPO_THRESHOLD_MG_DL,
                min_duration_min: float = HYPO_EVENT_MIN, max_gap_min: float = MAX_GAP_MIN) -> list[tuple[int, int]]:
    """(start_ms, end_ms) of runs below ``threshold`` lasting at least ``min_duration_min``.

    A run's duration is from its first low reading to the first reading back at/above the threshold (or its
    last low reading plus one gap-free interval if the trace ends or a gap interrupts it): a single low
    reading between two in-range readings 5 min apart is a 5 min event, not an event.
    """
    events: list[tuple[int, int]] = []
    run_start: int | None = None
    last_t: int | None = None
    for t, g in sorted(readings):
        if last_t is not None and run_start is not None and (t - last_t) > max_gap_min * 60_000:
            # a gap closes the run at the last low reading
            if (last_t - run_start) >= min_duration_min * 60_000:
                events.append((run_start, last_t))
            run_start = None
        if g < threshold_mg_dl:
            if run_start is None:
                run_start = t
        elif run_start is not None:
            if (t - run_start) >= min_duration_min * 60_000:
                events.append((run_start, t))
            run_start = None
        last_t = t
    if run_start is not None and last_t is not None and (last_t - run_start) >= min_duration_min * 60_000:
        events.append((run_start, last_t))
    return events


def compute_flags(summary: GlycemicSummary, readings: Sequence[tuple[int, float]], last_sync_ms: int | None,
                  now_ms: int, alerts: Iterable[Mapping[str, object]] = ()) -> PatientFlags:
    reasons: list[str] = []
    kinds: list[str] = []
    tir = summary.time_in_range_70_180_pct
    low_tir = not math.isnan(tir) and tir < LOW_TIR_PCT
    if low_tir:
        reasons.append(f"time in range {tir:.0f}% < {LOW_TIR_PCT:.0f}%")
        kinds.append("low_tir")
    hypo = False
    tbr54 = summary.time_below_54_pct
    if not math.isnan(tbr54) and tbr54 > TBR54_PCT:
        hypo = True
        reasons.append(f"time < 54 mg/dL {tbr54:.1f}% > {TBR54_PCT:.0f}%")
        kinds.append("hypo")
    recent = [r for r in readings if r[0] >= now_ms - RECENT_HYPO_MS]
    events = hypo_events(recent)
    if events:
        hypo = True
        reasons.append(f"{len(events)} hypoglycaemia event(s) in the last 7 days")
        kinds.append("hypo")
    urgent = [a for a in alerts if int(a.get("time_ms", 0)) >= now_ms - RECENT_HYPO_MS  # type: ignore[call-overload]
              and a.get("severity") == "urgent" and "low" in str(a.get("kind", ""))]
    if urgent:
        hypo = True
        reasons.append(f"{len(urgent)} urgent low alert(s) in the last 7 days")
        kinds.append("hypo")
    stale = last_sync_ms is None or now_ms - last_sync_ms > STALE_AFTER_MS
    if stale:
        reasons.append("never synced" if last_sync_ms is None else
                       f"last sync {(now_ms - last_sync_ms) / 3_600_000:.0f} h ago")
        kinds.append("stale")
    return PatientFlags(low_tir, hypo, stale, tuple(reasons), tuple(kinds))


def parameter_series(snapshots: Iterable[tuple[int, Mapping[str, float]]]
                     ) -> dict[str, list[tuple[int, float, float | None, float | None]]]:
    """Per parameter: (time_ms, value, lower_95, upper_95) sorted by time; SD/bound names are folded in."""
    out: dict[str, list[tuple[int, float, float | None, float | None]]] = {}
    for time_ms, params in sorted(snapshots, key=lambda s: s[0]):
        names = [n for n in params if not n.endswith(("_sd", "_lower_95", "_upper_95"))]
        sds = {n[:-3]: params[n] for n in params if n.endswith("_sd")}
        for name in names:
            value = float(params[name])
            lo = params.get(f"{name}_lower_95")
            hi = params.get(f"{name}_upper_95")
            if lo is None or hi is None:
                sd = params.get(f"{name}_sd")
                if sd is None:
                    sd = next((v for stem, v in sds.items() if name.startswith(stem + "_")), None)
                lo, hi = (value - Z95 * sd, value + Z95 * sd) if sd is not None else (None, None)
            out.setdefault(name, []).append((time_ms, value, lo, hi))
    return out


@dataclass(frozen=True)
class AdviceRow:
    time_ms: int
    recommendation_id: str
    insulin_u: float
    followed: bool | None
    reason: str
    delivered_u: float | None  # bolus insulin delivered within 30 min after the advice (None: none recorded)


def advice_log(recommendations: Iterable[Mapping[str, object]], doses: Sequence[tuple[int, float]],
               window_ms: int = 30 * 60_000) -> list[AdviceRow]:
    """Recommendations, newest first, each with what the hub reported about following it and the bolus
    insulin actually recorded in the ``window_ms`` after it (so a clinician sees advice vs action).

    When the same recommendation id arrives twice (shown, then decided), the last report wins.
    """
    latest: dict[str, Mapping[str, object]] = {}
    for rec in recommendations:
        latest[str(rec["recommendation_id"])] = rec
    rows = []
    for rid, rec in latest.items():
        t = int(rec["time_ms"])  # type: ignore[call-overload]
        delivered = [u for dt, u in doses if t <= dt < t + window_ms]
        followed = rec.get("followed")
        rows.append(AdviceRow(t, rid, float(rec.get("insulin_u", 0.0)),  # type: ignore[arg-type]
                              followed if isinstance(followed, bool) else None, str(rec.get("reason", "")),
                              round(sum(delivered), 3) if delivered else None))
    rows.sort(key=lambda r: r.time_ms, reverse=True)
    return rows
