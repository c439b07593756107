"""The recommender on the real twin (random histories): limits hold, and advice is monotone in carbs and glucose."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.recommend import HubSnapshot, recommend
from edge.recommend.prediction import HypotheticalAction
from edge.recommend.twin_predictor import TwinPredictor
from edge.safety import default_limits, limit_violations
from edge.safety.rules import DosingContext
from edge.therapy_settings import TherapySettings
from models.twin.mvp_model import G, GSC, THETA
from models.twin.twin import DigitalTwin

SETTINGS = TherapySettings(age_group="adult", body_weight_kg=70, basal_u_per_h=1.0,
                           insulin_sensitivity_mg_dl_per_u=50, carb_ratio_g_per_u=10)
LIMITS = default_limits("adult")

histories = st.lists(st.floats(min_value=60, max_value=300), min_size=6, max_size=24)


def twin_after(history: list[float], bolus_u: float, carbs_g: float) -> DigitalTwin:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    for index, glucose in enumerate(history):
        twin.update(glucose, index * 5.0, insulin_u=bolus_u if index == 2 else 0.0,
                    carbs_g=carbs_g if index == 2 else 0.0)
    return twin


def advise(twin: DigitalTwin, glucose: float, carbs: float):
    estimate = twin.estimate()
    snap = HubSnapshot(glucose_mg_dl=glucose, glucose_age_min=1.0, trend_mg_dl_min=0.0,
                       iob_u=estimate.insulin_on_board_u, cob_g=estimate.carbs_on_board_g,
                       minutes_since_last_bolus=None, scheduled_basal_u_per_h=1.0,
                       estimated_isf_mg_dl_per_u=estimate.insulin_sensitivity_factor_mg_dl_per_u.value)
    return recommend(snap, SETTINGS, LIMITS, TwinPredictor(twin, n_samples=32), announced_carbs_g=carbs), snap


def shifted(twin: DigitalTwin, delta_mg_dl: float) -> DigitalTwin:
    other = copy.deepcopy(twin)
    x = other.filter.x.copy()
    x[G] = max(x[G] + delta_mg_dl, 20.0)
    x[GSC] = max(x[GSC] + delta_mg_dl, 20.0)
    other.filter.set_state(x, other.filter.P)
    return other


common = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(histories, st.floats(0, 6), st.floats(0, 80), st.floats(0, 120), st.floats(0, 120))
def test_more_carbs_never_means_less_insulin_on_the_twin(history, bolus, eaten, carbs_a, carbs_b) -> None:
    twin = twin_after(history, bolus, eaten)
    low, high = sorted((carbs_a, carbs_b))
    advice_low, _ = advise(twin, history[-1], low)
    advice_high, _ = advise(twin, history[-1], high)
    assert advice_high.dose.bolus_u >= advice_low.dose.bolus_u - 1e-9


@common
@given(histories, st.floats(0, 6), st.floats(0, 80), st.floats(0, 100), st.floats(0, 80))
def test_lower_glucose_never_means_more_insulin_on_the_twin(history, bolus, eaten, carbs, drop) -> None:
    twin = twin_after(history, bolus, eaten)
    glucose = history[-1]
    higher, _ = advise(twin, glucose, carbs)
    lower, _ = advise(shifted(twin, -drop), max(glucose - drop, 40.0), carbs)
    assert lower.dose.bolus_u <= higher.dose.bolus_u + 1e-9


@common
@given(histories, st.floats(0, 10), st.floats(0, 120), st.floats(0, 150))
def test_advice_on_the_twin_never_breaks_a_limit(history, bolus, eaten, carbs) -> None:
    twin = twin_after(history, bolus, eaten)
    advice, snap = advise(twin, history[-1], carbs)
    context = DosingContext(
        glucose_mg_dl=snap.glucose_mg_dl, glucose_age_min=snap.glucose_age_min, iob_u=snap.iob_u,
        minutes_since_last_bolus=None, scheduled_basal_u_per_h=1.0,
        predicted_min_glucose_mg_dl=advice.numbers["predicted_min_with_meal_mg_dl"])
    assert limit_violations(advice.dose, context, LIMITS) == []
    assert np.isfinite(advice.numbers["eventual_mg_dl"])


def with_theta(twin: DigitalTwin, theta: float) -> DigitalTwin:
    other = copy.deepcopy(twin)
    x = other.filter.x.copy()
    x[THETA] = theta
    other.filter.set_state(x, other.filter.P)
    return other


def test_predictions_never_assume_less_sensitivity_than_the_settings() -> None:
    """A twin that believes in insulin resistance (theta < 0) would predict a higher glucose after a dose and so
    raise corrections; the recommender's predictor floors theta at 0 (the settings) unless told to trust it."""
    twin = twin_after([180.0] * 12, 0.0, 0.0)
    resistant, settings_twin = with_theta(twin, -0.5), with_theta(twin, 0.0)
    dose = HypotheticalAction(bolus_u=3.0)
    floored = TwinPredictor(resistant, n_samples=32).predict(dose)
    at_settings = TwinPredictor(settings_twin, n_samples=32).predict(dose)
    trusted = TwinPredictor(resistant, n_samples=32, trust_lower_sensitivity=True).predict(dose)
    np.testing.assert_allclose(floored.mean_mg_dl, at_settings.mean_mg_dl)
    assert trusted.eventual_mg_dl > floored.eventual_mg_dl + 20.0
    assert resistant.filter.x[THETA] == -0.5  # the twin itself is untouched
    sensitive = with_theta(twin, 0.3)  # "more sensitive" is kept: it only lowers doses
    assert (TwinPredictor(sensitive, n_samples=32).predict(dose).eventual_mg_dl
            < at_settings.eventual_mg_dl - 10.0)


def test_meals_are_predicted_at_the_settings_sensitivity_and_corrections_with_the_twins_belief() -> None:
    """A twin that believes the person 3.5x more sensitive (seen in silico for a child) predicts a deep low after
    an ordinary meal bolus; meal predictions ignore that belief, predictions for corrections keep it."""
    twin = twin_after([120.0] * 12, 0.0, 0.0)
    believer, at_settings = with_theta(twin, 1.27), with_theta(twin, 0.0)
    meal = HypotheticalAction(bolus_u=6.0, carbs_g=60.0, at_settings_sensitivity=True)
    judged = TwinPredictor(believer, n_samples=32).predict(meal)
    np.testing.assert_allclose(judged.mean_mg_dl, TwinPredictor(at_settings, n_samples=32).predict(meal).mean_mg_dl)
    believed = TwinPredictor(believer, n_samples=32).predict(replace(meal, at_settings_sensitivity=False))
    assert believed.min_mg_dl() < judged.min_mg_dl() - 30.0
    correction = HypotheticalAction(bolus_u=2.0)
    assert (TwinPredictor(believer, n_samples=32).predict(correction).eventual_mg_dl
            < TwinPredictor(at_settings, n_samples=32).predict(correction).eventual_mg_dl - 20.0)
    assert believer.filter.x[THETA] == 1.27  # the twin itself is untouched


def test_the_twins_sensitivity_belief_never_cuts_a_meal_bolus() -> None:
    """The meal part of the advice is the same whether the twin believes the settings or 3.5x the sensitivity
    (in silico such a belief cut a 99 g dinner's bolus from 4.0 to 1.8 U)."""
    twin = twin_after([120.0] * 12, 0.0, 0.0)
    believer_advice, _ = advise(with_theta(twin, 1.27), 120.0, 60.0)
    settings_advice, _ = advise(with_theta(twin, 0.0), 120.0, 60.0)
    # 60 g / 10 g/U, less a small negative correction
    assert believer_advice.dose.meal_bolus_u == settings_advice.dose.meal_bolus_u > 5.0
    assert believer_advice.numbers["predicted_min_with_advice_mg_dl"] >= LIMITS.suspend_threshold_mg_dl + 10 - 1e-9


def test_predictions_assume_the_scheduled_basal_not_a_running_temp_for_the_whole_horizon() -> None:
    """A high temp fed to the twin over the last 30 min is not assumed to run for 6 h: with the schedule as the
    baseline the no-action prediction stays well above the one that continues the temp."""
    twin = twin_after([140.0] * 12, 0.0, 0.0)
    for step in range(1, 7):
        twin.update(140.0, (11 + step) * 5.0, basal_u_per_h=3.0)  # a 3 U/h temp against the 1 U/h schedule
    assert twin.basal_u_per_h == 3.0
    continued = TwinPredictor(twin, n_samples=32).predict(HypotheticalAction())
    scheduled = TwinPredictor(twin, n_samples=32, baseline_basal_u_per_h=1.0).predict(HypotheticalAction())
    assert scheduled.eventual_mg_dl > continued.eventual_mg_dl + 50.0
    assert scheduled.min_mg_dl() > 100.0 > continued.min_mg_dl()
    same = TwinPredictor(twin, n_samples=32, baseline_basal_u_per_h=3.0).predict(HypotheticalAction())
    np.testing.assert_allclose(same.mean_mg_dl, continued.mean_mg_dl)
