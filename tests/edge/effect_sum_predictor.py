"""A small, transparent predictor for recommender tests: current glucose plus insulin and carb effects.

It is deliberately not the twin: the recommender must behave for any sensible predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.recommend import HypotheticalAction, PredictedGlucose
from models.carb_absorption import absorbed_fraction
from models.insulin_action import ExponentialInsulinCurve

MINUTES = np.arange(0.0, 365.0, 5.0)
CURVE = ExponentialInsulinCurve(75.0, 360.0)


@dataclass
class EffectSumPredictor:
    glucose_mg_dl: float
    isf_mg_dl_per_u: float = 50.0
    carb_ratio_g_per_u: float = 10.0
    iob_u: float = 0.0
    scheduled_basal_u_per_h: float = 1.0
    trend_mg_dl_min: float = 0.0

    def predict(self, action: HypotheticalAction) -> PredictedGlucose:
        used_fraction = 1.0 - CURVE.iob_fraction(MINUTES)
        insulin_u = (self.iob_u + action.bolus_u) * used_fraction
        if action.temp_basal_u_per_h is not None:
            extra_u = (action.temp_basal_u_per_h - self.scheduled_basal_u_per_h) * action.temp_basal_duration_min / 60
            insulin_u = insulin_u + extra_u * used_fraction
        carbs = action.carbs_g * absorbed_fraction(MINUTES - action.carbs_delay_min, action.carbs_absorption_min)
        momentum = self.trend_mg_dl_min * np.minimum(MINUTES, 30.0)
        mean = self.glucose_mg_dl + momentum - self.isf_mg_dl_per_u * insulin_u
        mean = mean + self.isf_mg_dl_per_u / self.carb_ratio_g_per_u * carbs
        mean = np.maximum(mean, 39.0)
        half_width = 10.0 + 0.25 * MINUTES
        return PredictedGlucose(MINUTES, mean, mean - half_width, mean + half_width, action)
