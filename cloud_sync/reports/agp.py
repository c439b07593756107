"""Ambulatory Glucose Profile (AGP) data, International Consensus layout (Battelino et al. 2019,
Diabetes Care 42:1593), computed from plain readings. Pure: no I/O, no HTTP, no rendering.

    report = build_agp(readings, period_start_ms, period_end_ms, tz=ZoneInfo("Europe/Paris"))
    report.summary.time_in_range_70_180_pct, report.modal_day.p50_mg_dl, report.days[0].points

Readings are ``(time_ms, glucose_mg_dl)`` pairs (epoch milliseconds, mg/dL), in any order.

Statistics block. The readings are put on the sensor's regular grid (``sample_interval_min``, 5 min by
default) covering ``[period_start_ms, period_end_ms)``: slot ``k`` holds the reading with
``period_start_ms + k*interval <= t < period_start_ms + (k+1)*interval`` (the first one if a slot gets two);
an empty slot is a missing reading (NaN). The consensus metrics of that grid come from
:mod:`models.glycemic_metrics` (mean, CV, GMI, times in ranges of valid readings, sensor active % = filled
slots / slots, days of wear = period length). Each metric is compared with its consensus goal.

Modal day. Every valid reading is placed at its LOCAL time of day (``tz``, so DST is honoured) in one of
``1440 / bin_min`` bins (15 min: 96 bins). Per bin, the 5th, 25th, 50th, 75th and 95th percentiles are
taken with numpy's default linear interpolation (Hyndman-Fan type 7); a bin with fewer than ``min_per_bin``
readings is a gap (NaN). Each percentile curve is then smoothed circularly (midnight joins midnight) with
the weights 1-2-1 over the neighbouring bins, renormalised over the neighbours that are not gaps; a gap stays
a gap. The smoothing makes the bands readable as AGP's do, without moving a level by more than
half the difference to its neighbours.

Daily profiles. One strip per local calendar day touched by the period, with that day's readings (minute of
day, mg/dL) and its own time in range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo

import numpy as np

from models.glycemic_metrics import GlycemicSummary, summarize_glucose

__all__ = [
    "AgpInputError", "AgpReport", "ModalDay", "DailyProfile", "RangeBar", "Goal", "build_agp", "readings_grid",
    "modal_day", "daily_profiles", "range_bar", "goals", "PERCENTILES", "RANGE_KEYS",
]

PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
MS_PER_MIN = 60_000
MINUTES_PER_DAY = 1440
# The five stacked ranges of the AGP bar, bottom to top: (key, label, summary field).
RANGE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("very_low", "Very low (<54 mg/dL)", "time_below_54_pct"),
    ("low", "Low (54-69 mg/dL)", "time_54_69_pct"),
    ("target", "Target (70-180 mg/dL)", "time_in_range_70_180_pct"),
    ("high", "High (181-250 mg/dL)", "time_181_250_pct"),
    ("very_high", "Very high (>250 mg/dL)", "time_above_250_pct"),
)


class AgpInputError(ValueError):
    """Readings or a period that cannot make an AGP (bad period, non-finite or non-positive glucose)."""


@dataclass(frozen=True)
class Goal:
    """One consensus target for adults with type 1 diabetes: ``value`` ``comparison`` ``target``."""

    key: str
    label: str
    value: float
    comparison: str  # ">", ">=", "<", "<="
    target: float
    unit: str

    @property
    def met(self) -> bool | None:
        if math.isnan(self.value):
            return None
        return {">": self.value > self.target, ">=": self.value >= self.target,
                "<": self.value < self.target, "<=": self.value <= self.target}[self.comparison]


@dataclass(frozen=True)
class RangeBar:
    """The stacked time-in-ranges bar: percent of valid readings per range (sums to 100 with data)."""

    segments: tuple[tuple[str, str, float], ...]  # (key, label, percent), bottom (very low) to top

    def percent(self, key: str) -> float:
        return next(p for k, _, p in self.segments if k == key)


@dataclass(frozen=True)
class ModalDay:
    """Percentile curves over the 24-h day; index ``i`` covers minutes ``[i*bin_min, (i+1)*bin_min)``."""

    bin_min: int
    counts: tuple[int, ...]
    raw: dict[int, tuple[float, ...]]  # percentile -> per-bin values before smoothing
    smoothed: dict[int, tuple[float, ...]]  # percentile -> per-bin values after 1-2-1 smoothing

    @property
    def bin_centres_min(self) -> tuple[float, ...]:
        return tuple((i + 0.5) * self.bin_min for i in range(len(self.counts)))

    @property
    def p50_mg_dl(self) -> tuple[float, ...]:
        return self.smoothed[50]


@dataclass(frozen=True)
class DailyProfile:
    day: date
    points: tuple[tuple[float, float], ...]  # (minute of local day, glucose mg/dL)
    time_in_range_70_180_pct: float
    mean_glucose_mg_dl: float


@dataclass(frozen=True)
class AgpReport:
    period_start_ms: int
    period_end_ms: int
    tz_name: str
    sample_interval_min: float
    summary: GlycemicSummary
    goals: tuple[Goal, ...]
    range_bar: RangeBar
    modal_day: ModalDay
    days: tuple[DailyProfile, ...] = field(default_factory=tuple)

    @property
    def has_data(self) -> bool:
        return self.summary.readings_count > 0


# --- inputs --------------------------------------------------------------------------------------------------
def _clean(readings: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    out = []
    for time_ms, glucose in readings:
        g = float(glucose)
        if not math.isfinite(g) or g <= 0:
            raise AgpInputError(f"glucose must be a positive finite mg/dL value, got {glucose!r} at {time_ms}")
        out.append((int(time_ms), g))
    out.sort(key=lambda r: r[0])
    return out


def _check_period(period_start_ms: int, period_end_ms: int, sample_interval_min: float) -> None:
    if not (math.isfinite(sample_interval_min) and sample_interval_min > 0):
        raise AgpInputError(f"sample_interval_min must be positive, got {sample_interval_min!r}")
    if period_end_ms - period_start_ms < sample_interval_min * MS_PER_MIN:
        raise AgpInputError("the period must be at least one sample interval long (end after start)")


def readings_grid(readings: Sequence[tuple[int, float]], period_start_ms: int, period_end_ms: int,
                  sample_interval_min: float = 5.0) -> np.ndarray:
    """Readings on the regular grid of ``[start, end)``: one slot per interval, NaN where none arrived.

    >>> readings_grid([(0, 100), (60_000, 999), (600_000, 150)], 0, 900_000)
    array([100.,  nan, 150.])
    """
    _check_period(period_start_ms, period_end_ms, sample_interval_min)
    interval_ms = sample_interval_min * MS_PER_MIN
    n = int((period_end_ms - period_start_ms) // interval_ms)
    grid = np.full(n, np.nan)
    for time_ms, glucose in readings:
        if period_start_ms <= time_ms < period_end_ms:
            k = int((time_ms - period_start_ms) // interval_ms)
            if k < n and math.isnan(grid[k]):
                grid[k] = glucose
    return grid


# --- pieces --------------------------------------------------------------------------------------------------
def goals(summary: GlycemicSummary) -> tuple[Goal, ...]:
    """Consensus goals for most adults with type 1 diabetes (Battelino 2019, table 1 and text)."""
    s = summary
    return (
        Goal("days", "Days of CGM wear", s.days_of_wear_d, ">=", 14.0, "d"),
        Goal("active", "Time CGM active", s.sensor_active_pct, ">=", 70.0, "%"),
        Goal("tir", "Time in range 70-180 mg/dL", s.time_in_range_70_180_pct, ">", 70.0, "%"),
        Goal("tbr", "Time below 70 mg/dL", s.time_below_70_pct, "<", 4.0, "%"),
        Goal("tbr54", "Time below 54 mg/dL", s.time_below_54_pct, "<", 1.0, "%"),
        Goal("tar", "Time above 180 mg/dL", s.time_above_180_pct, "<", 25.0, "%"),
        Goal("tar250", "Time above 250 mg/dL", s.time_above_250_pct, "<", 5.0, "%"),
        Goal("cv", "Glucose variability (CV)", s.cv_pct, "<=", 36.0, "%"),
    )


def range_bar(summary: GlycemicSummary) -> RangeBar:
    return RangeBar(tuple((key, label, float(getattr(summary, name))) for key, label, name in RANGE_KEYS))


def _smooth_121(values: np.ndarray) -> np.ndarray:
    """Circular 1-2-1 weighted mean over non-NaN neighbours; NaN bins stay NaN."""
    out = np.full_like(values, np.nan)
    n = len(values)
    for i in range(n):
        if math.isnan(values[i]):
            continue
        total, weight = 2.0 * values[i], 2.0
        for j in ((i - 1) % n, (i + 1) % n):
            if not math.isnan(values[j]) and n > 1:
                total += values[j]
                weight += 1.0
        out[i] = total / weight
    return out


def _local_minute(time_ms: int, tz: tzinfo) -> tuple[date, float]:
    local = datetime.fromtimestamp(time_ms / 1000, tz)
    return local.date(), local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def modal_day(readings: Sequence[tuple[int, float]], tz: tzinfo = timezone.utc, bin_min: int = 15,
              min_per_bin: int = 1) -> ModalDay:
    """Percentiles 5/25/50/75/95 per time-of-day bin, raw and 1-2-1 smoothed (see module docstring)."""
    if bin_min <= 0 or MINUTES_PER_DAY % bin_min:
        raise AgpInputError(f"bin_min must divide 1440, got {bin_min}")
    n_bins = MINUTES_PER_DAY // bin_min
    per_bin: list[list[float]] = [[] for _ in range(n_bins)]
    for time_ms, glucose in readings:
        _, minute = _local_minute(time_ms, tz)
        per_bin[min(int(minute // bin_min), n_bins - 1)].append(glucose)
    raw: dict[int, np.ndarray] = {p: np.full(n_bins, np.nan) for p in PERCENTILES}
    for i, values in enumerate(per_bin):
        if len(values) >= max(min_per_bin, 1):
            qs = np.percentile(np.asarray(values), PERCENTILES)
            for p, q in zip(PERCENTILES, qs):
                raw[p][i] = q
    return ModalDay(bin_min, tuple(len(v) for v in per_bin),
                    {p: tuple(float(x) for x in raw[p]) for p in PERCENTILES},
                    {p: tuple(float(x) for x in _smooth_121(raw[p])) for p in PERCENTILES})


def daily_profiles(readings: Sequence[tuple[int, float]], period_start_ms: int, period_end_ms: int,
                   tz: tzinfo = timezone.utc) -> tuple[DailyProfile, ...]:
    """One profile per local calendar day from the period's first to its last instant."""
    first_day, _ = _local_minute(period_start_ms, tz)
    last_day, _ = _local_minute(period_end_ms - 1, tz)
    by_day: dict[date, list[tuple[float, float]]] = {}
    for time_ms, glucose in readings:
        if period_start_ms <= time_ms < period_end_ms:
            day, minute = _local_minute(time_ms, tz)
            by_day.setdefault(day, []).append((minute, glucose))
    out = []
    day = first_day
    while day <= last_day:
        points = tuple(by_day.get(day, ()))
        values = np.asarray([g for _, g in points])
        tir = float(100.0 * np.mean((values >= 70) & (values <= 180))) if len(values) else math.nan
        mean = float(values.mean()) if len(values) else math.nan
        out.append(DailyProfile(day, points, tir, mean))
        day += timedelta(days=1)
    return tuple(out)


# --- the whole report ----------------------------------------------------------------------------------------
def build_agp(readings: Iterable[tuple[int, float]], period_start_ms: int, period_end_ms: int,
              tz: tzinfo = timezone.utc, sample_interval_min: float = 5.0, bin_min: int = 15) -> AgpReport:
    """All AGP data for ``[period_start_ms, period_end_ms)``; readings outside the period are ignored."""
    _check_period(period_start_ms, period_end_ms, sample_interval_min)
    clean = [r for r in _clean(readings) if period_start_ms <= r[0] < period_end_ms]
    grid = readings_grid(clean, period_start_ms, period_end_ms, sample_interval_min)
    summary = summarize_glucose(grid, sample_interval_min)
    on_grid = _on_grid(clean, period_start_ms, sample_interval_min)
    return AgpReport(
        period_start_ms, period_end_ms, str(getattr(tz, "key", None) or tz.tzname(None) or "UTC"),
        sample_interval_min, summary, goals(summary), range_bar(summary),
        modal_day(on_grid, tz, bin_min), daily_profiles(clean, period_start_ms, period_end_ms, tz))


def _on_grid(readings: list[tuple[int, float]], start_ms: int, sample_interval_min: float) -> list[tuple[int, float]]:
    """The readings the statistics use (first per grid slot), so the modal day and the statistics agree."""
    interval_ms = sample_interval_min * MS_PER_MIN
    seen: set[int] = set()
    out = []
    for time_ms, glucose in readings:
        k = int((time_ms - start_ms) // interval_ms)
        if k not in seen:
            seen.add(k)
            out.append((time_ms, glucose))
    return out
