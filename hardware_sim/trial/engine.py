"""The in-silico trial engine: arms x (subjects x seeds), all rows advanced together.

Protocol (Patek et al. 2009, JDST 3:269): every arm meets the same virtual subjects, the same scenario
realisations and the same sensor errors for the same seeds, so differences between arms are the policies'.

One *row* is one subject under one seed. Rows are advanced together as arrays: physiology in 1-min steps
(:class:`~hardware_sim.patient.uva_padova.UvaPadovaCohortModel`, RK4), the pump in 1-min steps, the CGM and
the arm's decision every ``decision_interval_min`` (5 min). Each row draws every random number from its own
streams (:mod:`hardware_sim.random_streams`), so a row's result does not depend on how rows are chunked or
where they run: :func:`run_trial` with any ``chunk_size`` and the dask runner give identical numbers.

Order within one decision instant t (a multiple of 5 min): the CGM reads interstitial glucose, true plasma
glucose is recorded, the arm sees the observation and acts (bolus, temp basal, rescue carbs), then the pump
and the body advance minute by minute until the next instant.

Outcome metrics (models.glycemic_metrics) are computed on TRUE plasma glucose sampled every 5 min (the
field's convention for in-silico trials) and, separately, on the CGM readings the arm saw (``sensor_``).
S2008 has no counter-regulation, so an overdosed virtual subject's plasma glucose can fall to 0 mg/dL; for
the metrics true glucose is floored at ``TRUE_GLUCOSE_FLOOR_MG_DL`` (20 mg/dL, the usual floor of glucose
meters, on which Kovatchev's risk indices were built), and the share of samples below that floor is reported
as ``model_glucose_below_20_pct`` so such runs are visible rather than hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from hardware_sim.patient.cohort import Cohort
from hardware_sim.patient.uva_padova import UvaPadovaCohortModel
from hardware_sim.pump_model import InsulinPumpArray, PumpParameters
from hardware_sim.random_streams import RowStreams, subject_key
from hardware_sim.scenario import MealEvent, ScenarioSpec, eating_profile_g_per_min, realise, scenario_spec
from hardware_sim.sensor_model import CgmSensorArray, CgmSensorParameters, sensor_parameters
from hardware_sim.trial.arms import make_arm
from hardware_sim.trial.observation import Arm, ArmObservation, ArmSetup
from models.glycemic_metrics import glycemic_metrics

MINUTES_PER_DAY = 1440
TRUE_GLUCOSE_FLOOR_MG_DL = 20.0
#: Rows advanced together by default. Memory per chunk is about 3 x 8 bytes x rows x trial minutes for the
#: scenario inputs (256 rows x 14 days: ~125 MB); larger chunks gain little vectorisation speed.
DEFAULT_CHUNK_ROWS = 256

#: Progress callback: called with the number of row-samples (rows x decision intervals) just completed.
Progress = Callable[[int], None]


class TrialConfigError(ValueError):
    """A trial configuration that cannot run (no seeds, non-positive duration, bad intervals)."""


@dataclass(frozen=True)
class TrialConfig:
    days: float = 1.0
    seeds: tuple[int, ...] = (1,)
    scenario: str | ScenarioSpec = "standard"
    sensor: str | CgmSensorParameters = "realistic"
    pump: PumpParameters = field(default_factory=PumpParameters)
    start_time_of_day_min: int = 0
    decision_interval_min: int = 5
    history_samples: int = 288
    substeps_per_min: int = 2
    keep_traces: bool = False

    def __post_init__(self) -> None:
        if not self.seeds:
            raise TrialConfigError("a trial needs at least one seed")
        if any(int(s) != s or s < 0 for s in self.seeds):
            raise TrialConfigError(f"seeds must be non-negative integers, got {self.seeds}")
        if not self.days > 0 or self.duration_min < self.decision_interval_min:
            raise TrialConfigError(f"days must cover at least one decision interval, got {self.days}")
        if self.decision_interval_min < 1 or int(self.decision_interval_min) != self.decision_interval_min:
            raise TrialConfigError("decision_interval_min must be a positive whole number")
        if self.history_samples < 1:
            raise TrialConfigError("history_samples must be >= 1")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))

    @property
    def duration_min(self) -> int:
        return int(round(self.days * MINUTES_PER_DAY))

    @property
    def n_samples(self) -> int:
        return self.duration_min // self.decision_interval_min

    def scenario_spec(self) -> ScenarioSpec:
        return scenario_spec(self.scenario) if isinstance(self.scenario, str) else self.scenario

    def sensor_parameters(self) -> CgmSensorParameters:
        p = sensor_parameters(self.sensor) if isinstance(self.sensor, str) else self.sensor
        if p.sample_interval_min != self.decision_interval_min:
            raise TrialConfigError("the CGM sample interval must equal the decision interval")
        return p

    def description(self) -> dict[str, object]:
        spec = self.scenario_spec()
        sensor = self.sensor if isinstance(self.sensor, str) else "custom"
        return {"days": self.days, "seeds": list(self.seeds), "scenario": spec.name, "sensor": sensor,
                "start_time_of_day_min": self.start_time_of_day_min,
                "decision_interval_min": self.decision_interval_min, "substeps_per_min": self.substeps_per_min}


@dataclass(frozen=True)
class TrialRows:
    """Rows of a trial: seed-major (all subjects under seed 1, then under seed 2...)."""

    cohort: Cohort
    seeds: NDArray[np.int64]
    replicates: NDArray[np.int64]  # occurrence number of a repeated subject name under the same seed

    @classmethod
    def build(cls, cohort: Cohort, seeds: Sequence[int]) -> "TrialRows":
        counts: dict[str, int] = {}
        occurrence = []
        for name in cohort.names:
            occurrence.append(counts.get(name, 0))
            counts[name] = counts.get(name, 0) + 1
        k = len(seeds)
        return cls(cohort.repeat(k), np.repeat(np.asarray(seeds, dtype=np.int64), cohort.size),
                   np.tile(np.asarray(occurrence, dtype=np.int64), k))

    def __len__(self) -> int:
        return self.cohort.size

    def take(self, indices: Sequence[int] | NDArray) -> "TrialRows":
        idx = np.asarray(indices, dtype=np.intp)
        return TrialRows(self.cohort.take(idx), self.seeds[idx], self.replicates[idx])

    def streams(self) -> RowStreams:
        return RowStreams(self.seeds.tolist(), [subject_key(n) for n in self.cohort.names], self.replicates.tolist())

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f"{n}@seed{s}" + (f"#{r}" if r else "") for n, s, r in
                     zip(self.cohort.names, self.seeds.tolist(), self.replicates.tolist()))


@dataclass
class RowResults:
    """Outcomes of some rows under one arm. ``metrics`` on true plasma glucose, ``sensor_metrics`` on CGM,
    ``totals`` per row (per-day averages), ``traces`` (M, N) arrays at CGM times when kept."""

    arm: str
    names: tuple[str, ...]
    age_groups: tuple[str, ...]
    seeds: NDArray[np.int64]
    replicates: NDArray[np.int64]
    metrics: dict[str, NDArray]
    sensor_metrics: dict[str, NDArray]
    totals: dict[str, NDArray]
    traces: dict[str, NDArray] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.names)

    @staticmethod
    def concatenate(parts: Sequence["RowResults"]) -> "RowResults":
        if not parts:
            raise ValueError("nothing to concatenate")

        def cat(dicts: list[dict[str, NDArray]]) -> dict[str, NDArray]:
            return {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0]}

        traces = None
        if all(p.traces is not None for p in parts):
            traces = cat([p.traces for p in parts])  # type: ignore[misc]
        return RowResults(
            arm=parts[0].arm,
            names=tuple(n for p in parts for n in p.names),
            age_groups=tuple(g for p in parts for g in p.age_groups),
            seeds=np.concatenate([p.seeds for p in parts]),
            replicates=np.concatenate([p.replicates for p in parts]),
            metrics=cat([p.metrics for p in parts]),
            sensor_metrics=cat([p.sensor_metrics for p in parts]),
            totals=cat([p.totals for p in parts]),
            traces=traces,
        )


@dataclass
class TrialResult:
    config: TrialConfig
    cohort_label: str
    arms: dict[str, RowResults]
    wall_time_s: float = float("nan")


def _read_only(view: NDArray) -> NDArray:
    view = view.view()
    view.flags.writeable = False
    return view


def run_rows(arm: Arm | str, rows: TrialRows, config: TrialConfig, progress: Progress | None = None) -> RowResults:
    """Run ``arm`` on ``rows`` for the whole trial duration: the unit of work that chunks are made of."""
    arm = make_arm(arm) if isinstance(arm, str) else arm
    cohort = rows.cohort
    m = len(rows)
    dt = int(config.decision_interval_min)
    t_total = config.n_samples * dt
    n = config.n_samples
    streams = rows.streams()
    scenario = realise(config.scenario_spec(), streams, t_total, start_time_of_day_min=config.start_time_of_day_min)
    sensor = CgmSensorArray(streams, n, config.sensor_parameters(),
                            start_time_of_day_min=config.start_time_of_day_min)
    pump = InsulinPumpArray(cohort.basal_u_per_h, config.pump, start_time_of_day_min=config.start_time_of_day_min,
                            occlusion_onset_min=scenario.occlusion_onset_min)
    model = UvaPadovaCohortModel(cohort, substeps_per_min=config.substeps_per_min)
    setup = ArmSetup(
        row_labels=rows.labels, age_groups=cohort.age_groups, body_weight_kg=cohort.body_weight_kg.copy(),
        basal_u_per_h=pump.basal_schedule_u_per_h[:, 0].copy(), carb_ratio_g_per_u=cohort.carb_ratio_g_per_u.copy(),
        correction_factor_mg_dl_per_u=cohort.correction_factor_mg_dl_per_u.copy(),
        total_daily_insulin_u=cohort.total_daily_insulin_u.copy(), decision_interval_min=float(dt),
        start_time_of_day_min=float(config.start_time_of_day_min),
    )
    arm.start(setup)

    # Time-major copies so that each minute reads one contiguous row.
    carbs_t = np.ascontiguousarray(scenario.carbs_g_per_min.T)
    sens_t = np.ascontiguousarray(scenario.insulin_sensitivity_scale.T)
    egp_t = np.ascontiguousarray(scenario.egp_scale.T)
    announced_5 = scenario.announced_carbs_g.reshape(m, n, dt).sum(axis=2)

    true_bg = np.full((m, n), np.nan)
    cgm = np.full((m, n), np.nan)
    reported_u = np.zeros((m, n))
    true_u = np.zeros((m, n))
    bolus_commanded_u = np.zeros((m, n))
    rescue_g = np.zeros((m, n))
    eaten_g = np.zeros((m, n))
    rescue_queue_g = np.zeros(m)
    eat_rate = config.scenario_spec().eating_rate_g_per_min
    announced_meals = _announced_meals_by_interval(scenario.meals, dt)
    meals_waited_for = np.zeros(m)
    times = np.arange(n, dtype=float) * dt
    samples_per_day = MINUTES_PER_DAY // dt
    reported_samples = 0

    for k in range(n):
        t0 = k * dt
        cgm[:, k] = sensor.read(k, model.interstitial_glucose_mg_dl)
        true_bg[:, k] = model.plasma_glucose_mg_dl
        lo = max(0, k + 1 - config.history_samples)
        state = pump.state()
        observation = ArmObservation(
            time_min=float(t0),
            time_of_day_min=float((config.start_time_of_day_min + t0) % MINUTES_PER_DAY),
            history_times_min=_read_only(times[lo : k + 1]),
            cgm_glucose_mg_dl=_read_only(cgm[:, lo : k + 1]),
            pump_delivered_u=_read_only(reported_u[:, lo : k + 1]),
            announced_carbs_g=_read_only(announced_5[:, lo : k + 1]),
            reservoir_u=state.reservoir_u,
            scheduled_basal_u_per_h=state.scheduled_basal_u_per_h,
            temp_basal_u_per_h=state.temp_basal_u_per_h,
            temp_basal_remaining_min=state.temp_basal_remaining_min,
            bolus_in_progress_u=state.bolus_remaining_u,
            occlusion_alarm=state.occlusion_alarm,
            reservoir_empty=state.reservoir_empty,
        )
        action = arm.decide(observation).validated(m)
        bolus_commanded_u[:, k] = pump.command_bolus(action.bolus_u)
        pump.set_temp_basal(action.temp_basal_u_per_h, action.temp_basal_duration_min)
        wait = np.round(action.eat_after(m))
        for row in np.flatnonzero(wait > 0):
            meals = announced_meals.get((int(row), k), ())
            for meal in meals:
                _defer_meal(carbs_t, meal, int(wait[row]), eat_rate)
            meals_waited_for[row] += bool(meals)  # one announcement (interval) waited for
        rescue = np.asarray(action.rescue_carbs_g, dtype=float)
        rescue_g[:, k] = rescue
        rescue_queue_g += rescue
        reported_before = pump.reported_delivered_u.copy()
        for minute in range(t0, t0 + dt):
            insulin_u = pump.step()
            true_u[:, k] += insulin_u
            extra = np.minimum(rescue_queue_g, eat_rate)
            rescue_queue_g -= extra
            carbs = carbs_t[minute] + extra
            eaten_g[:, k] += carbs
            model.step(carbs, insulin_u, 1.0, insulin_sensitivity_scale=sens_t[minute], egp_scale=egp_t[minute])
        # Reported delivery of the interval that ENDS at the next sample is shown with that sample; a hub
        # reads the pump's history after the fact.
        if k + 1 < n:
            reported_u[:, k + 1] = pump.reported_delivered_u - reported_before
        if progress is not None and ((k + 1) % samples_per_day == 0 or k + 1 == n):
            progress(m * (k + 1 - reported_samples))
            reported_samples = k + 1

    days = t_total / MINUTES_PER_DAY
    totals = {
        "insulin_u_per_day": true_u.sum(axis=1) / days,
        "insulin_reported_u_per_day": pump.reported_delivered_u / days,
        "bolus_u_per_day": bolus_commanded_u.sum(axis=1) / days,
        "boluses_per_day": (bolus_commanded_u > 0).sum(axis=1) / days,
        "carbs_eaten_g_per_day": eaten_g.sum(axis=1) / days,
        "carbs_announced_g_per_day": scenario.announced_carbs_g.sum(axis=1) / days,
        "rescue_carbs_g_per_day": rescue_g.sum(axis=1) / days,
        "meals_eaten_after_pre_bolus_per_day": meals_waited_for / days,
        "occlusion_alarmed": pump.occlusion_alarm_time_min >= 0,
        "model_glucose_below_20_pct": 100.0 * (true_bg < TRUE_GLUCOSE_FLOOR_MG_DL).mean(axis=1),
        "min_glucose_mg_dl": np.nanmin(true_bg, axis=1),
        "max_glucose_mg_dl": np.nanmax(true_bg, axis=1),
    }
    traces = None
    if config.keep_traces:
        traces = {"true_glucose_mg_dl": true_bg, "cgm_mg_dl": cgm, "insulin_true_u": true_u,
                  "insulin_reported_u": reported_u, "bolus_u": bolus_commanded_u, "carbs_eaten_g": eaten_g,
                  "carbs_announced_g": announced_5, "rescue_carbs_g": rescue_g}
    return RowResults(
        arm=arm.name, names=cohort.names, age_groups=cohort.age_groups, seeds=rows.seeds.copy(),
        replicates=rows.replicates.copy(), metrics=glycemic_metrics(np.maximum(true_bg, TRUE_GLUCOSE_FLOOR_MG_DL), dt),
        sensor_metrics=glycemic_metrics(cgm, dt), totals=totals, traces=traces,
    )


def _announced_meals_by_interval(meals: Sequence[MealEvent], dt: int) -> dict[tuple[int, int], list[MealEvent]]:
    """Announced meals keyed by (row, decision index) of the interval their announcement falls in."""
    index: dict[tuple[int, int], list[MealEvent]] = {}
    for meal in meals:
        if np.isfinite(meal.carbs_announced_g):
            index.setdefault((meal.row, meal.start_min // dt), []).append(meal)
    return index


def _defer_meal(carbs_t: NDArray, meal: MealEvent, wait_min: int, eat_rate_g_per_min: float) -> None:
    """The person waits ``wait_min`` after the bolus before eating ``meal`` (the hub's pre-bolus advice): its
    carbs move later in the time-major intake ``carbs_t`` (T, M); what would fall past the end is not eaten."""
    profile = eating_profile_g_per_min(meal.carbs_eaten_g, eat_rate_g_per_min)
    t_total = carbs_t.shape[0]
    start, later = meal.start_min, meal.start_min + wait_min
    now_part = profile[: max(0, min(len(profile), t_total - start))]
    carbs_t[start : start + len(now_part), meal.row] -= now_part
    np.clip(carbs_t[start : start + len(now_part), meal.row], 0.0, None,
            out=carbs_t[start : start + len(now_part), meal.row])
    later_part = profile[: max(0, min(len(profile), t_total - later))]
    carbs_t[later : later + len(later_part), meal.row] += later_part


def chunk_indices(n_rows: int, chunk_size: int | None) -> list[NDArray[np.intp]]:
    """Row indices split into consecutive chunks of at most ``chunk_size`` (None = one chunk)."""
    size = n_rows if not chunk_size else max(1, int(chunk_size))
    return [np.arange(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


def run_trial(
    arms: Sequence[Arm | str],
    cohort: Cohort,
    config: TrialConfig,
    *,
    chunk_size: int | None = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = None,
    cohort_label: str = "custom",
) -> TrialResult:
    """Run every arm over cohort x seeds in this process, ``chunk_size`` rows at a time (None: all at once).

    Results do not depend on ``chunk_size`` (each row has its own random streams)."""
    import time

    started = time.perf_counter()
    rows = TrialRows.build(cohort, config.seeds)
    results: dict[str, RowResults] = {}
    for arm in arms:
        arm_obj = make_arm(arm) if isinstance(arm, str) else arm
        if arm_obj.name in results:
            raise TrialConfigError(f"two arms are called {arm_obj.name!r}")
        parts = [run_rows(arm_obj, rows.take(idx), config, progress) for idx in chunk_indices(len(rows), chunk_size)]
        results[arm_obj.name] = RowResults.concatenate(parts)
    return TrialResult(config, cohort_label, results, time.perf_counter() - started)
