"""DigitalTwin: the MVP model and its Kalman filter, fed reading by reading, with the guards real CGM needs.

Time is in minutes on the caller's clock (e.g. minutes since an epoch). ``update`` takes one CGM reading
(or ``None`` when it is missing) with the insulin and carbs since the previous call:

* missing and irregular readings: the filter predicts over whatever interval passed (no update when None);
* sensor warm-up (``start_sensor``): readings inside the warm-up window are not used (counted);
* implausible jumps: a reading whose innovation is beyond ``gate_sigma`` standard deviations (and
  ``gate_min_mg_dl``) is rejected and counted; after ``accept_after_rejects`` consecutive rejections the
  twin accepts that the world changed: it inflates the glucose and disturbance variances and updates;
* clock jumps: a reading earlier than the last one re-anchors the clock (counted) without predicting
  backwards; a gap longer than ``reset_after_gap_min`` restarts the fast states from the reading (counted),
  keeping the learnt sensitivity theta.

Insulin: ``basal_u_per_h`` is the rate delivered since the previous call (default: the last one given, at
start the therapy basal); ``insulin_u`` is any further insulin (boluses) since the previous call. Boluses and
announced carbs are applied at the start of the last min(interval, 5) minutes of the interval.

IOB and COB are Loop-style (exponential insulin curve over boluses and basal deviations from the scheduled
basal; piecewise-linear carb absorption), so they can be traced; the model's own gut carbs and insulin
states are in ``TwinEstimate.state``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.carb_absorption import DEFAULT_ABSORPTION_MIN, CarbEntry, carbs_on_board_g
from models.insulin_action import ExponentialInsulinCurve, InsulinCurveError, InsulinDose, insulin_on_board_u
from models.twin import mvp_model as mvp
from models.twin.filter import FilterKind, MVPFilter, initial_covariance
from models.twin.mvp_model import D1, D2, DIST, G, GSC, N_STATES, NOISE, THETA, MVPParameters

STATE_SCHEMA_VERSION = 1
HISTORY_KEEP_MIN = 8 * 60.0
GLUCOSE_VALID_RANGE_MG_DL = (10.0, 1000.0)


class TwinInputError(ValueError):
    """An input to the twin is not finite, negative where it cannot be, or outside a physical range."""


class TwinStateError(ValueError):
    """A serialised twin state is incomplete, of another schema version, or not finite."""


@dataclass(frozen=True)
class TwinSettings:
    """Therapy settings the twin starts from (field names match edge.therapy_settings.TherapySettings)."""

    basal_u_per_h: float
    insulin_sensitivity_mg_dl_per_u: float
    carb_ratio_g_per_u: float
    body_weight_kg: float = mvp.REFERENCE_WEIGHT_KG
    target_mg_dl: float = 110.0
    insulin_peak_min: float = 75.0
    insulin_duration_min: float = 360.0

    @classmethod
    def from_object(cls, settings: Any) -> TwinSettings:
        """From any object with these attribute names (e.g. edge's TherapySettings)."""
        names = cls.__dataclass_fields__
        return cls(**{name: float(getattr(settings, name)) for name in names if hasattr(settings, name)})


@dataclass(frozen=True)
class Estimate:
    """A value with its standard deviation and 95 % interval."""

    value: float
    sd: float
    lower_95: float
    upper_95: float


@dataclass(frozen=True)
class TwinEstimate:
    """What the twin believes now (units in names); every number with its uncertainty where it has one."""

    at_minute: float
    plasma_glucose_mg_dl: Estimate
    sensor_glucose_mg_dl: Estimate
    trend_mg_dl_per_min: Estimate
    insulin_on_board_u: float
    carbs_on_board_g: float
    gut_carbs_g: Estimate
    insulin_sensitivity_factor_mg_dl_per_u: Estimate
    sensitivity_ratio: Estimate
    disturbance_mg_dl_per_min: Estimate
    warming_up: bool
    readings_used: int
    readings_rejected: int
    readings_during_warmup: int
    clock_jumps: int
    resets: int
    state: dict[str, float] = field(default_factory=dict)


def _normal(value: float, var: float) -> Estimate:
    sd = math.sqrt(max(var, 0.0))
    return Estimate(float(value), sd, float(value - 1.96 * sd), float(value + 1.96 * sd))


def _check_number(name: str, value: float, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TwinInputError(f"{name}={value!r} must be a number")
    v = float(value)
    if not math.isfinite(v) or not low <= v <= high:
        raise TwinInputError(f"{name}={value!r} must be finite and within {low:g}..{high:g}")
    return v


class DigitalTwin:
    """The MVP twin of one person, estimated online from CGM, insulin and announced carbs."""

    def __init__(
        self, settings: TwinSettings, params: MVPParameters, filter_kind: FilterKind = "ukf",
        start_minute: float | None = None, *, gate_sigma: float = 4.0, gate_min_mg_dl: float = 25.0,
        accept_after_rejects: int = 3, reset_after_gap_min: float = 12 * 60.0, carb_absorption_min: float =
        DEFAULT_ABSORPTION_MIN,
    ) -> None:
        self.settings = settings
        self.params = params
        self.curve = ExponentialInsulinCurve(settings.insulin_peak_min, settings.insulin_duration_min)
        self.gate_sigma = float(gate_sigma)
        self.gate_min_mg_dl = float(gate_min_mg_dl)
        self.accept_after_rejects = int(accept_after_rejects)
        self.reset_after_gap_min = float(reset_after_gap_min)
        self.carb_absorption_min = float(carb_absorption_min)
        x0 = mvp.steady_state(params, settings.basal_u_per_h, settings.target_mg_dl)
        self.filter = MVPFilter(params, x0, initial_covariance(glucose_sd_mg_dl=40.0), kind=filter_kind)
        self.last_minute: float | None = start_minute
        self.basal_u_per_h = settings.basal_u_per_h
        self.initialised = False  # becomes True at the first accepted reading
        self.warmup_until_minute = -math.inf
        self.consecutive_rejects = 0
        self.counters = {"used": 0, "rejected": 0, "warmup": 0, "clock_jumps": 0, "resets": 0, "missing": 0}
        self.doses: list[InsulinDose] = []
        self.carbs: list[CarbEntry] = []

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_therapy_settings(
        cls, settings: TwinSettings | Any = None, filter_kind: FilterKind = "ukf", start_minute: float | None = None,
        insulin_action: str = "basal", **overrides: Any,
    ) -> DigitalTwin:
        """A twin from therapy settings (a TwinSettings, any object with its field names, or keywords).

        ``insulin_action``: "basal" (insulin acts relative to the scheduled basal, the default) or "zero"
        (Kanderian's MVP as published); see ``mvp_model``. Other keywords go to the constructor's guards.
        """
        if settings is None:
            twin_settings = TwinSettings(**overrides)
            overrides = {}
        elif isinstance(settings, TwinSettings):
            twin_settings = settings
        else:
            twin_settings = TwinSettings.from_object(settings)
        try:
            params = mvp.from_therapy_settings(
                twin_settings.basal_u_per_h, twin_settings.insulin_sensitivity_mg_dl_per_u,
                twin_settings.carb_ratio_g_per_u, twin_settings.body_weight_kg, twin_settings.target_mg_dl,
                insulin_action,
            )
            return cls(twin_settings, params, filter_kind, start_minute, **overrides)
        except (mvp.ModelParameterError, InsulinCurveError) as error:
            raise TwinInputError(str(error)) from error

    # -- inputs ----------------------------------------------------------------------------------------------
    def start_sensor(self, at_minute: float, warmup_min: float = 120.0) -> None:
        """A new sensor session: readings before ``at_minute + warmup_min`` are not used."""
        at = _check_number("at_minute", at_minute, -math.inf)
        self.warmup_until_minute = at + _check_number("warmup_min", warmup_min, 0.0, 24 * 60.0)

    def update(
        self, glucose_mg_dl: float | None, at_minute: float, insulin_u: float = 0.0, carbs_g: float = 0.0,
        basal_u_per_h: float | None = None,
    ) -> TwinEstimate:
        """Advance to ``at_minute`` with the inputs since the previous call, then use the reading if plausible."""
        at = _check_number("at_minute", at_minute, -math.inf)
        insulin_u = _check_number("insulin_u", insulin_u, 0.0, 100.0)
        carbs_g = _check_number("carbs_g", carbs_g, 0.0, 1000.0)
        if basal_u_per_h is not None:
            basal_u_per_h = _check_number("basal_u_per_h", basal_u_per_h, 0.0, 50.0)
        if glucose_mg_dl is not None:
            glucose_mg_dl = _check_number("glucose_mg_dl", glucose_mg_dl, *GLUCOSE_VALID_RANGE_MG_DL)

        rate = self.basal_u_per_h if basal_u_per_h is None else basal_u_per_h
        last = at if self.last_minute is None else self.last_minute
        dt = at - last
        if dt < 0:
            self.counters["clock_jumps"] += 1
            dt = 0.0
        if dt > self.reset_after_gap_min and self.initialised:
            self.counters["resets"] += 1
            self._restart_fast_states(rate)
            dt = 0.0
        self._log_inputs(at, dt, insulin_u, carbs_g, rate)
        self._advance(dt, rate, insulin_u, carbs_g)
        self.basal_u_per_h = rate
        self.last_minute = at
        self._prune_history(at)

        if glucose_mg_dl is None:
            self.counters["missing"] += 1
        elif at < self.warmup_until_minute:
            self.counters["warmup"] += 1
        elif not self.initialised:
            self._anchor_to(glucose_mg_dl)
            self.initialised = True
            self.counters["used"] += 1
        else:
            self._gated_update(glucose_mg_dl)
        return self.estimate()

    def _advance(self, dt: float, rate_u_per_h: float, insulin_u: float, carbs_g: float) -> None:
        infusion = mvp.basal_mu_per_min(rate_u_per_h)
        if insulin_u == 0 and carbs_g == 0:
            self.filter.predict(dt, infusion)
            return
        tail = min(dt, 5.0)
        if dt - tail > 0:
            self.filter.predict(dt - tail, infusion)
        self.filter.add_impulse(insulin_u=insulin_u, carbs_g=carbs_g)
        self.filter.predict(tail, infusion)

    def _log_inputs(self, at: float, dt: float, insulin_u: float, carbs_g: float, rate: float) -> None:
        start = at - min(dt, 5.0)
        if insulin_u > 0:
            self.doses.append(InsulinDose(start, insulin_u))
        deviation = rate - self.settings.basal_u_per_h
        if dt > 0 and deviation != 0:
            self.doses.append(InsulinDose.basal_deviation(at - dt, rate, self.settings.basal_u_per_h, dt))
        if carbs_g > 0:
            self.carbs.append(CarbEntry(start, carbs_g, self.carb_absorption_min))

    def _prune_history(self, now: float) -> None:
        keep_after = now - HISTORY_KEEP_MIN
        self.doses = [d for d in self.doses if d.start_min + d.duration_min >= keep_after]
        self.carbs = [c for c in self.carbs if c.at_min + c.absorption_min >= keep_after]

    def _anchor_to(self, glucose_mg_dl: float) -> None:
        """Put glucose (plasma and sensor) at the reading, with a reading-sized uncertainty."""
        x, P = self.filter.x, self.filter.P
        x[G] = x[GSC] = glucose_mg_dl
        x[NOISE] = 0.0
        for i in (G, GSC):
            P[i, :] = 0.0
            P[:, i] = 0.0
        P[G, G] = 15.0**2
        P[GSC, GSC] = 8.0**2
        P[G, GSC] = P[GSC, G] = 8.0**2
        self.filter.set_state(x, P)

    def _restart_fast_states(self, rate_u_per_h: float) -> None:
        """After a long gap: basal steady state for insulin, no carbs, keep theta and its variance."""
        x_old, P_old = self.filter.x, self.filter.P
        x = mvp.steady_state(self.params, rate_u_per_h, float(x_old[G]))
        x[THETA] = x_old[THETA]
        P = initial_covariance(glucose_sd_mg_dl=60.0)
        P[THETA, THETA] = P_old[THETA, THETA]
        self.filter.set_state(x, P)
        self.initialised = False
        self.doses.clear()
        self.carbs.clear()

    def _gated_update(self, glucose_mg_dl: float) -> None:
        innovation = self.filter.innovation(glucose_mg_dl)
        implausible = (
            abs(innovation.normalised) > self.gate_sigma and abs(innovation.residual_mg_dl) > self.gate_min_mg_dl
        )
        if implausible:
            self.consecutive_rejects += 1
            self.counters["rejected"] += 1
            if self.consecutive_rejects < self.accept_after_rejects:
                return
            # the readings agree with each other, not with the model: the world changed (meal, new sensor)
            jump = innovation.residual_mg_dl**2
            self.filter.inflate([G, GSC, DIST], [jump, jump, 1.0])
        self.consecutive_rejects = 0
        self.filter.update(glucose_mg_dl)
        self.counters["used"] += 1

    # -- outputs ---------------------------------------------------------------------------------------------
    def estimate(self) -> TwinEstimate:
        x, P = self.filter.x, self.filter.P
        p = self.params
        now = self.last_minute if self.last_minute is not None else 0.0
        # sensor-glucose trend dGsc/dt = (G - Gsc)/tsc, linear in the state
        a = np.zeros(N_STATES)
        a[G], a[GSC] = 1.0 / p.tsc_min, -1.0 / p.tsc_min
        trend_var = float(a @ P @ a)
        theta, theta_sd = float(x[THETA]), math.sqrt(max(P[THETA, THETA], 0.0))
        target = self.settings.target_mg_dl
        isf = float(mvp.model_isf_mg_dl_per_u(p, target, theta))
        isf_low = float(mvp.model_isf_mg_dl_per_u(p, target, theta - 1.96 * theta_sd))
        isf_high = float(mvp.model_isf_mg_dl_per_u(p, target, theta + 1.96 * theta_sd))
        gut = float(x[D1] + x[D2])
        gut_var = float(P[D1, D1] + P[D2, D2] + 2 * P[D1, D2])
        ratio = math.exp(theta)
        return TwinEstimate(
            at_minute=float(now),
            plasma_glucose_mg_dl=_normal(x[G], P[G, G]),
            sensor_glucose_mg_dl=_normal(x[GSC], P[GSC, GSC]),
            trend_mg_dl_per_min=_normal(float(a @ x), trend_var),
            insulin_on_board_u=float(insulin_on_board_u(self.doses, [now], self.curve)[0]),
            carbs_on_board_g=float(carbs_on_board_g(self.carbs, [now])[0]),
            gut_carbs_g=_normal(gut, gut_var),
            insulin_sensitivity_factor_mg_dl_per_u=Estimate(isf, isf * theta_sd, isf_low, isf_high),
            sensitivity_ratio=Estimate(
                ratio, ratio * theta_sd, math.exp(theta - 1.96 * theta_sd), math.exp(theta + 1.96 * theta_sd)
            ),
            disturbance_mg_dl_per_min=_normal(x[DIST], P[DIST, DIST]),
            warming_up=bool(now < self.warmup_until_minute),
            readings_used=self.counters["used"],
            readings_rejected=self.counters["rejected"],
            readings_during_warmup=self.counters["warmup"],
            clock_jumps=self.counters["clock_jumps"],
            resets=self.counters["resets"],
            state={name: float(v) for name, v in zip(mvp.STATE_NAMES, x)},
        )

    @property
    def x(self) -> NDArray[np.float64]:
        return self.filter.x

    @property
    def P(self) -> NDArray[np.float64]:
        return self.filter.P

    # -- persistence -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (plain floats and lists) that ``from_dict`` restores exactly."""
        return {
            "schema_version": STATE_SCHEMA_VERSION,
            "filter_kind": self.filter.kind,
            "settings": {k: float(v) for k, v in self.settings.__dict__.items()},
            "params": self.params.to_dict(),
            "x": [float(v) for v in self.filter.x],
            "P": [[float(v) for v in row] for row in self.filter.P],
            "last_minute": self.last_minute,
            "basal_u_per_h": self.basal_u_per_h,
            "initialised": self.initialised,
            "warmup_until_minute": None if math.isinf(self.warmup_until_minute) else self.warmup_until_minute,
            "consecutive_rejects": self.consecutive_rejects,
            "counters": dict(self.counters),
            "doses": [[d.start_min, d.units, d.duration_min] for d in self.doses],
            "carbs": [[c.at_min, c.grams, c.absorption_min] for c in self.carbs],
            "guards": {
                "gate_sigma": self.gate_sigma, "gate_min_mg_dl": self.gate_min_mg_dl,
                "accept_after_rejects": self.accept_after_rejects, "reset_after_gap_min": self.reset_after_gap_min,
                "carb_absorption_min": self.carb_absorption_min,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigitalTwin:
        try:
            if data["schema_version"] != STATE_SCHEMA_VERSION:
                raise TwinStateError(f"twin state schema {data['schema_version']!r}, expected {STATE_SCHEMA_VERSION}")
            guards = data["guards"]
            twin = cls(
                TwinSettings(**data["settings"]), MVPParameters.from_dict(data["params"]), data["filter_kind"],
                data["last_minute"], gate_sigma=guards["gate_sigma"], gate_min_mg_dl=guards["gate_min_mg_dl"],
                accept_after_rejects=guards["accept_after_rejects"],
                reset_after_gap_min=guards["reset_after_gap_min"], carb_absorption_min=guards["carb_absorption_min"],
            )
            twin.filter.set_state(np.array(data["x"], dtype=float), np.array(data["P"], dtype=float))
            twin.basal_u_per_h = float(data["basal_u_per_h"])
            twin.initialised = bool(data["initialised"])
            warm = data["warmup_until_minute"]
            twin.warmup_until_minute = -math.inf if warm is None else float(warm)
            twin.consecutive_rejects = int(data["consecutive_rejects"])
            twin.counters.update({k: int(v) for k, v in data["counters"].items()})
            twin.doses = [InsulinDose(*map(float, d)) for d in data["doses"]]
            twin.carbs = [CarbEntry(*map(float, c)) for c in data["carbs"]]
        except TwinStateError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise TwinStateError(f"invalid twin state: {error}") from error
        return twin
