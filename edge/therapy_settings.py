"""A person's therapy settings, validated against the ranges that peer systems accept.

Invalid settings are refused with :class:`InvalidTherapySettings`, naming the field, the value and the
range allowed. Ranges follow Loop's guardrails and AndroidAPS' hard limits (see ``shared/reference/peers.md``):
ISF 10-500 mg/dL/U, carb ratio 2-150 g/U, correction target 80-200 mg/dL, insulin duration 5-9 h.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum


class AgeGroup(StrEnum):
    CHILD = "child"
    ADOLESCENT = "adolescent"
    ADULT = "adult"


class InvalidTherapySettings(ValueError):
    """A therapy setting is missing, not finite, or outside the range the hub accepts."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"therapy setting {field}={value!r} is not allowed: {allowed}")


# field -> (lowest, highest) accepted, inclusive.
THERAPY_SETTING_RANGES: dict[str, tuple[float, float]] = {
    "body_weight_kg": (10.0, 250.0),
    "basal_u_per_h": (0.0, 12.0),
    "insulin_sensitivity_mg_dl_per_u": (10.0, 500.0),
    "carb_ratio_g_per_u": (2.0, 150.0),
    "target_mg_dl": (80.0, 200.0),
    "insulin_peak_min": (45.0, 90.0),
    "insulin_duration_min": (300.0, 540.0),
    "bolus_increment_u": (0.01, 1.0),
    "basal_increment_u_per_h": (0.01, 1.0),
}


@dataclass(frozen=True)
class TherapySettings:
    """What the person's clinician prescribed; the hub doses only from these, never from guesses."""

    age_group: AgeGroup
    body_weight_kg: float
    basal_u_per_h: float
    insulin_sensitivity_mg_dl_per_u: float
    carb_ratio_g_per_u: float
    target_mg_dl: float = 110.0
    insulin_peak_min: float = 75.0
    insulin_duration_min: float = 360.0
    bolus_increment_u: float = 0.05
    basal_increment_u_per_h: float = 0.05

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "age_group", AgeGroup(self.age_group))
        except ValueError:
            raise InvalidTherapySettings(
                "age_group", self.age_group, "one of " + ", ".join(group.value for group in AgeGroup)
            ) from None
        for spec in fields(self):
            if spec.name == "age_group":
                continue
            value = getattr(self, spec.name)
            low, high = THERAPY_SETTING_RANGES[spec.name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidTherapySettings(spec.name, value, "a finite number")
            if not low <= value <= high:
                raise InvalidTherapySettings(spec.name, value, f"between {low:g} and {high:g}")
        if self.insulin_peak_min * 2 >= self.insulin_duration_min:
            raise InvalidTherapySettings(
                "insulin_peak_min", self.insulin_peak_min, "less than half the insulin duration"
            )

    @property
    def carb_sensitivity_mg_dl_per_g(self) -> float:
        """Glucose rise per gram of carbohydrate: CSF = ISF / CR."""
        return self.insulin_sensitivity_mg_dl_per_u / self.carb_ratio_g_per_u
