"""What the recommender sees: only what a real hub knows at this moment."""

from __future__ import annotations

from dataclasses import dataclass

from ..safety import CgmQuality


@dataclass(frozen=True)
class HubSnapshot:
    glucose_mg_dl: float | None
    glucose_age_min: float | None
    trend_mg_dl_min: float | None
    iob_u: float | None
    cob_g: float | None
    minutes_since_last_bolus: float | None
    scheduled_basal_u_per_h: float
    cgm_quality: CgmQuality = CgmQuality()
    pump_supports_temp_basal: bool = True
    estimated_isf_mg_dl_per_u: float | None = None  # the twin's current estimate, if it has one
    total_daily_insulin_u: float | None = None  # insulin delivered over the last 24 h (pump history)
    # Meal insulin withheld at a recent meal because glucose was low, for carbs already eaten and already in the
    # twin, offered now (edge.recommend.withheld_meal); 0 when none is due.
    withheld_meal_bolus_u: float = 0.0
