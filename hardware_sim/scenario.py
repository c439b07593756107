"""Seeded, reproducible daily-life scenarios for in-silico trials.

A :class:`ScenarioSpec` says what a day looks like (meals and snacks with their spread, how well the person
counts and announces carbs, how insulin sensitivity and hepatic glucose production move); :func:`realise`
turns it into per-minute arrays for M rows (subject x seed), each row drawing only from its own random
streams (:mod:`hardware_sim.random_streams`), so the same subject and seed always get the same day, whichever
arm is tested and however rows are chunked (Patek et al. 2009, JDST 3:269).

Elements:
* **Meals and snacks** at nominal clock times with normal spread of size (sd, g) and time (sd, min); start
  times rounded to the 5-min control grid; eaten at ``eating_rate_g_per_min`` (5 g/min, as simglucose).
  A snack occurs with its own probability.
* **Carb-count error**: what is ANNOUNCED is ``eaten * (1 + u)``, u uniform in +-``carb_count_error_fraction``,
  rounded to whole grams (Patek 2009 vary +-30%).
* **Unannounced snacks** (``unannounced_snack_probability``) and **missed boluses**
  (``missed_bolus_probability``: a main meal eaten but never entered, so no bolus is asked for).
* **Insulin-sensitivity drift** over days: ``ln s`` is a random walk with daily steps of sd
  ``sensitivity_drift_sd_per_day``, linearly interpolated within the day, clipped to [0.5, 2]; s multiplies
  insulin-dependent utilisation and insulin suppression of EGP (see ``UvaPadovaCohortModel``).
* **Dawn phenomenon**: ``egp_scale = 1 + A * sin^2`` bump from 03:00 to 09:00 (peak 06:00), A drawn per row
  uniformly in ``dawn_amplitude``; the model multiplies kp1 (basal hepatic production) by it. S2008 has no
  intraday variability; S2017 (Visentin et al. 2018) does — this is a simpler stand-in.
* **Pump occlusions**: at most one per row, the first of daily Bernoulli(``occlusion_probability_per_day``)
  events, onset uniform within that day.
* **Exercise is left out**: S2008 has no exercise states, and the published exercise extensions (Dalla Man et
  al. 2009 heart-rate model; Breton 2008 JDST 2:1065) act on model internals that the cohort model does not
  expose. Approximating it as a sensitivity change would not be a published model, so we do not claim one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from hardware_sim.random_streams import RowStreams

MINUTES_PER_DAY = 1440
CONTROL_GRID_MIN = 5


class ScenarioError(ValueError):
    """Unknown scenario name or inconsistent scenario parameters."""


@dataclass(frozen=True)
class MealSpec:
    """A meal or snack of a typical day."""

    name: str
    time_of_day_h: float
    carbs_g: float
    carbs_sd_g: float = 10.0
    time_sd_min: float = 20.0
    probability: float = 1.0
    is_snack: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.time_of_day_h < 24 and self.carbs_g > 0 and self.carbs_sd_g >= 0
                and self.time_sd_min >= 0 and 0 <= self.probability <= 1):
            raise ScenarioError(f"invalid meal {self!r}")


STANDARD_DAY: tuple[MealSpec, ...] = (
    MealSpec("breakfast", 7.0, 45.0),
    MealSpec("morning snack", 10.0, 15.0, carbs_sd_g=5.0, probability=0.5, is_snack=True),
    MealSpec("lunch", 12.0, 70.0),
    MealSpec("afternoon snack", 15.5, 20.0, carbs_sd_g=5.0, probability=0.5, is_snack=True),
    MealSpec("dinner", 18.0, 80.0),
    MealSpec("evening snack", 21.5, 15.0, carbs_sd_g=5.0, probability=0.3, is_snack=True),
)
THREE_MEALS: tuple[MealSpec, ...] = tuple(m for m in STANDARD_DAY if not m.is_snack)


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    description: str
    meals: tuple[MealSpec, ...] = STANDARD_DAY
    eating_rate_g_per_min: float = 5.0
    min_carbs_g: float = 5.0
    carb_count_error_fraction: float = 0.0
    unannounced_snack_probability: float = 0.0
    missed_bolus_probability: float = 0.0
    sensitivity_drift_sd_per_day: float = 0.0
    dawn_amplitude: tuple[float, float] = (0.0, 0.0)
    occlusion_probability_per_day: float = 0.0

    def __post_init__(self) -> None:
        ok = (self.eating_rate_g_per_min > 0 and self.min_carbs_g > 0 and 0 <= self.carb_count_error_fraction < 1
              and 0 <= self.unannounced_snack_probability <= 1 and 0 <= self.missed_bolus_probability <= 1
              and self.sensitivity_drift_sd_per_day >= 0 and 0 <= self.dawn_amplitude[0] <= self.dawn_amplitude[1]
              and 0 <= self.occlusion_probability_per_day <= 1)
        if not ok:
            raise ScenarioError(f"inconsistent scenario parameters in {self.name!r}")


SCENARIO_PRESETS: dict[str, ScenarioSpec] = {
    spec.name: spec
    for spec in (
        ScenarioSpec("standard", "3 meals (45/70/80 g, sd 10 g, +-20 min) and optional snacks, all announced exactly"),
        ScenarioSpec("three-meals", "3 announced meals only (45/70/80 g, sd 10 g, +-20 min)", meals=THREE_MEALS),
        ScenarioSpec("fasting", "no food at all (basal test)", meals=()),
        ScenarioSpec(
            "realistic", "standard day; carb counts +-20%, half the snacks and 5% of meals unannounced, "
            "sensitivity drift 5%/day, dawn phenomenon 0-10%",
            carb_count_error_fraction=0.2, unannounced_snack_probability=0.5, missed_bolus_probability=0.05,
            sensitivity_drift_sd_per_day=0.05, dawn_amplitude=(0.0, 0.1),
        ),
        ScenarioSpec(
            "challenging", "standard day; carb counts +-30%, every snack unannounced, 10% missed meal boluses, "
            "sensitivity drift 10%/day, dawn phenomenon 5-15%, occlusions 1 per 20 days",
            carb_count_error_fraction=0.3, unannounced_snack_probability=1.0, missed_bolus_probability=0.1,
            sensitivity_drift_sd_per_day=0.1, dawn_amplitude=(0.05, 0.15), occlusion_probability_per_day=0.05,
        ),
    )
}


def scenario_spec(name: str) -> ScenarioSpec:
    try:
        return SCENARIO_PRESETS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIO_PRESETS))}") from None


@dataclass(frozen=True)
class MealEvent:
    """One meal of one row, as it happened: what was eaten and what (if anything) was announced."""

    row: int
    start_min: int
    name: str
    carbs_eaten_g: float
    carbs_announced_g: float  # NaN when not announced
    is_snack: bool


@dataclass
class ScenarioRealisation:
    """Per-minute inputs for M rows over ``duration_min`` minutes (all arrays (M, T) unless noted)."""

    spec: ScenarioSpec
    duration_min: int
    start_time_of_day_min: int
    carbs_g_per_min: NDArray[np.float64]
    announced_carbs_g: NDArray[np.float64]  # grams entered at that minute (0 when none)
    insulin_sensitivity_scale: NDArray[np.float64]
    egp_scale: NDArray[np.float64]
    occlusion_onset_min: NDArray[np.float64]  # (M,), NaN = none
    meals: list[MealEvent] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return self.carbs_g_per_min.shape[0]


def eating_profile_g_per_min(carbs_g: float, eating_rate_g_per_min: float) -> NDArray[np.float64]:
    """Grams eaten in each minute of a meal: ``eating_rate_g_per_min`` until the last, partial minute."""
    full_min, rest = divmod(carbs_g, eating_rate_g_per_min)
    return np.array([eating_rate_g_per_min] * int(full_min) + ([rest] if rest > 1e-9 else []), dtype=float)


def _dawn_bump(clock_min: NDArray) -> NDArray:
    """sin^2 bump over 03:00-09:00, 1 at 06:00, 0 elsewhere."""
    s = (clock_min - 180.0) / 360.0
    return np.where((s >= 0) & (s <= 1), np.sin(np.pi * s) ** 2, 0.0)


def realise(
    spec: ScenarioSpec | str,
    streams: RowStreams,
    duration_min: int,
    *,
    start_time_of_day_min: int = 0,
) -> ScenarioRealisation:
    """Draw the scenario for every row of ``streams`` over ``duration_min`` minutes."""
    if isinstance(spec, str):
        spec = scenario_spec(spec)
    if duration_min < 1 or int(duration_min) != duration_min:
        raise ScenarioError(f"duration_min must be a positive whole number of minutes, got {duration_min!r}")
    m, t_total = len(streams), int(duration_min)
    n_days = int(np.ceil((start_time_of_day_min + t_total) / MINUTES_PER_DAY))
    carbs = np.zeros((m, t_total))
    announced = np.zeros((m, t_total))
    meals: list[MealEvent] = []

    n_meals = len(spec.meals)
    meal_rngs = streams("scenario.meals")
    ann_rngs = streams("scenario.announcements")
    for row in range(m):
        # Fixed number of draws per (day, meal) so one element never shifts another's randomness.
        draws = meal_rngs[row].random((n_days, n_meals, 3))
        normals = meal_rngs[row].standard_normal((n_days, n_meals, 2))
        ann = ann_rngs[row].random((n_days, n_meals, 2))
        for day in range(n_days):
            for j, meal in enumerate(spec.meals):
                if draws[day, j, 0] >= meal.probability:
                    continue
                nominal = day * MINUTES_PER_DAY + meal.time_of_day_h * 60.0 + meal.time_sd_min * normals[day, j, 1]
                start = int(np.round(nominal / CONTROL_GRID_MIN) * CONTROL_GRID_MIN) - start_time_of_day_min
                if not 0 <= start < t_total:
                    continue
                grams = float(np.round(max(spec.min_carbs_g, meal.carbs_g + meal.carbs_sd_g * normals[day, j, 0])))
                profile = eating_profile_g_per_min(grams, spec.eating_rate_g_per_min)
                stop = min(start + len(profile), t_total)
                carbs[row, start:stop] += profile[: stop - start]
                skipped = spec.unannounced_snack_probability if meal.is_snack else spec.missed_bolus_probability
                if ann[day, j, 0] < skipped:
                    told = float("nan")
                else:
                    error = spec.carb_count_error_fraction * (2.0 * ann[day, j, 1] - 1.0)
                    told = float(max(0.0, np.round(grams * (1.0 + error))))
                    announced[row, start] += told
                meals.append(MealEvent(row, start, meal.name, grams, told, meal.is_snack))

    clock_min = (start_time_of_day_min + np.arange(t_total)) % MINUTES_PER_DAY
    absolute_day = (start_time_of_day_min + np.arange(t_total)) / MINUTES_PER_DAY
    sensitivity = np.ones((m, t_total))
    if spec.sensitivity_drift_sd_per_day > 0:
        for row, rng in enumerate(streams("scenario.sensitivity")):
            walk = np.concatenate([[0.0], np.cumsum(spec.sensitivity_drift_sd_per_day * rng.standard_normal(n_days))])
            sensitivity[row] = np.clip(np.exp(np.interp(absolute_day, np.arange(n_days + 1), walk)), 0.5, 2.0)
    egp = np.ones((m, t_total))
    lo, hi = spec.dawn_amplitude
    if hi > 0:
        amplitude = np.array([lo + (hi - lo) * rng.random() for rng in streams("scenario.dawn")])
        egp = 1.0 + amplitude[:, None] * _dawn_bump(clock_min)[None, :]
    onset = np.full(m, np.nan)
    if spec.occlusion_probability_per_day > 0:
        for row, rng in enumerate(streams("scenario.pump_faults")):
            u = rng.random((n_days, 2))
            days = np.flatnonzero(u[:, 0] < spec.occlusion_probability_per_day)
            if days.size:
                when = days[0] * MINUTES_PER_DAY + u[days[0], 1] * MINUTES_PER_DAY - start_time_of_day_min
                if 0 <= when < t_total:
                    onset[row] = float(np.floor(when))
    return ScenarioRealisation(spec, t_total, start_time_of_day_min, carbs, announced, sensitivity, egp, onset,
                               meals)


def with_changes(spec: ScenarioSpec, **changes: object) -> ScenarioSpec:
    """A copy of ``spec`` with some fields changed (e.g. a sweep over carb-count error)."""
    return replace(spec, **changes)  # type: ignore[arg-type]
