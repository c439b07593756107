"""The recommender's view of the what-if engine: "what happens to glucose if ...?".

The twin (``models``) answers through an adapter implementing :class:`Predictor`; tests may use any other
predictor. A prediction is a mean trajectory with a 95% band, every 5 minutes from now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class HypotheticalAction:
    bolus_u: float = 0.0
    carbs_g: float = 0.0
    carbs_absorption_min: float = 180.0
    carbs_delay_min: float = 0.0
    temp_basal_u_per_h: float | None = None
    temp_basal_duration_min: float = 30.0
    # Predict at the therapy settings' insulin sensitivity rather than the twin's estimate: how meals are judged
    # (edge.recommend.sensitivity). Predictors without a sensitivity estimate of their own ignore it.
    at_settings_sensitivity: bool = False

    def describe(self) -> str:
        parts = []
        if self.bolus_u:
            parts.append(f"bolus {self.bolus_u:.2f} U")
        if self.carbs_g:
            delay = f" in {self.carbs_delay_min:.0f} min" if self.carbs_delay_min else ""
            parts.append(f"eat {self.carbs_g:.0f} g{delay}")
        if self.temp_basal_u_per_h is not None:
            parts.append(f"temp basal {self.temp_basal_u_per_h:.2f} U/h for {self.temp_basal_duration_min:.0f} min")
        return ", ".join(parts) or "no action"


@dataclass(frozen=True)
class PredictedGlucose:
    minutes: NDArray[np.float64]
    mean_mg_dl: NDArray[np.float64]
    lower_mg_dl: NDArray[np.float64]
    upper_mg_dl: NDArray[np.float64]
    action: HypotheticalAction = field(default_factory=HypotheticalAction)

    def min_mg_dl(self, within_min: float | None = None) -> float:
        mask = np.ones_like(self.minutes, dtype=bool) if within_min is None else self.minutes <= within_min
        return float(np.min(self.mean_mg_dl[mask]))

    def min_between_mg_dl(self, start_min: float, end_min: float) -> float:
        mask = (self.minutes >= start_min) & (self.minutes <= end_min)
        return float(np.min(self.mean_mg_dl[mask])) if mask.any() else float(self.mean_mg_dl[-1])

    @property
    def eventual_mg_dl(self) -> float:
        return float(self.mean_mg_dl[-1])

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action.describe(),
            "minutes": [float(m) for m in self.minutes],
            "mean_mg_dl": [round(float(v), 1) for v in self.mean_mg_dl],
            "lower_mg_dl": [round(float(v), 1) for v in self.lower_mg_dl],
            "upper_mg_dl": [round(float(v), 1) for v in self.upper_mg_dl],
        }


class Predictor(Protocol):
    def predict(self, action: HypotheticalAction) -> PredictedGlucose:
        """Glucose from now under ``action`` (the horizon should cover the insulin's duration)."""
        ...
