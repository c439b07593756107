"""Meal insulin withheld because glucose was low when the meal was announced, offered once glucose recovers.

A meal announced at 75 mg/dL gets no insulin (the hard limit ``no_insulin_when_low``) or only part of it (the
bolus may not deepen the predicted dip). The carbs are eaten anyway; without a later meal bolus, only the
corrections that follow deliver their insulin: half at a time, against a rise the model may not yet see. In the
ten virtual children over 3 days (seed 1), 12 of 81 announced meals got no insulin this way (child#008's
dinners then peaked at 518-591 mg/dL). Clinicians teach the fix: treat the low, then bolus for the meal once
glucose is back up.

The rule: a meal that got less than :data:`WITHHELD_BELOW_FRACTION` of its carbs / CR leaves the rest owed. For
:data:`OFFER_WITHIN_MIN` after the announcement, once CGM glucose is at or above the suspend threshold plus
:data:`OFFER_ABOVE_THRESHOLD_MG_DL`, the recommender is asked again with the owed insulin as meal insulin for
carbs already eaten (``HubSnapshot.withheld_meal_bolus_u``); its prediction already holds those carbs, and the
usual checks (the bolus may not take the prediction below the floor, the hard limits) bound it. Any bolus given
in between counts against what is owed; a meal announced meanwhile adds its own insulin to what is due.

Measured in silico (``glucotwin trial --arms glucotwin --cohort all --days 14 --seeds S --scenario challenging``,
seeds 1-3): the README's safety section gives the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WITHHELD_BELOW_FRACTION = 0.5  # a meal bolus below this fraction of carbs / CR leaves the rest owed
OFFER_WITHIN_MIN = 60.0
OFFER_ABOVE_THRESHOLD_MG_DL = 40.0  # offered only with glucose this far above the suspend threshold


@dataclass(frozen=True)
class WithheldMealBolus:
    """Meal insulin still owed for carbs announced at ``announced_at_min``."""

    owed_u: float
    announced_at_min: float

    def owed_now_u(self, now_min: float, glucose_mg_dl: float | None, suspend_threshold_mg_dl: float) -> float:
        """What to offer now: the owed insulin while the offer is open and glucose has recovered, else 0."""
        if not (0.0 <= now_min - self.announced_at_min <= OFFER_WITHIN_MIN):
            return 0.0
        if glucose_mg_dl is None or not math.isfinite(glucose_mg_dl):
            return 0.0
        if glucose_mg_dl < suspend_threshold_mg_dl + OFFER_ABOVE_THRESHOLD_MG_DL:
            return 0.0
        return self.owed_u

    def after_bolus(self, bolus_u: float) -> WithheldMealBolus | None:
        """What is still owed after a bolus of ``bolus_u`` (None when nothing is)."""
        left = self.owed_u - max(bolus_u, 0.0)
        return WithheldMealBolus(left, self.announced_at_min) if left > 1e-9 else None


def withheld_after_meal_advice(announced_carbs_g: float, carb_ratio_g_per_u: float, bolus_u: float,
                               at_min: float, already_owed_u: float = 0.0) -> WithheldMealBolus | None:
    """The meal insulin a meal's advice left owed (None when it got at least the fraction it needed).

    ``already_owed_u``: what an earlier meal still owed and this advice was asked to include."""
    if announced_carbs_g <= 0 or carb_ratio_g_per_u <= 0:
        return None
    needed_u = announced_carbs_g / carb_ratio_g_per_u + max(already_owed_u, 0.0)
    if bolus_u >= WITHHELD_BELOW_FRACTION * needed_u:
        return None
    return WithheldMealBolus(needed_u - max(bolus_u, 0.0), at_min)
