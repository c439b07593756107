"""Each hard-limit rule alone, then the whole chain under hypothesis: no input ever yields a violation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.safety import (
    CgmQuality,
    DoseProposal,
    DosingContext,
    LimitOutOfBounds,
    SafetyLimits,
    SafetyViolation,
    apply_hard_limits,
    assert_within_limits,
    default_limits,
    limit_violations,
)
from edge.safety.rules import LimitedDose
from edge.therapy_settings import AgeGroup

ADULT = default_limits(AgeGroup.ADULT)


def context(**overrides) -> DosingContext:
    values = dict(
        glucose_mg_dl=180.0,
        glucose_age_min=2.0,
        predicted_min_glucose_mg_dl=150.0,
        iob_u=0.0,
        minutes_since_last_bolus=None,
        scheduled_basal_u_per_h=1.0,
    )
    values.update(overrides)
    return DosingContext(**values)


def rules_applied(dose: LimitedDose) -> set[str]:
    return {application.rule for application in dose.applied}


# --- the configured limits -----------------------------------------------------------------------------


def test_age_group_defaults_follow_androidaps() -> None:
    assert (default_limits("child").max_bolus_u, default_limits("child").max_iob_u) == (5.0, 7.0)
    assert (default_limits("adolescent").max_bolus_u, default_limits("adolescent").max_basal_u_per_h) == (10.0, 5.0)
    assert (ADULT.max_bolus_u, ADULT.max_iob_u, ADULT.max_basal_u_per_h) == (17.0, 22.0, 10.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_bolus_u": 26.0},
        {"max_iob_u": 31.0},
        {"max_basal_u_per_h": 12.5},
        {"suspend_threshold_mg_dl": 60.0},
        {"suspend_threshold_mg_dl": 120.0},
        {"max_cgm_age_min": 30.0},
        {"max_bolus_u": math.nan},
        {"max_bolus_u": -1.0},
    ],
)
def test_limits_outside_absolute_bounds_are_refused(overrides: dict) -> None:
    values = dict(
        max_bolus_u=10.0, max_iob_u=15.0, max_basal_u_per_h=3.0, suspend_threshold_mg_dl=70.0, max_rescue_carbs_g=30.0
    )
    values.update(overrides)
    with pytest.raises(LimitOutOfBounds):
        SafetyLimits(**values)


# --- each rule on its own ------------------------------------------------------------------------------


def test_max_bolus_caps_the_total_taking_correction_first() -> None:
    dose = apply_hard_limits(DoseProposal(meal_bolus_u=15.0, correction_bolus_u=10.0), context(), ADULT)
    assert dose.bolus_u == pytest.approx(17.0)
    assert dose.meal_bolus_u == pytest.approx(15.0)
    assert dose.correction_bolus_u == pytest.approx(2.0)
    assert "cap_bolus_to_max_bolus" in rules_applied(dose)


def test_max_iob_leaves_only_the_room_that_is_left() -> None:
    dose = apply_hard_limits(DoseProposal(meal_bolus_u=6.0), context(iob_u=20.0), ADULT)
    assert dose.bolus_u == pytest.approx(2.0)
    assert "cap_bolus_to_max_iob" in rules_applied(dose)


def test_unknown_iob_allows_no_bolus() -> None:
    dose = apply_hard_limits(DoseProposal(meal_bolus_u=3.0), context(iob_u=None), ADULT)
    assert dose.bolus_u == 0.0


def test_negative_iob_buys_no_extra_room() -> None:
    dose = apply_hard_limits(DoseProposal(meal_bolus_u=16.0), context(iob_u=-5.0), default_limits("child"))
    assert dose.bolus_u == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("glucose", "predicted_min"), [(65.0, 150.0), (150.0, 65.0), (69.9, 69.9), (150.0, None)]
)
def test_no_insulin_and_suspend_when_glucose_or_prediction_is_low(glucose: float, predicted_min: float | None) -> None:
    dose = apply_hard_limits(
        DoseProposal(meal_bolus_u=4.0, correction_bolus_u=1.0, temp_basal_u_per_h=2.0),
        context(glucose_mg_dl=glucose, predicted_min_glucose_mg_dl=predicted_min),
        ADULT,
    )
    assert dose.bolus_u == 0.0
    assert dose.temp_basal_u_per_h == 0.0
    assert "no_insulin_when_low" in rules_applied(dose)


def test_glucose_at_the_threshold_may_still_get_meal_insulin() -> None:
    dose = apply_hard_limits(
        DoseProposal(meal_bolus_u=4.0), context(glucose_mg_dl=70.0, predicted_min_glucose_mg_dl=70.0), ADULT
    )
    assert dose.bolus_u == pytest.approx(4.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"glucose_age_min": 15.1},
        {"glucose_age_min": None},
        {"glucose_age_min": -30.0},
        {"glucose_mg_dl": None},
        {"glucose_mg_dl": math.nan},
        {"cgm_quality": CgmQuality(warming_up=True)},
        {"cgm_quality": CgmQuality(compression_suspected=True)},
        {"cgm_quality": CgmQuality(noisy=True)},
        {"cgm_quality": CgmQuality(sensor_fault=True)},
    ],
)
def test_no_dosing_advice_on_untrustworthy_cgm(overrides: dict) -> None:
    dose = apply_hard_limits(
        DoseProposal(meal_bolus_u=4.0, temp_basal_u_per_h=2.0, rescue_carbs_g=15.0), context(**overrides), ADULT
    )
    assert (dose.bolus_u, dose.temp_basal_u_per_h, dose.rescue_carbs_g) == (0.0, None, 0.0)
    assert "require_trustworthy_cgm" in rules_applied(dose)


def test_reading_exactly_fifteen_minutes_old_is_still_usable() -> None:
    dose = apply_hard_limits(DoseProposal(meal_bolus_u=2.0), context(glucose_age_min=15.0), ADULT)
    assert dose.bolus_u == pytest.approx(2.0)


def test_stacking_guard_withholds_correction_but_not_meal_insulin() -> None:
    dose = apply_hard_limits(
        DoseProposal(meal_bolus_u=3.0, correction_bolus_u=2.0), context(minutes_since_last_bolus=40.0), ADULT
    )
    assert dose.meal_bolus_u == pytest.approx(3.0)
    assert dose.correction_bolus_u == 0.0
    assert "insulin_stacking_guard" in rules_applied(dose)
    later = apply_hard_limits(
        DoseProposal(meal_bolus_u=3.0, correction_bolus_u=2.0), context(minutes_since_last_bolus=60.0), ADULT
    )
    assert later.correction_bolus_u == pytest.approx(2.0)


def test_temp_basal_capped_by_max_basal_and_four_times_scheduled() -> None:
    dose = apply_hard_limits(DoseProposal(temp_basal_u_per_h=9.0), context(scheduled_basal_u_per_h=1.0), ADULT)
    assert dose.temp_basal_u_per_h == pytest.approx(4.0)
    dose = apply_hard_limits(DoseProposal(temp_basal_u_per_h=20.0), context(scheduled_basal_u_per_h=3.0), ADULT)
    assert dose.temp_basal_u_per_h == pytest.approx(10.0)


def test_temp_basal_extra_insulin_counts_towards_max_iob() -> None:
    dose = apply_hard_limits(
        DoseProposal(temp_basal_u_per_h=4.0, temp_basal_duration_min=60.0),
        context(scheduled_basal_u_per_h=1.0, iob_u=21.0),
        ADULT,
    )
    assert dose.temp_basal_u_per_h == pytest.approx(2.0)
    assert "cap_temp_basal_to_max_iob" in rules_applied(dose)


@pytest.mark.parametrize("proposed", [20.5, 25.0, 39.0, 100.0])
def test_rescue_carbs_are_capped(proposed: float) -> None:
    dose = apply_hard_limits(DoseProposal(rescue_carbs_g=proposed), context(), default_limits("child"))
    assert dose.rescue_carbs_g == 20.0


def test_amounts_are_rounded_down_to_pump_increments() -> None:
    dose = apply_hard_limits(DoseProposal(meal_bolus_u=3.27, temp_basal_u_per_h=1.33), context(), ADULT)
    assert dose.meal_bolus_u == pytest.approx(3.25)
    assert dose.temp_basal_u_per_h == pytest.approx(1.30)


def test_invalid_amounts_become_no_action() -> None:
    dose = apply_hard_limits(
        DoseProposal(meal_bolus_u=math.inf, correction_bolus_u=-2.0, temp_basal_u_per_h=math.nan, rescue_carbs_g=-1),
        context(),
        ADULT,
    )
    assert (dose.bolus_u, dose.temp_basal_u_per_h, dose.rescue_carbs_g) == (0.0, None, 0.0)


def test_checker_catches_a_dose_that_skipped_the_rules() -> None:
    unsafe = LimitedDose(
        meal_bolus_u=20.0, correction_bolus_u=0.0, temp_basal_u_per_h=None, temp_basal_duration_min=30, rescue_carbs_g=0
    )
    assert any("max bolus" in violation for violation in limit_violations(unsafe, context(), ADULT))
    with pytest.raises(SafetyViolation):
        assert_within_limits(unsafe, context(), ADULT)


# --- the whole chain under arbitrary inputs ------------------------------------------------------------

amounts = st.one_of(
    st.floats(min_value=-50, max_value=200, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)
maybe_float = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32))

proposals = st.builds(
    DoseProposal,
    meal_bolus_u=amounts,
    correction_bolus_u=amounts,
    temp_basal_u_per_h=st.one_of(st.none(), amounts),
    temp_basal_duration_min=st.one_of(st.floats(min_value=-10, max_value=600), st.just(math.nan)),
    rescue_carbs_g=amounts,
)
contexts = st.builds(
    DosingContext,
    glucose_mg_dl=st.one_of(maybe_float, st.floats(min_value=20, max_value=450)),
    glucose_age_min=st.one_of(maybe_float, st.floats(min_value=-10, max_value=40)),
    predicted_min_glucose_mg_dl=st.one_of(maybe_float, st.floats(min_value=20, max_value=450)),
    iob_u=st.one_of(maybe_float, st.floats(min_value=-5, max_value=40)),
    minutes_since_last_bolus=st.one_of(st.none(), st.floats(min_value=0, max_value=600)),
    scheduled_basal_u_per_h=st.floats(min_value=0, max_value=5),
    bolus_increment_u=st.sampled_from([0.01, 0.025, 0.05, 0.1, 0.5]),
    basal_increment_u_per_h=st.sampled_from([0.01, 0.025, 0.05, 0.1]),
    cgm_quality=st.one_of(st.just(CgmQuality()),
                          st.builds(CgmQuality, st.booleans(), st.booleans(), st.booleans(), st.booleans())),
)
limits = st.one_of(
    st.sampled_from([default_limits(group) for group in AgeGroup]),
    st.builds(
        SafetyLimits,
        max_bolus_u=st.floats(min_value=0, max_value=25),
        max_iob_u=st.floats(min_value=0, max_value=30),
        max_basal_u_per_h=st.floats(min_value=0, max_value=12),
        suspend_threshold_mg_dl=st.floats(min_value=67, max_value=110),
        max_rescue_carbs_g=st.floats(min_value=0, max_value=60),
        stacking_window_min=st.floats(min_value=30, max_value=240),
        max_basal_multiple_of_scheduled=st.floats(min_value=1, max_value=4),
    ),
)


@settings(max_examples=1500, deadline=None)
@given(proposals, contexts, limits)
def test_no_input_produces_a_dose_outside_the_limits(
    proposal: DoseProposal, ctx: DosingContext, configured: SafetyLimits
) -> None:
    dose = apply_hard_limits(proposal, ctx, configured)  # raises SafetyViolation on any breach
    assert limit_violations(dose, ctx, configured) == []
    assert dose.bolus_u <= configured.max_bolus_u + 1e-9


@settings(max_examples=300, deadline=None)
@given(proposals, contexts, limits)
def test_limits_never_increase_what_was_proposed(
    proposal: DoseProposal, ctx: DosingContext, configured: SafetyLimits
) -> None:
    dose = apply_hard_limits(proposal, ctx, configured)
    for name in ("meal_bolus_u", "correction_bolus_u", "rescue_carbs_g"):
        proposed = getattr(proposal, name)
        if math.isfinite(proposed) and proposed >= 0:
            assert getattr(dose, name) <= proposed + 1e-9
