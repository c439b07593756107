"""Behaviour of the vectorised UVA/Padova cohort model (hardware_sim.patient.uva_padova)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_sim.patient.cohort import load_cohort, sample_population
from hardware_sim.patient.uva_padova import N_STATES, STATE_NAMES, PatientInputError, UvaPadovaCohortModel

COHORT = load_cohort()


def basal_u_per_min(cohort=COHORT):
    return cohort.basal_u_per_h / 60.0


def test_shapes_and_state_copy():
    model = UvaPadovaCohortModel(COHORT)
    assert model.n_subjects == 30
    assert STATE_NAMES[3] == "Gp" and STATE_NAMES[12] == "Gs" and N_STATES == 13
    state = model.state
    assert state.shape == (30, 13)
    state[:, 3] = -1.0  # a copy: must not change the model
    assert np.all(model.state[:, 3] > 0)
    assert model.plasma_glucose_mg_dl.shape == model.interstitial_glucose_mg_dl.shape == (30,)
    np.testing.assert_allclose(model.plasma_glucose_mg_dl, COHORT.basal_glucose_mg_dl, rtol=1e-9)


def test_basal_only_stays_at_steady_state_for_a_day():
    model = UvaPadovaCohortModel(COHORT)
    model.step(0.0, basal_u_per_min(), minutes=24 * 60)
    assert model.time_min == 1440
    np.testing.assert_allclose(model.plasma_glucose_mg_dl, COHORT.basal_glucose_mg_dl, atol=1e-3)
    np.testing.assert_allclose(model.interstitial_glucose_mg_dl, COHORT.basal_glucose_mg_dl, atol=1e-3)


def test_sampled_population_also_starts_at_steady_state():
    pop = sample_population(15, seed=5)
    model = UvaPadovaCohortModel(pop)
    model.step(0.0, basal_u_per_min(pop), minutes=12 * 60)
    np.testing.assert_allclose(model.plasma_glucose_mg_dl, pop.basal_glucose_mg_dl, atol=1e-3)


def test_meal_raises_and_bolus_lowers_glucose():
    basal = basal_u_per_min()
    fed = UvaPadovaCohortModel(COHORT)
    bolused = UvaPadovaCohortModel(COHORT)
    for t in range(240):
        carbs = 5.0 if t < 10 else 0.0
        bolus = 50.0 / COHORT.carb_ratio_g_per_u if t == 0 else 0.0
        fed.step(carbs, basal)
        bolused.step(carbs, basal + bolus)
    assert np.all(fed.plasma_glucose_mg_dl > COHORT.basal_glucose_mg_dl + 20)
    assert np.all(bolused.plasma_glucose_mg_dl < fed.plasma_glucose_mg_dl)


def test_no_insulin_makes_glucose_rise():
    model = UvaPadovaCohortModel(COHORT)
    model.step(0.0, 0.0, minutes=6 * 60)
    assert np.all(model.plasma_glucose_mg_dl > COHORT.basal_glucose_mg_dl + 5)


def test_interstitial_lags_plasma_after_meal():
    model = UvaPadovaCohortModel(COHORT)
    model.step(5.0, basal_u_per_min(), minutes=10)
    model.step(0.0, basal_u_per_min(), minutes=20)
    assert np.all(model.interstitial_glucose_mg_dl < model.plasma_glucose_mg_dl)


def test_multi_minute_step_equals_minute_steps():
    a = UvaPadovaCohortModel(COHORT)
    b = UvaPadovaCohortModel(COHORT)
    a.step(4.0, 0.05, minutes=5)
    for _ in range(5):
        b.step(4.0, 0.05)
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.meal_reference_mg, b.meal_reference_mg)


def test_fractional_minutes_accumulate_time_and_food():
    model = UvaPadovaCohortModel(COHORT)
    model.step(2.0, 0.0, minutes=2.5)
    assert model.time_min == pytest.approx(2.5)
    np.testing.assert_allclose(model.meal_reference_mg, 5000.0)


def test_subjects_are_independent_of_their_neighbours():
    names = "adult#003,child#007"
    small = UvaPadovaCohortModel(load_cohort(names))
    whole = UvaPadovaCohortModel(COHORT)
    idx = [COHORT.names.index(n) for n in names.split(",")]
    basal = basal_u_per_min()
    for t in range(120):
        carbs = np.where(np.arange(30) % 2 == 0, 5.0, 0.0) if t < 8 else 0.0
        whole.step(carbs, basal)
        small.step(carbs[idx] if t < 8 else 0.0, basal[idx])
    np.testing.assert_allclose(small.state, whole.state[idx], rtol=1e-12, atol=1e-12)


def test_sensitivity_and_egp_scales_move_glucose_the_right_way():
    basal = basal_u_per_min()
    ones = np.ones(30)
    runs = {}
    for label, s, e in [("ref", ones, ones), ("resistant", 0.6 * ones, ones), ("dawn", ones, 1.2 * ones)]:
        model = UvaPadovaCohortModel(COHORT)
        model.step(0.0, basal, minutes=180, insulin_sensitivity_scale=s, egp_scale=e)
        runs[label] = model.plasma_glucose_mg_dl
    ref = UvaPadovaCohortModel(COHORT)
    ref.step(0.0, basal, minutes=180)
    np.testing.assert_allclose(runs["ref"], ref.plasma_glucose_mg_dl, rtol=1e-12)
    assert np.all(runs["resistant"] > runs["ref"] + 1)
    assert np.all(runs["dawn"] > runs["ref"] + 1)


def test_reset_restores_initial_state():
    model = UvaPadovaCohortModel(COHORT)
    start = model.state
    model.step(5.0, 0.3, minutes=30)
    model.reset()
    np.testing.assert_array_equal(model.state, start)
    assert model.time_min == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(carbs_g_per_min=-1.0, insulin_u_per_min=0.0),
        dict(carbs_g_per_min=0.0, insulin_u_per_min=np.full(30, np.nan)),
        dict(carbs_g_per_min=np.zeros(7), insulin_u_per_min=0.0),
        dict(carbs_g_per_min=0.0, insulin_u_per_min=0.0, minutes=0),
        dict(carbs_g_per_min=0.0, insulin_u_per_min=0.0, minutes=float("inf")),
        dict(carbs_g_per_min=0.0, insulin_u_per_min=0.0, insulin_sensitivity_scale=np.zeros(30)),
        dict(carbs_g_per_min=0.0, insulin_u_per_min=0.0, egp_scale=-np.ones(30)),
    ],
)
def test_bad_inputs_are_typed_errors_and_leave_state_untouched(kwargs):
    model = UvaPadovaCohortModel(COHORT)
    before = model.state
    with pytest.raises(PatientInputError):
        model.step(**kwargs)
    np.testing.assert_array_equal(model.state, before)
    assert model.time_min == 0


@settings(max_examples=6, deadline=None)
@given(
    meal_g=st.floats(min_value=0, max_value=150),
    bolus_u=st.floats(min_value=0, max_value=30),
    basal_factor=st.floats(min_value=0, max_value=4),
)
def test_states_stay_non_negative_even_with_overdose(meal_g, bolus_u, basal_factor):
    cohort = load_cohort("children")
    model = UvaPadovaCohortModel(cohort)
    basal = basal_factor * basal_u_per_min(cohort)
    remaining = meal_g
    for t in range(0, 360, 10):
        carbs = min(5.0, remaining / 10.0) if remaining > 0 else 0.0
        remaining -= carbs * 10
        model.step(carbs, basal + (bolus_u / 10.0 if t == 0 else 0.0), minutes=10)
    state = model.state
    assert np.all(np.isfinite(state))
    assert np.all(state[:, [0, 1, 2, 3, 4, 5, 9, 10, 11, 12]] >= 0)
    assert np.all(model.interstitial_glucose_mg_dl >= 0)


def test_extreme_overdose_drives_glucose_to_zero_but_never_below():
    cohort = load_cohort("child#001,child#002")
    model = UvaPadovaCohortModel(cohort)
    basal = 4 * basal_u_per_min(cohort)
    model.step(0.0, basal + 30.0 / 5.0, minutes=5)  # 30 U bolus for a child
    lowest = np.full(2, np.inf)
    for _ in range(60):
        model.step(0.0, basal, minutes=10)
        assert np.all(model.state[:, [3, 4, 12]] >= 0)
        lowest = np.minimum(lowest, model.plasma_glucose_mg_dl)
    assert np.all(lowest < 1.0)  # the clamp is reached, not merely approached
