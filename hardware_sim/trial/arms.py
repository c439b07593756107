"""Baseline trial arms.

``basal-bolus``: standard (open-loop) therapy as a person on a pump does it, after simglucose's BBController
and the usual clinical rules:
* the pump runs the programmed basal (the engine programs it; this arm never touches basal unless LGS is on);
* at each announced meal: ``bolus = carbs / CR``, plus ``(CGM - target) / CF`` when the CGM is above
  ``meal_correction_above_mg_dl`` (150 mg/dL, target 140);
* a correction bolus ``(CGM - target) / CF`` when the CGM is above ``correction_above_mg_dl`` (250 mg/dL) and
  no bolus was given for ``correction_interval_min`` (3 h);
* optional low-glucose suspend: a 0 U/h temp basal for ``suspend_duration_min`` while CGM < ``suspend_below``;
* optional rescue carbs (the "15-15 rule"): ``rescue_carbs_g`` when CGM < 70 and none in the last 15 min.
Missing readings (NaN) never trigger corrections, suspension or rescue carbs; meal boluses still happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardware_sim.trial.observation import Arm, ArmAction, ArmObservation, ArmSetup


@dataclass
class BasalBolusArm:
    name: str = "basal-bolus"
    target_mg_dl: float = 140.0
    meal_correction_above_mg_dl: float = 150.0
    correction_above_mg_dl: float = 250.0
    correction_interval_min: float = 180.0
    low_glucose_suspend: bool = False
    suspend_below_mg_dl: float = 70.0
    suspend_duration_min: float = 30.0
    rescue_carbs: bool = False
    rescue_below_mg_dl: float = 70.0
    rescue_carbs_g: float = 15.0
    rescue_interval_min: float = 15.0

    def start(self, setup: ArmSetup) -> None:
        self._setup = setup
        m = setup.n_rows
        self._last_bolus_min = np.full(m, -np.inf)
        self._last_rescue_min = np.full(m, -np.inf)

    def decide(self, observation: ArmObservation) -> ArmAction:
        s = self._setup
        now = observation.time_min
        cgm = observation.latest_cgm_mg_dl
        have_cgm = ~np.isnan(cgm)
        cgm0 = np.where(have_cgm, cgm, self.target_mg_dl)
        correction_u = np.maximum(cgm0 - self.target_mg_dl, 0.0) / s.correction_factor_mg_dl_per_u
        carbs = observation.carbs_announced_now_g
        meal = carbs > 0
        bolus = np.where(meal, carbs / s.carb_ratio_g_per_u, 0.0)
        bolus += np.where(meal & have_cgm & (cgm0 > self.meal_correction_above_mg_dl), correction_u, 0.0)
        due = (~meal & have_cgm & (cgm0 > self.correction_above_mg_dl)
               & (now - self._last_bolus_min >= self.correction_interval_min))
        bolus = np.where(due, correction_u, bolus)
        self._last_bolus_min = np.where(bolus > 0, now, self._last_bolus_min)

        m = s.n_rows
        action = ArmAction.nothing(m)
        temp_rate, temp_duration = action.temp_basal_u_per_h, action.temp_basal_duration_min
        if self.low_glucose_suspend:
            low = have_cgm & (cgm0 < self.suspend_below_mg_dl)
            temp_rate = np.where(low, 0.0, np.nan)
            temp_duration = np.where(low, self.suspend_duration_min, 0.0)
        rescue = np.zeros(m)
        if self.rescue_carbs:
            give = have_cgm & (cgm0 < self.rescue_below_mg_dl) & (now - self._last_rescue_min >= self.rescue_interval_min)
            rescue = np.where(give, self.rescue_carbs_g, 0.0)
            self._last_rescue_min = np.where(give, now, self._last_rescue_min)
        return ArmAction(bolus, temp_rate, temp_duration, rescue)


ArmFactory = Callable[[], Arm]

_REGISTRY: dict[str, ArmFactory] = {
    "basal-bolus": lambda: BasalBolusArm(),
    "basal-bolus-lgs": lambda: BasalBolusArm(name="basal-bolus-lgs", low_glucose_suspend=True),
    "basal-bolus-rescue": lambda: BasalBolusArm(name="basal-bolus-rescue", low_glucose_suspend=True,
                                                rescue_carbs=True),
}

#: The built-in arms (``arm_names()`` also lists arms registered later).
ARM_NAMES: tuple[str, ...] = tuple(_REGISTRY)


class UnknownArmError(KeyError):
    """No arm is registered under that name."""


def register_arm(name: str, factory: ArmFactory) -> None:
    """Make ``make_arm(name)`` (and ``glucotwin trial --arms name``) build ``factory()``.

    For arms that live elsewhere (OpenAPS, Loop, the hub's recommender through :class:`PerSubjectArm`).
    The factory must be importable by dask workers when the trial runs distributed.
    """
    if not name or "," in name:
        raise ValueError(f"arm names must be non-empty and contain no comma, got {name!r}")
    _REGISTRY[name] = factory


def arm_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make_arm(name: str) -> Arm:
    """A fresh arm by registered name (``basal-bolus``, ``basal-bolus-lgs``, ``basal-bolus-rescue``, ...)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownArmError(f"unknown arm {name!r}; known: {', '.join(_REGISTRY)}") from None
    return factory()


# --- Arms that live in their own modules (GlucoTwin, OpenAPS oref0, Loop; hardware_sim/trial/peers): ---------
# registered by name here so `glucotwin trial --arms oref0,loop,glucotwin` finds them; each module is imported
# only when its arm is built.
from hardware_sim.trial.peers import register_peer_arms as _register_peer_arms  # noqa: E402

_register_peer_arms(register_arm)
