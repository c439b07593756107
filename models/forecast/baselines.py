"""Glucose forecasters behind one interface, and the baselines every new method must beat.

Interface (``GlucoseForecaster``): the caller tells the forecaster what happened, in time order, through
``observe_glucose / observe_bolus / observe_basal / observe_carbs``, then asks ``forecast(now_minute,
horizons_min)`` for the mean and a 95 % interval at each horizon. A forecaster only ever sees what it was
told, so replaying a recording in time order is causal by construction.

Baselines:
* ``last_value``: the last reading carried forward.
* ``linear``: least-squares slope over the last 20 min of readings, extrapolated.
* ``loop``: Loop-style effect sum (LoopKit LoopAlgorithm): momentum (slope over 15 min, blended out over
  the first 15 min) + insulin effect (exponential curve, ISF; boluses and basal deviations from the scheduled
  basal; a running temp basal is assumed to last 30 min) + carb effect (piecewise-linear absorption, CSF =
  ISF/CR, 10-min delay) + retrospective correction (the last 30 min of observed minus modelled change, as a
  rate continued for 60 min with a linear fade).
* ``twin`` (``TwinForecaster``): the MVP twin's no-action what-if trajectory, with model-based intervals
  (sampled propagation of state, parameter and process uncertainty) rescaled online per horizon by
  ``OnlineIntervalScaler`` (a causal conformal step: the 95 % quantile of past normalised errors).

Intervals for the baselines are empirical residual quantiles learned ONLINE (``OnlineResidualQuantiles``):
each forecast is kept until the reading at its target time (+-2.5 min) arrives; its residual then joins that
horizon's window (the last 500). The interval is mean + the 2.5 % and 97.5 % residual quantiles once 30
residuals exist, before that mean +- (10 + 0.5*h) mg/dL. Nothing from the future is used.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from models.carb_absorption import CarbEntry, carbs_absorbed_g
from models.insulin_action import ExponentialInsulinCurve, InsulinDose, insulin_on_board_u
from models.twin.twin import DigitalTwin, TwinSettings
from models.whatif import what_if

DEFAULT_HORIZONS_MIN = (30.0, 60.0, 90.0, 120.0)
CGM_RANGE_MG_DL = (39.0, 401.0)
HISTORY_MIN = 8 * 60.0


@dataclass(frozen=True)
class Forecast:
    """Forecast issued at ``issued_at_minute`` for each horizon (NaN where the method cannot say)."""

    method: str
    issued_at_minute: float
    horizons_min: NDArray[np.float64]
    mean_mg_dl: NDArray[np.float64]
    lower_95_mg_dl: NDArray[np.float64]
    upper_95_mg_dl: NDArray[np.float64]


class GlucoseForecaster(ABC):
    """Told what happened in time order; forecasts glucose with 95 % intervals."""

    name: ClassVar[str] = "forecaster"

    def __init__(self) -> None:
        self.glucose: deque[tuple[float, float]] = deque()
        self.boluses: list[tuple[float, float]] = []
        self.basal_changes: list[tuple[float, float]] = []  # (minute, U/h; NaN = scheduled)
        self.carbs: list[tuple[float, float]] = []

    def observe_glucose(self, minute: float, glucose_mg_dl: float) -> None:
        self.glucose.append((float(minute), float(glucose_mg_dl)))
        while self.glucose and self.glucose[0][0] < minute - HISTORY_MIN:
            self.glucose.popleft()

    def observe_bolus(self, minute: float, insulin_u: float) -> None:
        self.boluses.append((float(minute), float(insulin_u)))

    def observe_basal(self, minute: float, basal_u_per_h: float) -> None:
        self.basal_changes.append((float(minute), float(basal_u_per_h)))

    def observe_carbs(self, minute: float, carbs_g: float) -> None:
        self.carbs.append((float(minute), float(carbs_g)))

    @abstractmethod
    def forecast(self, now_minute: float, horizons_min: Sequence[float] = DEFAULT_HORIZONS_MIN) -> Forecast:
        """Mean and 95 % interval at ``now_minute + h`` for each h, from what was observed so far."""


class OnlineResidualQuantiles:
    """Causal empirical intervals: residual quantiles of past forecasts whose targets have been observed."""

    def __init__(self, window: int = 500, min_count: int = 30, tolerance_min: float = 2.5) -> None:
        self.window = window
        self.min_count = min_count
        self.tolerance_min = tolerance_min
        self.residuals: dict[float, deque[float]] = {}
        self.pending: deque[tuple[float, float, float]] = deque()  # (target minute, horizon, mean)

    def record(self, now_minute: float, horizons: NDArray[np.float64], mean: NDArray[np.float64]) -> None:
        for h, m in zip(horizons, mean):
            if math.isfinite(m):
                self.pending.append((now_minute + float(h), float(h), float(m)))

    def observe(self, minute: float, glucose_mg_dl: float) -> None:
        keep: deque[tuple[float, float, float]] = deque()
        for target, h, m in self.pending:
            if abs(target - minute) <= self.tolerance_min:
                self.residuals.setdefault(h, deque(maxlen=self.window)).append(glucose_mg_dl - m)
            elif target > minute - self.tolerance_min:
                keep.append((target, h, m))  # still in the future (or just now): wait for its reading
        self.pending = keep

    def interval(self, horizons: NDArray[np.float64], mean: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
        lower = np.empty_like(mean)
        upper = np.empty_like(mean)
        for i, h in enumerate(horizons):
            r = self.residuals.get(float(h))
            if r is not None and len(r) >= self.min_count:
                q_low, q_high = np.quantile(np.fromiter(r, float), [0.025, 0.975])
            else:
                q_low, q_high = -(10.0 + 0.5 * h), 10.0 + 0.5 * h
            lower[i], upper[i] = mean[i] + q_low, mean[i] + q_high
        return lower, upper


class OnlineIntervalScaler:
    """Causal rescaling of model intervals: scale = 95 % quantile of past |error| / (half-width on its side).

    Scores come only from forecasts whose target reading has arrived; until ``min_count`` exist the model's
    interval is used as it is. The scale is kept within [``low``, ``high``].
    """

    def __init__(self, window: int = 500, min_count: int = 30, tolerance_min: float = 2.5, low: float = 0.5,
                 high: float = 4.0) -> None:
        self.window, self.min_count, self.tolerance_min = window, min_count, tolerance_min
        self.low, self.high = low, high
        self.scores: dict[float, deque[float]] = {}
        self.pending: deque[tuple[float, float, float, float, float]] = deque()

    def record(self, now_minute: float, horizons: NDArray, mean: NDArray, lower: NDArray, upper: NDArray) -> None:
        for h, m, lo, hi in zip(horizons, mean, lower, upper):
            if math.isfinite(m) and math.isfinite(lo) and math.isfinite(hi):
                self.pending.append((now_minute + float(h), float(h), float(m), float(lo), float(hi)))

    def observe(self, minute: float, glucose_mg_dl: float) -> None:
        keep: deque[tuple[float, float, float, float, float]] = deque()
        for item in self.pending:
            target, h, m, lo, hi = item
            if abs(target - minute) <= self.tolerance_min:
                half = (hi - m) if glucose_mg_dl >= m else (m - lo)
                score = abs(glucose_mg_dl - m) / max(half, 1e-6)
                self.scores.setdefault(h, deque(maxlen=self.window)).append(score)
            elif target > minute - self.tolerance_min:
                keep.append(item)
        self.pending = keep

    def scale(self, horizon: float) -> float:
        scores = self.scores.get(float(horizon))
        if scores is None or len(scores) < self.min_count:
            return 1.0
        return float(np.clip(np.quantile(np.fromiter(scores, float), 0.95), self.low, self.high))


class ResidualIntervalForecaster(GlucoseForecaster):
    """A point forecaster whose 95 % intervals come from its own online residual quantiles."""

    def __init__(self) -> None:
        super().__init__()
        self.intervals = OnlineResidualQuantiles()

    def observe_glucose(self, minute: float, glucose_mg_dl: float) -> None:
        self.intervals.observe(float(minute), float(glucose_mg_dl))
        super().observe_glucose(minute, glucose_mg_dl)

    @abstractmethod
    def point_forecast(self, now_minute: float, horizons: NDArray[np.float64]) -> NDArray[np.float64]:
        """Mean forecast at each horizon (NaN if it cannot be made)."""

    def forecast(self, now_minute: float, horizons_min: Sequence[float] = DEFAULT_HORIZONS_MIN) -> Forecast:
        horizons = np.asarray(horizons_min, dtype=float)
        mean = np.clip(self.point_forecast(float(now_minute), horizons), *CGM_RANGE_MG_DL)
        self.intervals.record(float(now_minute), horizons, mean)
        lower, upper = self.intervals.interval(horizons, mean)
        return Forecast(self.name, float(now_minute), horizons, mean, lower, upper)

    def _recent(self, now_minute: float, window_min: float) -> tuple[NDArray, NDArray]:
        pts = [(t, g) for t, g in self.glucose if now_minute - window_min - 1e-9 <= t <= now_minute]
        if not pts:
            return np.zeros(0), np.zeros(0)
        t, g = zip(*pts)
        return np.array(t), np.array(g)


def _slope_mg_dl_per_min(t: NDArray, g: NDArray, min_points: int) -> float:
    if t.size < min_points or t[-1] - t[0] <= 0:
        return math.nan
    return float(np.polyfit(t - t[-1], g, 1)[0])


class LastValueForecaster(ResidualIntervalForecaster):
    name = "last_value"

    def point_forecast(self, now_minute: float, horizons: NDArray[np.float64]) -> NDArray[np.float64]:
        if not self.glucose:
            return np.full(horizons.shape, math.nan)
        return np.full(horizons.shape, self.glucose[-1][1])


class LinearForecaster(ResidualIntervalForecaster):
    name = "linear"

    def __init__(self, window_min: float = 20.0) -> None:
        super().__init__()
        self.window_min = window_min

    def point_forecast(self, now_minute: float, horizons: NDArray[np.float64]) -> NDArray[np.float64]:
        t, g = self._recent(now_minute, self.window_min)
        if not g.size:
            return np.full(horizons.shape, math.nan)
        slope = _slope_mg_dl_per_min(t, g, 2)
        if not math.isfinite(slope):
            slope = 0.0
        return g[-1] + slope * (now_minute - t[-1] + horizons)


class LoopEffectForecaster(ResidualIntervalForecaster):
    """Loop-style effect sum; every part is exposed by ``effects`` for explanation."""

    name = "loop"
    MOMENTUM_WINDOW_MIN = 15.0
    MOMENTUM_BLEND_MIN = 15.0
    CARB_DELAY_MIN = 10.0
    RC_WINDOW_MIN = 30.0
    RC_EFFECT_MIN = 60.0
    TEMP_BASAL_ASSUMED_MIN = 30.0

    def __init__(self, settings: TwinSettings, absorption_min: float = 180.0) -> None:
        super().__init__()
        self.settings = settings
        self.curve = ExponentialInsulinCurve(settings.insulin_peak_min, settings.insulin_duration_min)
        self.absorption_min = absorption_min
        self.isf = settings.insulin_sensitivity_mg_dl_per_u
        self.csf = settings.insulin_sensitivity_mg_dl_per_u / settings.carb_ratio_g_per_u

    def _doses(self, now_minute: float) -> list[InsulinDose]:
        """Boluses and basal deviations from the scheduled basal known at ``now_minute``."""
        scheduled = self.settings.basal_u_per_h
        doses = [InsulinDose(t, u) for t, u in self.boluses if t <= now_minute]
        changes = [(t, r) for t, r in self.basal_changes if t <= now_minute]
        for i, (t, rate) in enumerate(changes):
            if math.isnan(rate):
                continue
            if i + 1 < len(changes):
                end = changes[i + 1][0]
            else:  # the running rate: assume it lasts like a Loop temp basal
                end = max(now_minute, t) + self.TEMP_BASAL_ASSUMED_MIN
            if end > t and rate != scheduled:
                doses.append(InsulinDose.basal_deviation(t, rate, scheduled, end - t))
        return doses

    def _insulin_glucose(self, doses: list[InsulinDose], minutes: NDArray) -> NDArray:
        """Cumulative insulin effect (mg/dL) at ``minutes``: -ISF * insulin absorbed (delivered - on board)."""
        delivered = np.zeros(minutes.shape)
        for dose in doses:
            if dose.duration_min <= 0:
                delivered += np.where(minutes >= dose.start_min, dose.units, 0.0)
            else:
                frac = np.clip((minutes - dose.start_min) / dose.duration_min, 0.0, 1.0)
                delivered += dose.units * frac
        return -self.isf * (delivered - insulin_on_board_u(doses, minutes, self.curve))

    def _carb_glucose(self, minutes: NDArray) -> NDArray:
        entries = [CarbEntry(t, g, self.absorption_min) for t, g in self.carbs]
        return self.csf * carbs_absorbed_g(entries, minutes, delay_min=self.CARB_DELAY_MIN)

    def effects(self, now_minute: float, horizons: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Each effect's glucose change (mg/dL) from now to now + h, and the blended prediction."""
        t, g = self._recent(now_minute, HISTORY_MIN)
        if not g.size:
            nan = np.full(horizons.shape, math.nan)
            return {"insulin": nan, "carbs": nan, "momentum": nan, "retrospective": nan, "prediction": nan}
        last_t, last_g = float(t[-1]), float(g[-1])
        doses = self._doses(now_minute)
        # effects on a 5-min grid from the last reading, to blend momentum increment by increment
        grid = np.arange(0.0, float(horizons.max()) + (now_minute - last_t) + 5.0, 5.0) + last_t
        insulin = self._insulin_glucose(doses, grid)
        carbs = self._carb_glucose(grid)
        insulin -= insulin[0]
        carbs -= carbs[0]
        # retrospective correction: observed change over the last 30 min vs the modelled one
        rc_rate = 0.0
        tw, gw = self._recent(last_t, self.RC_WINDOW_MIN)
        if tw.size >= 2 and tw[-1] - tw[0] >= self.RC_WINDOW_MIN * 0.5:
            span = np.array([tw[0], tw[-1]])
            modelled = np.diff(self._insulin_glucose(doses, span) + self._carb_glucose(span))[0]
            rc_rate = float((gw[-1] - gw[0]) - modelled) / float(tw[-1] - tw[0])
        dt = grid - last_t
        fade = np.clip(dt, 0, self.RC_EFFECT_MIN)
        retro = rc_rate * (fade - fade**2 / (2 * self.RC_EFFECT_MIN))
        # momentum, blended out: increments weighted 1 -> 0 over the blend window
        tm, gm = self._recent(last_t, self.MOMENTUM_WINDOW_MIN)
        slope = _slope_mg_dl_per_min(tm, gm, 3)
        increments_effects = np.diff(insulin + carbs + retro, prepend=0.0)
        if math.isfinite(slope):
            weight = np.clip(1.0 - dt / self.MOMENTUM_BLEND_MIN, 0.0, 1.0)
            increments = weight * slope * 5.0 + (1 - weight) * increments_effects
            increments[0] = 0.0
            momentum = np.cumsum(weight * slope * 5.0 * (dt > 0))
        else:
            increments = increments_effects
            momentum = np.zeros_like(grid)
        prediction = last_g + np.cumsum(increments)
        at = now_minute + horizons
        return {
            "insulin": np.interp(at, grid, insulin), "carbs": np.interp(at, grid, carbs),
            "momentum": np.interp(at, grid, momentum), "retrospective": np.interp(at, grid, retro),
            "prediction": np.interp(at, grid, prediction),
        }

    def point_forecast(self, now_minute: float, horizons: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.effects(now_minute, horizons)["prediction"]


class TwinForecaster(GlucoseForecaster):
    """The MVP twin as a forecaster: the no-action what-if trajectory and its model-based 95 % interval."""

    name = "twin"

    def __init__(self, settings: TwinSettings, filter_kind: str = "ukf", n_samples: int = 100,
                 insulin_action: str = "basal", calibrate_intervals: bool = True,
                 shared_twin: Callable[[], DigitalTwin] | None = None, step_min: float = 5.0,
                 substep_min: float = 2.5) -> None:
        """``shared_twin``: forecast from a twin someone else keeps up to date (the hub's pipeline updates its
        twin on every reading; a second, identical filter over the same inputs would double the cost). The
        forecaster then never updates it: its ``observe_*`` only feed the interval calibration.
        ``step_min``/``substep_min``: the what-if's output step and Euler substep (see ``models.whatif``)."""
        super().__init__()
        self._shared_twin = shared_twin
        self._own_twin = None if shared_twin is not None else DigitalTwin.from_therapy_settings(
            settings, filter_kind=filter_kind, insulin_action=insulin_action  # type: ignore[arg-type]
        )
        self.n_samples = n_samples
        self.step_min = step_min
        self.substep_min = substep_min
        self.scaler = OnlineIntervalScaler() if calibrate_intervals else None
        self._pending_insulin_u = 0.0
        self._pending_carbs_g = 0.0
        self._rate_since_update: float | None = None
        self._current_rate = settings.basal_u_per_h
        self._calls = 0

    @property
    def twin(self) -> DigitalTwin:
        if self._shared_twin is not None:
            return self._shared_twin()
        assert self._own_twin is not None
        return self._own_twin

    def observe_bolus(self, minute: float, insulin_u: float) -> None:
        super().observe_bolus(minute, insulin_u)
        self._pending_insulin_u += insulin_u

    def observe_carbs(self, minute: float, carbs_g: float) -> None:
        super().observe_carbs(minute, carbs_g)
        self._pending_carbs_g += carbs_g

    def observe_basal(self, minute: float, basal_u_per_h: float) -> None:
        super().observe_basal(minute, basal_u_per_h)
        # the twin takes one rate per interval: time-weighting within one 5-min interval is not worth it
        self._current_rate = self.twin.settings.basal_u_per_h if math.isnan(basal_u_per_h) else basal_u_per_h

    def observe_glucose(self, minute: float, glucose_mg_dl: float) -> None:
        super().observe_glucose(minute, glucose_mg_dl)
        if self.scaler is not None:
            self.scaler.observe(float(minute), float(glucose_mg_dl))
        if self._own_twin is not None:
            self._own_twin.update(glucose_mg_dl, minute, insulin_u=self._pending_insulin_u,
                                  carbs_g=self._pending_carbs_g, basal_u_per_h=self._current_rate)
        self._pending_insulin_u = self._pending_carbs_g = 0.0

    def forecast(self, now_minute: float, horizons_min: Sequence[float] = DEFAULT_HORIZONS_MIN) -> Forecast:
        horizons = np.asarray(horizons_min, dtype=float)
        nan = np.full(horizons.shape, math.nan)
        if self.twin.last_minute is None or not self.twin.initialised:
            return Forecast(self.name, float(now_minute), horizons, nan, nan.copy(), nan.copy())
        offset = max(0.0, float(now_minute) - float(self.twin.last_minute))
        self._calls += 1
        (traj,) = what_if(self.twin, horizon_min=float(horizons.max()) + offset, n_samples=self.n_samples,
                          seed=self._calls, step_min=self.step_min, substep_min=self.substep_min)
        at = horizons + offset
        mean = np.interp(at, traj.minutes, traj.mean_mg_dl)
        lower = np.interp(at, traj.minutes, traj.lower_95_mg_dl)
        upper = np.interp(at, traj.minutes, traj.upper_95_mg_dl)
        if self.scaler is not None:
            self.scaler.record(float(now_minute), horizons, mean, lower, upper)
            scale = np.array([self.scaler.scale(h) for h in horizons])
            lower, upper = mean - scale * (mean - lower), mean + scale * (upper - mean)
        return Forecast(self.name, float(now_minute), horizons, mean, lower, upper)
