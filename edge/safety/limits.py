"""The hard limits, their age-group defaults and the absolute bounds no configuration may cross.

Defaults per age group follow AndroidAPS' HardLimits (child / teen / adult: max bolus 5 / 10 / 17 U, max IOB
7 / 13 / 22 U, max basal 2 / 5 / 10 U/h). Absolute bounds are the widest a clinician may configure on this
hub: max bolus 25 U (AndroidAPS resistant adult), max IOB 30 U, max basal 12 U/h, suspend threshold 67-110 mg/dL
(Loop's guardrail), CGM data no older than 15 min (Loop). ``shared/reference/peers.md`` lists the sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..therapy_settings import AgeGroup


class LimitOutOfBounds(ValueError):
    """A configured limit lies outside the absolute bounds (or is not a finite number)."""

    def __init__(self, name: str, value: object, low: float, high: float) -> None:
        self.name = name
        self.value = value
        super().__init__(f"safety limit {name}={value!r} must be a finite number between {low:g} and {high:g}")


@dataclass(frozen=True)
class SafetyLimits:
    """Configured limits; constructing one checks it against :data:`ABSOLUTE_BOUNDS`."""

    max_bolus_u: float
    max_iob_u: float
    max_basal_u_per_h: float
    suspend_threshold_mg_dl: float
    max_rescue_carbs_g: float
    max_meal_carbs_g: float = 200.0
    max_cgm_age_min: float = 15.0
    stacking_window_min: float = 60.0
    max_basal_multiple_of_scheduled: float = 4.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            low, high = ABSOLUTE_BOUNDS[spec.name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise LimitOutOfBounds(spec.name, value, low, high)
            if not low <= value <= high:
                raise LimitOutOfBounds(spec.name, value, low, high)


# name -> (lowest, highest) a configuration may set, inclusive.
ABSOLUTE_BOUNDS: dict[str, tuple[float, float]] = {
    "max_bolus_u": (0.0, 25.0),
    "max_iob_u": (0.0, 30.0),
    "max_basal_u_per_h": (0.0, 12.0),
    "suspend_threshold_mg_dl": (67.0, 110.0),
    "max_rescue_carbs_g": (0.0, 60.0),
    "max_meal_carbs_g": (0.0, 250.0),
    "max_cgm_age_min": (5.0, 15.0),
    "stacking_window_min": (30.0, 240.0),
    "max_basal_multiple_of_scheduled": (1.0, 4.0),
}

_DEFAULTS: dict[AgeGroup, SafetyLimits] = {
    AgeGroup.CHILD: SafetyLimits(
        max_bolus_u=5.0, max_iob_u=7.0, max_basal_u_per_h=2.0, suspend_threshold_mg_dl=80.0, max_rescue_carbs_g=20.0,
        max_meal_carbs_g=120.0,
    ),
    AgeGroup.ADOLESCENT: SafetyLimits(
        max_bolus_u=10.0, max_iob_u=13.0, max_basal_u_per_h=5.0, suspend_threshold_mg_dl=75.0,
        max_rescue_carbs_g=30.0, max_meal_carbs_g=150.0,
    ),
    AgeGroup.ADULT: SafetyLimits(
        max_bolus_u=17.0, max_iob_u=22.0, max_basal_u_per_h=10.0, suspend_threshold_mg_dl=70.0,
        max_rescue_carbs_g=40.0, max_meal_carbs_g=200.0,
    ),
}


def default_limits(age_group: AgeGroup | str) -> SafetyLimits:
    """The conservative defaults for an age group (AndroidAPS-style)."""
    return _DEFAULTS[AgeGroup(age_group)]
