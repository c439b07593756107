"""The recommender: arithmetic it explains, advice kinds, hard limits, and monotonicity under hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.recommend import AdviceKind, HubSnapshot, HypotheticalAction, PredictedGlucose, recommend
from edge.safety import CgmQuality, default_limits, limit_violations
from edge.safety.rules import DosingContext
from edge.therapy_settings import TherapySettings

from .effect_sum_predictor import EffectSumPredictor

ADULT_SETTINGS = TherapySettings(
    age_group="adult", body_weight_kg=70, basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50,
    carb_ratio_g_per_u=10, target_mg_dl=110,
)
ADULT_LIMITS = default_limits("adult")


def snapshot(glucose: float, **kw) -> HubSnapshot:
    values = dict(glucose_mg_dl=glucose, glucose_age_min=2.0, trend_mg_dl_min=0.0, iob_u=0.0, cob_g=0.0,
                  minutes_since_last_bolus=None, scheduled_basal_u_per_h=1.0)
    values.update(kw)
    return HubSnapshot(**values)


def advise(glucose: float, carbs: float = 0.0, iob: float = 0.0, **kw):
    predictor = EffectSumPredictor(glucose, iob_u=iob, trend_mg_dl_min=kw.get("trend_mg_dl_min", 0.0))
    return recommend(snapshot(glucose, iob_u=iob, **kw), ADULT_SETTINGS, ADULT_LIMITS, predictor,
                     announced_carbs_g=carbs)


def test_meal_at_target_gets_carbs_over_ratio() -> None:
    advice = advise(110, carbs=60)
    assert advice.kind is AdviceKind.MEAL_BOLUS
    assert advice.dose.bolus_u == pytest.approx(6.0)
    assert advice.numbers["carb_ratio_g_per_u"] == 10
    assert advice.numbers["meal_bolus_by_ratio_u"] == pytest.approx(6.0)
    assert any("60 g / 10 g/U" in reason for reason in advice.reasons)
    assert advice.without is not None and advice.with_advice is not None
    assert advice.timing is not None


def test_pre_bolus_timing_is_given_as_a_number_too() -> None:
    early = advise(150, carbs=60)
    assert early.timing == "Bolus about 15 min before eating." and early.eat_after_min == 15.0
    assert early.to_dict()["eat_after_min"] == 15.0
    falling = advise(150, carbs=60, trend_mg_dl_min=-2.0)
    assert falling.eat_after_min == 0.0 and "as you start eating" in (falling.timing or "")
    low_normal = advise(95, carbs=60)
    assert low_normal.eat_after_min == 0.0
    assert advise(260).eat_after_min == 0.0  # no meal, no timing


def test_correction_is_computed_from_eventual_glucose() -> None:
    advice = advise(260)
    assert advice.kind is AdviceKind.CORRECTION_BOLUS
    assert advice.numbers["correction_by_eventual_u"] == pytest.approx(3.0)  # (260 - 110) / 50
    # half of it now; the rest only if the coming readings still call for it
    assert advice.dose.bolus_u == pytest.approx(1.5)
    assert advice.numbers["correction_held_back_u"] == pytest.approx(1.5)


def test_insulin_on_board_reduces_the_correction() -> None:
    advice = advise(260, iob=2.0)
    assert advice.numbers["correction_by_eventual_u"] == pytest.approx(1.0, abs=0.06)
    assert advice.dose.bolus_u + advice.numbers.get("correction_held_back_u", 0.0) == pytest.approx(1.0, abs=0.06)


def test_small_correction_becomes_a_temp_basal() -> None:
    advice = advise(140)
    assert advice.kind is AdviceKind.TEMP_BASAL
    assert advice.dose.bolus_u == 0.0
    assert advice.dose.temp_basal_u_per_h == pytest.approx(1.0 + 0.6 * 2, abs=0.06)


def test_a_correction_soon_after_a_bolus_becomes_a_capped_high_temp() -> None:
    # 3 U of correction 20 min after a bolus: the stacking guard forbids a bolus, so the hub raises the basal
    # instead, capped at 4x the scheduled 1 U/h (max basal 10 U/h would allow more).
    advice = advise(260, minutes_since_last_bolus=20.0)
    assert advice.kind is AdviceKind.TEMP_BASAL
    assert advice.dose.bolus_u == 0.0
    assert advice.dose.temp_basal_u_per_h == pytest.approx(4.0)
    assert any("given as a temp basal" in reason for reason in advice.reasons)
    assert [a.rule for a in advice.dose.applied] == ["cap_temp_basal"]
    # Outside the stacking window the same need is a bolus.
    assert advise(260, minutes_since_last_bolus=90.0).dose.bolus_u == pytest.approx(1.5)


def test_a_correction_bolus_gives_half_the_need_and_never_more() -> None:
    for glucose in (190.0, 260.0, 400.0):
        advice = advise(glucose)
        need = advice.numbers["correction_by_eventual_u"]
        assert advice.dose.bolus_u <= 0.5 * need + 1e-9
        assert advice.dose.bolus_u >= 0.5 * need - 0.05 - 1e-9  # rounded down to the 0.05 U increment


def test_a_high_temp_after_a_bolus_respects_max_iob() -> None:
    advice = advise(260, iob=ADULT_LIMITS.max_iob_u - 0.5, minutes_since_last_bolus=20.0)
    # 0.5 U of room over 30 min: at most 1 U/h above the scheduled 1 U/h
    assert advice.dose.temp_basal_u_per_h is None or advice.dose.temp_basal_u_per_h <= 2.0 + 1e-9


def test_low_glucose_gets_rescue_carbs_and_a_suspend() -> None:
    advice = advise(62)
    assert advice.kind is AdviceKind.RESCUE_CARBS
    assert 5 <= advice.dose.rescue_carbs_g <= ADULT_LIMITS.max_rescue_carbs_g
    assert advice.dose.bolus_u == 0.0
    assert advice.dose.temp_basal_u_per_h == 0.0
    assert advice.with_advice is not None and advice.with_advice.min_between_mg_dl(30, 90) >= 80


def test_predicted_low_from_insulin_on_board_gets_carbs_when_suspending_is_not_enough() -> None:
    advice = advise(100, iob=5.0)
    assert advice.kind is AdviceKind.RESCUE_CARBS
    assert advice.numbers["predicted_min_with_suspension_mg_dl"] < 70
    # oref0-style sizing: (80 - lowest predicted with the suspension) / (ISF / CR), up to the next 5 g
    basis = advice.numbers["rescue_basis_min_mg_dl"]
    assert advice.dose.rescue_carbs_g == 5 * math.ceil((80 - basis) / (50 / 10) / 5)
    assert advice.dose.temp_basal_u_per_h == 0.0


def test_a_predicted_low_that_suspending_prevents_gets_no_carbs() -> None:
    advice = advise(100, iob=3.0)
    assert advice.kind is AdviceKind.SUSPEND
    assert advice.dose.rescue_carbs_g == 0.0 and advice.dose.temp_basal_u_per_h == 0.0
    assert advice.numbers["predicted_min_with_suspension_mg_dl"] >= 70 > advice.without.min_mg_dl(60)
    assert advice.with_advice.min_mg_dl(60) >= 70


def test_a_low_already_here_gets_at_least_fifteen_grams() -> None:
    advice = advise(68)
    assert advice.kind is AdviceKind.RESCUE_CARBS
    assert advice.dose.rescue_carbs_g >= 15


def test_meal_bolus_is_reduced_when_the_prediction_would_go_low() -> None:
    advice = advise(120, carbs=60, iob=4.0)
    assert advice.dose.bolus_u < 6.0
    assert advice.with_advice.min_between_mg_dl(15, 400) >= ADULT_LIMITS.suspend_threshold_mg_dl + 10 - 1
    assert "reduced_for_predicted_minimum_u" in advice.numbers


class _MealAfterDipPredictor:
    """Glucose holds at ``glucose`` (below the adult safety floor of 80, above the suspend threshold) for 30 min;
    a meal then raises it by 5 mg/dL per g over 150 min, and a bolus lowers it by 50 mg/dL per U over the same
    150 min starting at ``insulin_starts_min``."""

    def __init__(self, glucose: float, insulin_starts_min: float) -> None:
        self.glucose = glucose
        self.insulin_starts_min = insulin_starts_min

    def predict(self, action: HypotheticalAction) -> PredictedGlucose:
        minutes = np.arange(0.0, 365.0, 5.0)
        carbs = 5.0 * action.carbs_g * np.clip((minutes - 30.0 - action.carbs_delay_min) / 150.0, 0.0, 1.0)
        insulin = 50.0 * action.bolus_u * np.clip((minutes - self.insulin_starts_min) / 150.0, 0.0, 1.0)
        mean = self.glucose + carbs - insulin
        return PredictedGlucose(minutes, mean, mean - 10.0, mean + 10.0, action)


def test_a_meal_bolus_may_act_on_the_rise_after_a_dip_below_the_floor() -> None:
    # 78 mg/dL for the next 30 min, then 60 g: the bolus acts only after the meal has started to raise glucose,
    # so it does not deepen the dip. A rule that asked every point to stay above the floor of 80 would refuse
    # any bolus here (the dip alone is below it).
    predictor = _MealAfterDipPredictor(78.0, insulin_starts_min=30.0)
    advice = recommend(snapshot(78), ADULT_SETTINGS, ADULT_LIMITS, predictor, announced_carbs_g=60)
    assert advice.kind is AdviceKind.MEAL_BOLUS
    # Wanted: 6 U - (110 - 78) / 50 U = 5.36 U. Where the meal alone lifts glucose above the floor (from 35 min,
    # 78 + 10 mg/dL) the bolus must keep it at 80: 78 + (300 - 50 x b) / 30 >= 80, so b <= 4.8 U.
    assert advice.dose.bolus_u == pytest.approx(4.8)
    assert advice.numbers["reduced_for_predicted_minimum_u"] == pytest.approx(5.36 - 4.8)
    assert advice.with_advice.min_mg_dl() == pytest.approx(78.0)  # the dip, no deeper
    assert advice.with_advice.eventual_mg_dl >= ADULT_LIMITS.suspend_threshold_mg_dl + 10


def test_a_bolus_that_would_deepen_a_dip_below_the_floor_is_refused() -> None:
    # The same meal, but the insulin acts at once: any real bolus lowers the dip, so at most 1 mg/dL of it.
    predictor = _MealAfterDipPredictor(78.0, insulin_starts_min=0.0)
    advice = recommend(snapshot(78), ADULT_SETTINGS, ADULT_LIMITS, predictor, announced_carbs_g=60)
    assert advice.dose.bolus_u <= 0.1
    assert advice.numbers["reduced_for_predicted_minimum_u"] > 5.0
    deepest = predictor.predict(HypotheticalAction(bolus_u=advice.dose.bolus_u, carbs_g=60)).mean_mg_dl[3:]
    assert deepest.min() >= 78.0 - 1.0


def test_a_huge_meal_is_capped_at_max_bolus() -> None:
    advice = advise(200, carbs=200)
    assert advice.dose.bolus_u == pytest.approx(ADULT_LIMITS.max_bolus_u)
    assert any(a.rule == "cap_bolus_to_max_bolus" for a in advice.dose.applied)


def test_stale_cgm_gets_no_dosing_advice() -> None:
    advice = advise(250, carbs=40, glucose_age_min=25)
    assert advice.kind is AdviceKind.NO_ADVICE
    assert advice.dose.bolus_u == 0.0


def test_warming_up_sensor_gets_no_dosing_advice() -> None:
    advice = advise(250, cgm_quality=CgmQuality(warming_up=True))
    assert advice.dose.bolus_u == 0.0 and advice.dose.temp_basal_u_per_h is None


def test_over_announced_meal_is_refused() -> None:
    with pytest.raises(ValueError, match="more than"):
        advise(120, carbs=400)


def test_twin_sensing_more_sensitivity_lowers_the_dose_but_never_raises_it() -> None:
    predictor = EffectSumPredictor(260)
    more_sensitive = recommend(snapshot(260, estimated_isf_mg_dl_per_u=75.0), ADULT_SETTINGS, ADULT_LIMITS, predictor)
    less_sensitive = recommend(snapshot(260, estimated_isf_mg_dl_per_u=30.0), ADULT_SETTINGS, ADULT_LIMITS, predictor)
    assert more_sensitive.numbers["correction_by_eventual_u"] == pytest.approx(2.0)
    assert less_sensitive.numbers["correction_by_eventual_u"] == pytest.approx(3.0)
    assert more_sensitive.dose.bolus_u == pytest.approx(1.0)
    assert less_sensitive.dose.bolus_u == pytest.approx(1.5)


def test_advice_serialises_with_its_numbers() -> None:
    data = advise(180, carbs=45).to_dict()
    assert data["kind"] == "meal_bolus" and data["numbers"]["isf_used_mg_dl_per_u"] == 50
    assert len(data["without"]["mean_mg_dl"]) == len(data["without"]["minutes"])


glucose_values = st.floats(min_value=40, max_value=400)
carb_values = st.floats(min_value=0, max_value=150)
iob_values = st.floats(min_value=-1, max_value=15)


def test_a_tdd_based_isf_shrinks_a_correction_the_setting_would_overdose() -> None:
    # 12 U/day at 260 mg/dL: 1800 / (12 x ln(260 / 75 + 1)) = 100.2 mg/dL/U, twice the setting's 50
    advice = advise(260, total_daily_insulin_u=12.0)
    assert advice.numbers["isf_tdd_mg_dl_per_u"] == pytest.approx(100.2, abs=0.1)
    assert advice.numbers["isf_used_mg_dl_per_u"] == pytest.approx(100.2, abs=0.1)
    assert advice.numbers["correction_by_eventual_u"] == pytest.approx(150 / 100.2, abs=0.01)
    assert any("last 24 h" in reason and "12.0 U" in reason for reason in advice.reasons)
    assert advice.dose.bolus_u == pytest.approx(0.70)  # half of 1.50 U, rounded down to 0.05 U


def test_a_tdd_based_isf_never_adds_insulin_and_is_capped() -> None:
    heavy = advise(260, total_daily_insulin_u=60.0)  # 1800 / (60 x 1.50) = 20 < 50: the setting stands
    assert heavy.numbers["isf_used_mg_dl_per_u"] == 50
    assert heavy.numbers["correction_by_eventual_u"] == pytest.approx(3.0)
    tiny = advise(260, total_daily_insulin_u=1.0)  # 1200 mg/dL/U, capped at 4x the setting
    assert tiny.numbers["isf_used_mg_dl_per_u"] == 200
    unknown = advise(260)  # no day of pump history yet
    assert unknown.numbers["isf_used_mg_dl_per_u"] == 50 and unknown.numbers["isf_tdd_mg_dl_per_u"] is None


def test_a_negative_correction_trims_a_meal_bolus_at_the_smaller_isf() -> None:
    # predicted 90 < target 110: the meal bolus is trimmed by 20 / 50 = 0.4 U, not by 20 / (TDD-based ISF)
    with_tdd = advise(90, carbs=60, total_daily_insulin_u=12.0)
    assert with_tdd.numbers["isf_used_mg_dl_per_u"] == 50
    assert with_tdd.dose.bolus_u == pytest.approx(advise(90, carbs=60).dose.bolus_u)


tdd_values = st.one_of(st.none(), st.floats(min_value=2, max_value=150))
owed_values = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=30))  # meal insulin withheld earlier


@settings(max_examples=150, deadline=None)
@given(glucose_values, carb_values, carb_values, iob_values, tdd_values, owed_values)
def test_more_carbs_never_means_less_insulin(glucose: float, carbs_a: float, carbs_b: float, iob: float,
                                              tdd: float | None, owed: float) -> None:
    low, high = sorted((carbs_a, carbs_b))
    kw = dict(iob=iob, total_daily_insulin_u=tdd, withheld_meal_bolus_u=owed)
    assert advise(glucose, carbs=high, **kw).dose.bolus_u >= advise(glucose, carbs=low, **kw).dose.bolus_u - 1e-9


@settings(max_examples=150, deadline=None)
@given(glucose_values, glucose_values, carb_values, iob_values, tdd_values, owed_values)
def test_lower_glucose_never_means_more_insulin(g_a: float, g_b: float, carbs: float, iob: float,
                                                tdd: float | None, owed: float) -> None:
    low, high = sorted((g_a, g_b))
    kw = dict(carbs=carbs, iob=iob, total_daily_insulin_u=tdd, withheld_meal_bolus_u=owed)
    assert advise(low, **kw).dose.bolus_u <= advise(high, **kw).dose.bolus_u + 1e-9


@settings(max_examples=200, deadline=None)
@given(glucose_values, carb_values, iob_values, st.floats(min_value=-4, max_value=4),
       st.one_of(st.none(), st.floats(min_value=0, max_value=300)), st.sampled_from(["child", "adolescent", "adult"]),
       tdd_values, owed_values)
def test_every_recommendation_is_within_the_limits(glucose, carbs, iob, trend, since_bolus, group, tdd,
                                                   owed) -> None:
    limits = default_limits(group)
    carbs = min(carbs, limits.max_meal_carbs_g)
    snap = snapshot(glucose, iob_u=iob, trend_mg_dl_min=trend, minutes_since_last_bolus=since_bolus,
                    total_daily_insulin_u=tdd, withheld_meal_bolus_u=owed)
    predictor = EffectSumPredictor(glucose, iob_u=iob, trend_mg_dl_min=trend)
    advice = recommend(snap, ADULT_SETTINGS, limits, predictor, announced_carbs_g=carbs)
    context = DosingContext(
        glucose_mg_dl=glucose, glucose_age_min=2.0, iob_u=iob, minutes_since_last_bolus=since_bolus,
        scheduled_basal_u_per_h=1.0, predicted_min_glucose_mg_dl=advice.numbers["predicted_min_with_meal_mg_dl"],
    )
    assert limit_violations(advice.dose, context, limits) == []


@settings(max_examples=200, deadline=None)
@given(glucose_values, carb_values, iob_values, st.floats(min_value=-4, max_value=4),
       st.sampled_from(["child", "adolescent", "adult"]), tdd_values, owed_values)
def test_no_bolus_takes_the_prediction_below_the_floor_or_deeper_into_a_dip(glucose, carbs, iob, trend, group,
                                                                          tdd, owed) -> None:
    """From 15 min on, the prediction with the advice given stays at or above the floor (suspend threshold +
    10 mg/dL), or, where the prediction without any bolus is already below it, within 1 mg/dL of that."""
    limits = default_limits(group)
    carbs = min(carbs, limits.max_meal_carbs_g)
    predictor = EffectSumPredictor(glucose, iob_u=iob, trend_mg_dl_min=trend)
    advice = recommend(snapshot(glucose, iob_u=iob, trend_mg_dl_min=trend, total_daily_insulin_u=tdd,
                                withheld_meal_bolus_u=owed), ADULT_SETTINGS, limits, predictor, announced_carbs_g=carbs)
    if advice.dose.bolus_u == 0:
        return
    dose = advice.dose
    given_advice = predictor.predict(HypotheticalAction(
        bolus_u=dose.bolus_u, carbs_g=carbs, temp_basal_u_per_h=dose.temp_basal_u_per_h,
        temp_basal_duration_min=dose.temp_basal_duration_min))
    without_bolus = predictor.predict(HypotheticalAction(carbs_g=carbs))
    acting = given_advice.minutes >= 15
    floor = limits.suspend_threshold_mg_dl + 10
    lowest_allowed = np.minimum(floor, without_bolus.mean_mg_dl[acting] - 1.0)
    assert np.all(given_advice.mean_mg_dl[acting] >= lowest_allowed - 1e-9)


class _RunawayPredictor(EffectSumPredictor):
    """A model that extrapolates a rise for hours (as a mis-estimated twin might)."""

    def predict(self, action):
        base = super().predict(action)
        rise = 1.0 * base.minutes  # +1 mg/dL/min for six hours
        return type(base)(base.minutes, base.mean_mg_dl + rise, base.lower_mg_dl + rise, base.upper_mg_dl + rise,
                          action)


def test_correction_never_chases_a_rise_extrapolated_beyond_an_hour() -> None:
    predictor = _RunawayPredictor(200)
    advice = recommend(snapshot(200), ADULT_SETTINGS, ADULT_LIMITS, predictor)
    # basis = max(now 200, 60-min prediction ~260) = ~260, not the eventual ~560
    assert advice.numbers["correction_basis_mg_dl"] < 270
    assert advice.dose.bolus_u <= (270 - 110) / 50 + 1e-9


def test_twin_sensitivity_is_trusted_only_up_to_one_and_a_half_times_the_setting() -> None:
    predictor = EffectSumPredictor(260)
    advice = recommend(snapshot(260, estimated_isf_mg_dl_per_u=400.0), ADULT_SETTINGS, ADULT_LIMITS, predictor)
    assert advice.numbers["isf_used_mg_dl_per_u"] == 75.0
