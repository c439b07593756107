"""Meal insulin withheld at a low: what is owed, when it is offered, and how the recommender doses it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.recommend import AdviceKind, HypotheticalAction, recommend
from edge.recommend.withheld_meal import (
    OFFER_ABOVE_THRESHOLD_MG_DL,
    OFFER_WITHIN_MIN,
    WithheldMealBolus,
    withheld_after_meal_advice,
)
from edge.safety import default_limits
from models.carb_absorption import absorbed_fraction

from .effect_sum_predictor import MINUTES, EffectSumPredictor
from .test_recommender import ADULT_LIMITS, ADULT_SETTINGS, snapshot

THRESHOLD = ADULT_LIMITS.suspend_threshold_mg_dl


def test_a_meal_that_got_less_than_half_its_insulin_leaves_the_rest_owed() -> None:
    assert withheld_after_meal_advice(60, 10, 0.0, at_min=100) == WithheldMealBolus(6.0, 100)
    assert withheld_after_meal_advice(60, 10, 2.9, at_min=100).owed_u == pytest.approx(3.1)
    assert withheld_after_meal_advice(60, 10, 3.0, at_min=100) is None  # half given: nothing owed
    assert withheld_after_meal_advice(0, 10, 0.0, at_min=100) is None
    # an earlier meal's owed insulin, included in this advice, stays owed if this advice withheld it too
    assert withheld_after_meal_advice(20, 10, 0.0, at_min=100, already_owed_u=4.0).owed_u == pytest.approx(6.0)


def test_owed_insulin_is_offered_only_within_the_hour_and_once_glucose_has_recovered() -> None:
    owed = WithheldMealBolus(4.0, announced_at_min=100)
    gate = THRESHOLD + OFFER_ABOVE_THRESHOLD_MG_DL
    assert owed.owed_now_u(120, gate, THRESHOLD) == 4.0
    assert owed.owed_now_u(120, gate - 1, THRESHOLD) == 0.0  # still low-normal: not yet
    assert owed.owed_now_u(100 + OFFER_WITHIN_MIN + 5, 200, THRESHOLD) == 0.0  # too late: corrections take over
    assert owed.owed_now_u(95, 200, THRESHOLD) == 0.0  # before the meal it belongs to
    assert owed.owed_now_u(120, None, THRESHOLD) == 0.0 and owed.owed_now_u(120, math.nan, THRESHOLD) == 0.0


def test_every_bolus_in_between_counts_against_what_is_owed() -> None:
    owed = WithheldMealBolus(4.0, announced_at_min=100)
    assert owed.after_bolus(1.5) == WithheldMealBolus(2.5, 100)
    assert owed.after_bolus(4.0) is None and owed.after_bolus(6.0) is None


class _EatenCarbsPredictor(EffectSumPredictor):
    """The effect-sum predictor with carbs already eaten (and so in every prediction), as the twin holds them."""

    eaten_g: float = 0.0

    def predict(self, action: HypotheticalAction):
        base = super().predict(action)
        rise = self.isf_mg_dl_per_u / self.carb_ratio_g_per_u * self.eaten_g * absorbed_fraction(MINUTES, 180.0)
        return type(base)(base.minutes, base.mean_mg_dl + rise, base.lower_mg_dl + rise, base.upper_mg_dl + rise,
                          action)


def _advise(glucose: float, owed_u: float, eaten_g: float = 0.0, carbs: float = 0.0, limits=ADULT_LIMITS):
    predictor = _EatenCarbsPredictor(glucose)
    predictor.eaten_g = eaten_g
    return recommend(snapshot(glucose, withheld_meal_bolus_u=owed_u), ADULT_SETTINGS, limits, predictor,
                     announced_carbs_g=carbs), predictor


def test_owed_meal_insulin_is_given_as_meal_insulin_not_as_a_correction_on_top() -> None:
    advice, _ = _advise(150, owed_u=6.0, eaten_g=60)
    assert advice.kind is AdviceKind.MEAL_BOLUS
    assert advice.dose.meal_bolus_u == pytest.approx(6.0) and advice.dose.correction_bolus_u == 0.0
    assert advice.summary == "Bolus 6.00 U for the meal eaten earlier."
    assert advice.numbers["withheld_meal_bolus_u"] == 6.0
    assert any("withheld at the last meal" in reason for reason in advice.reasons)
    # without it, the same state gets only a correction: dosed to the 60-min prediction (the rise the meal has
    # brought by then, not all of it) and half of that now; the rest of the meal waits for later corrections
    correction, _ = _advise(150, owed_u=0.0, eaten_g=60)
    assert correction.kind is AdviceKind.CORRECTION_BOLUS
    assert correction.numbers["correction_by_eventual_u"] < 6.0 and correction.dose.bolus_u < 2.0


def test_owed_meal_insulin_is_trimmed_below_target_and_never_takes_the_prediction_below_the_floor() -> None:
    advice, predictor = _advise(100, owed_u=3.0)  # the carbs turned out smaller than announced: no rise
    assert 0.0 < advice.dose.bolus_u < 3.0
    given = predictor.predict(HypotheticalAction(bolus_u=advice.dose.bolus_u))
    assert np.all(given.mean_mg_dl[given.minutes >= 15] >= THRESHOLD + 10 - 1e-9)
    assert advice.numbers["reduced_for_predicted_minimum_u"] > 0


def test_a_new_meal_adds_its_own_insulin_to_what_is_owed() -> None:
    both, _ = _advise(150, owed_u=2.0, eaten_g=20, carbs=30)
    alone, _ = _advise(150, owed_u=0.0, eaten_g=20, carbs=30)
    assert both.dose.bolus_u == pytest.approx(3.0 + 2.0)
    assert both.summary == "Bolus 5.00 U for 30 g and the meal eaten earlier."
    assert alone.dose.bolus_u < both.dose.bolus_u


def test_owed_insulin_still_passes_every_hard_limit() -> None:
    child = default_limits("child")
    advice, _ = _advise(300, owed_u=40.0, eaten_g=200, limits=child)
    assert advice.dose.bolus_u == pytest.approx(child.max_bolus_u)
    assert any(a.rule == "cap_bolus_to_max_bolus" for a in advice.dose.applied)
    low, _ = _advise(65, owed_u=4.0, eaten_g=40)
    assert low.dose.bolus_u == 0.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_impossible_owed_insulin_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="withheld meal insulin"):
        _advise(150, owed_u=bad)
