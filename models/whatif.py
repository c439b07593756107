"""What-if prediction: glucose trajectories under hypothetical actions, from the twin's state and covariance.

Method (sampled propagation): draw ``n_samples`` states from N(x, P) (parameter uncertainty included, since
theta is a state), propagate each through the MVP model (Euler, 2.5-min substeps) under the scenario's
inputs, adding the filter's process noise (per-minute Q times the step) at every ``step_min`` output step;
a CGM-comparable output ("sensor") adds the AR(1) sensor-noise state and the white measurement noise,
"plasma" is G itself. Mean and the 2.5/97.5 % sample quantiles give the 95 % prediction interval.
The same random draws are used for every scenario in one ``simulate`` / ``what_if`` call (common random
numbers), so the differences between scenarios come from the actions, not from the sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from models.twin import mvp_model as mvp
from models.twin.filter import Q_PER_MIN_DEFAULT, R_DEFAULT_MG_DL2
from models.twin.mvp_model import D1, G, GSC, ISC, N_STATES, NOISE, THETA, MVPParameters
from models.twin.twin import DigitalTwin

Quantity = Literal["sensor", "plasma"]


class ScenarioError(ValueError):
    """A hypothetical action is negative, not finite, or beyond plausible limits."""


@dataclass(frozen=True)
class Scenario:
    """Actions taken now: a bolus, carbs eaten (now, or ``carbs_delay_min`` from now: eating after a pre-bolus),
    and/or a temporary basal rate for a duration."""

    bolus_u: float = 0.0
    carbs_g: float = 0.0
    temp_basal_u_per_h: float | None = None
    temp_basal_duration_min: float = 0.0
    label: str = ""
    carbs_delay_min: float = 0.0

    def __post_init__(self) -> None:
        for name, value, high in (("bolus_u", self.bolus_u, 50.0), ("carbs_g", self.carbs_g, 500.0),
                                  ("temp_basal_duration_min", self.temp_basal_duration_min, 24 * 60.0),
                                  ("carbs_delay_min", self.carbs_delay_min, 24 * 60.0)):
            if not (math.isfinite(value) and 0 <= value <= high):
                raise ScenarioError(f"{name}={value!r} must be within 0..{high:g}")
        if self.temp_basal_u_per_h is not None and not (
            math.isfinite(self.temp_basal_u_per_h) and 0 <= self.temp_basal_u_per_h <= 35.0
        ):
            raise ScenarioError(f"temp_basal_u_per_h={self.temp_basal_u_per_h!r} must be within 0..35")

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        parts = []
        if self.bolus_u:
            parts.append(f"bolus {self.bolus_u:g} U")
        if self.carbs_g:
            parts.append(f"eat {self.carbs_g:g} g" + (f" in {self.carbs_delay_min:g} min" if self.carbs_delay_min else ""))
        if self.temp_basal_u_per_h is not None and self.temp_basal_duration_min > 0:
            parts.append(f"temp basal {self.temp_basal_u_per_h:g} U/h for {self.temp_basal_duration_min:g} min")
        return " + ".join(parts) or "no action"


NO_ACTION = Scenario(label="no action")


@dataclass(frozen=True)
class Trajectory:
    """A predicted glucose trajectory with its 95 % interval (minutes from now; 0 = now)."""

    scenario: Scenario
    quantity: Quantity
    minutes: NDArray[np.float64]
    mean_mg_dl: NDArray[np.float64]
    lower_95_mg_dl: NDArray[np.float64]
    upper_95_mg_dl: NDArray[np.float64]

    @property
    def min_mg_dl(self) -> float:
        """Lowest mean predicted glucose over the horizon."""
        return float(self.mean_mg_dl.min())

    @property
    def min_lower_95_mg_dl(self) -> float:
        """Lowest lower 95 % bound over the horizon (the cautious minimum)."""
        return float(self.lower_95_mg_dl.min())

    @property
    def eventual_mg_dl(self) -> float:
        """Mean predicted glucose at the end of the horizon."""
        return float(self.mean_mg_dl[-1])

    def at(self, minute: float) -> tuple[float, float, float]:
        """(mean, lower, upper) interpolated at ``minute`` from now."""
        return (float(np.interp(minute, self.minutes, self.mean_mg_dl)),
                float(np.interp(minute, self.minutes, self.lower_95_mg_dl)),
                float(np.interp(minute, self.minutes, self.upper_95_mg_dl)))


def _draw_states(
    x: NDArray[np.float64], P: NDArray[np.float64], n: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    P = 0.5 * (P + P.T)
    w, V = np.linalg.eigh(P)
    root = V * np.sqrt(np.clip(w, 0.0, None))
    samples = x + rng.standard_normal((n, N_STATES)) @ root.T
    samples[:, D1:ISC + 2] = np.maximum(samples[:, D1:ISC + 2], 0.0)
    samples[:, G] = np.clip(samples[:, G], mvp.GLUCOSE_FLOOR_MG_DL, mvp.GLUCOSE_CEILING_MG_DL)
    samples[:, GSC] = np.clip(samples[:, GSC], mvp.GLUCOSE_FLOOR_MG_DL, mvp.GLUCOSE_CEILING_MG_DL)
    samples[:, THETA] = np.clip(samples[:, THETA], -3.0, 3.0)
    return samples


@dataclass(frozen=True)
class Draws:
    """The random numbers of one prediction: initial states, per-block process noise, carb-count factors and
    white sensor noise. Reusing them across calls gives common random numbers (and skips redrawing)."""

    base: NDArray[np.float64]
    process: NDArray[np.float64]
    carb_factor: NDArray[np.float64]
    white: NDArray[np.float64]


def draw(
    x: NDArray[np.float64], P: NDArray[np.float64], n_samples: int, n_blocks: int, step_min: float, seed: int = 0,
    carb_count_cv: float = 0.2, q_per_min: NDArray[np.float64] | None = None, r_mg_dl2: float = R_DEFAULT_MG_DL2,
) -> Draws:
    if n_samples < 2:
        raise ScenarioError("n_samples must be >= 2")
    rng = np.random.default_rng(seed)
    base = _draw_states(np.asarray(x, float), np.asarray(P, float), n_samples, rng)
    q = np.asarray(Q_PER_MIN_DEFAULT if q_per_min is None else q_per_min, dtype=float)
    process = rng.standard_normal((n_blocks, n_samples, N_STATES)) * np.sqrt(q * step_min)
    carb_factor = np.clip(1.0 + carb_count_cv * rng.standard_normal(n_samples), 0.0, None)
    white = rng.standard_normal((n_samples,)) * math.sqrt(r_mg_dl2)
    return Draws(base, process, carb_factor, white)


def blocks(horizon_min: float, step_min: float) -> int:
    """Output steps of ``step_min`` needed to cover ``horizon_min``."""
    if not (math.isfinite(horizon_min) and 0 < horizon_min <= 24 * 60):
        raise ScenarioError(f"horizon_min={horizon_min!r} must be within (0, 1440]")
    return int(math.ceil(horizon_min / float(step_min) - 1e-9))


def simulate(
    x: NDArray[np.float64], P: NDArray[np.float64], params: MVPParameters, basal_u_per_h: float,
    scenarios: Sequence[Scenario] = (NO_ACTION,), horizon_min: float = 180.0, step_min: float = 5.0,
    n_samples: int = 200, quantity: Quantity = "sensor", seed: int = 0, carb_count_cv: float = 0.2,
    q_per_min: NDArray[np.float64] | None = None, r_mg_dl2: float = R_DEFAULT_MG_DL2, substep_min: float = 2.5,
    draws: Draws | None = None,
) -> list[Trajectory]:
    """Trajectories for each scenario from state ``x`` with covariance ``P`` (pure; no twin needed).

    ``draws`` (from :func:`draw` with the same ``n_samples``, horizon and step) replaces the random numbers
    the call would draw from ``seed``: equal arguments give equal draws, so passing them changes nothing
    but the cost."""
    every = float(step_min)
    n_blocks = blocks(horizon_min, every)
    if draws is None:
        draws = draw(x, P, n_samples, n_blocks, every, seed, carb_count_cv, q_per_min, r_mg_dl2)
    elif draws.process.shape[:2] != (n_blocks, n_samples):
        raise ScenarioError("draws were made for another horizon, step or sample count")
    out_minutes = np.arange(n_blocks + 1, dtype=float) * every
    trajectories = []
    for scenario in scenarios:
        s = draws.base.copy()
        s[:, ISC] += scenario.bolus_u * 1000.0 / (params.t1_min * params.ci_dl_per_min)
        carbs_at = scenario.carbs_delay_min if scenario.carbs_g else math.inf
        temp_end = scenario.temp_basal_duration_min if scenario.temp_basal_u_per_h is not None else 0.0
        temp_rate = scenario.temp_basal_u_per_h if scenario.temp_basal_u_per_h is not None else basal_u_per_h
        values = np.empty((n_blocks + 1, n_samples))
        values[0] = _observe(s, quantity, draws.white)
        for block in range(n_blocks):
            start, end = block * every, (block + 1) * every
            # piecewise-constant insulin (the temp rate until temp_end, the basal after it); the carbs enter the
            # gut at carbs_at
            if start < temp_end < end or start < carbs_at < end:  # a change inside the block: split it there
                cuts = sorted({start, end} | {t for t in (temp_end, carbs_at) if start < t < end})
            else:
                cuts = [start, end]
            for seg_start, seg_end in zip(cuts[:-1], cuts[1:]):
                if seg_start >= carbs_at:
                    s[:, D1] += scenario.carbs_g * draws.carb_factor
                    carbs_at = math.inf
                rate = temp_rate if seg_start < temp_end else basal_u_per_h
                s = mvp.step(s, seg_end - seg_start, params, mvp.basal_mu_per_min(float(rate)), substep_min=substep_min)
            s += draws.process[block]
            values[block + 1] = _observe(s, quantity, draws.white)
        lower, upper = np.quantile(values, (0.025, 0.975), axis=1)
        trajectories.append(Trajectory(
            scenario=scenario, quantity=quantity, minutes=out_minutes, mean_mg_dl=values.mean(axis=1),
            lower_95_mg_dl=lower, upper_95_mg_dl=upper,
        ))
    return trajectories


def _observe(s: NDArray[np.float64], quantity: Quantity, white: NDArray[np.float64]) -> NDArray[np.float64]:
    if quantity == "plasma":
        return s[:, G].copy()
    reading = s[:, GSC] + s[:, NOISE]
    reading += white
    return np.minimum(np.maximum(reading, mvp.GLUCOSE_FLOOR_MG_DL, out=reading), mvp.GLUCOSE_CEILING_MG_DL, out=reading)


def what_if(twin: DigitalTwin, *scenarios: Scenario, horizon_min: float = 180.0, n_samples: int = 200,
            quantity: Quantity = "sensor", seed: int = 0, basal_u_per_h: float | None = None,
            step_min: float = 5.0, substep_min: float = 2.5) -> list[Trajectory]:
    """Trajectories for each scenario (default: no action) from a ``DigitalTwin``'s current belief.

    ``basal_u_per_h`` is the rate delivered when no temp basal of the scenario applies; by default the rate
    the twin was last told (so a running temp basal is assumed to continue). ``step_min`` is the output
    resolution, ``substep_min`` the Euler substep (at most 5 min: the sensor lag's time constant is 5-10 min).
    """
    chosen = scenarios or (NO_ACTION,)
    rate = twin.basal_u_per_h if basal_u_per_h is None else float(basal_u_per_h)
    if not (math.isfinite(rate) and 0 <= rate <= 35.0):
        raise ScenarioError(f"basal_u_per_h={basal_u_per_h!r} must be within 0..35")
    return simulate(
        twin.x, twin.P, twin.params, rate, chosen, horizon_min=horizon_min, step_min=step_min, n_samples=n_samples,
        quantity=quantity, seed=seed, q_per_min=twin.filter.q_per_min, r_mg_dl2=twin.filter.r_mg_dl2,
        substep_min=substep_min,
    )
