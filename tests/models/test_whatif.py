"""What-if trajectories from the twin's belief: ordering of actions, intervals, and bad scenarios."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.twin.twin import DigitalTwin, TwinSettings
from models.whatif import NO_ACTION, Scenario, ScenarioError, Trajectory, simulate, what_if

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)


@pytest.fixture(scope="module")
def twin() -> DigitalTwin:
    t = DigitalTwin.from_therapy_settings(SETTINGS)
    for k in range(36):
        t.update(150.0 + 0.5 * k, 5.0 * k)
    return t


def test_actions_move_glucose_in_the_right_direction(twin: DigitalTwin) -> None:
    none, bolus, meal, suspend, both = what_if(
        twin, NO_ACTION, Scenario(bolus_u=3.0), Scenario(carbs_g=40.0),
        Scenario(temp_basal_u_per_h=0.0, temp_basal_duration_min=90.0),
        Scenario(bolus_u=4.0, carbs_g=40.0), horizon_min=180, n_samples=100,
    )
    assert bolus.eventual_mg_dl < none.eventual_mg_dl < meal.eventual_mg_dl
    assert suspend.eventual_mg_dl > none.eventual_mg_dl
    assert bolus.eventual_mg_dl < both.eventual_mg_dl < meal.eventual_mg_dl
    assert both.scenario.name == "bolus 4 U + eat 40 g"
    assert none.minutes[0] == 0 and none.minutes[-1] == 180 and len(none.minutes) == 37


def test_intervals_contain_the_mean_and_widen_with_horizon(twin: DigitalTwin) -> None:
    (traj,) = what_if(twin, horizon_min=120, n_samples=150)
    assert isinstance(traj, Trajectory)
    assert np.all(traj.lower_95_mg_dl <= traj.mean_mg_dl) and np.all(traj.mean_mg_dl <= traj.upper_95_mg_dl)
    width = traj.upper_95_mg_dl - traj.lower_95_mg_dl
    assert width[-1] > width[1]
    assert traj.min_mg_dl <= traj.eventual_mg_dl or traj.min_mg_dl == pytest.approx(traj.mean_mg_dl.min())
    assert traj.min_lower_95_mg_dl <= traj.min_mg_dl
    mean, low, high = traj.at(60)
    assert low <= mean <= high
    assert abs(traj.mean_mg_dl[0] - twin.estimate().sensor_glucose_mg_dl.value) < 15


def test_more_uncertain_state_gives_wider_intervals(twin: DigitalTwin) -> None:
    narrow = simulate(twin.x, twin.P, twin.params, 1.0, horizon_min=60, n_samples=200)[0]
    wide = simulate(twin.x, twin.P * 4.0, twin.params, 1.0, horizon_min=60, n_samples=200)[0]
    assert (wide.upper_95_mg_dl - wide.lower_95_mg_dl)[-1] > (narrow.upper_95_mg_dl - narrow.lower_95_mg_dl)[-1]


def test_same_seed_same_answer_and_plasma_quantity(twin: DigitalTwin) -> None:
    a = what_if(twin, Scenario(bolus_u=1.0), n_samples=50, seed=7)[0]
    b = what_if(twin, Scenario(bolus_u=1.0), n_samples=50, seed=7)[0]
    assert np.array_equal(a.mean_mg_dl, b.mean_mg_dl)
    plasma = what_if(twin, quantity="plasma", n_samples=50)[0]
    assert plasma.quantity == "plasma" and np.all(np.isfinite(plasma.upper_95_mg_dl))


def test_eating_after_a_pre_bolus_dips_first_then_reaches_the_same_meal(twin: DigitalTwin) -> None:
    at_once, later, much_later = what_if(
        twin, Scenario(bolus_u=4.0, carbs_g=40.0), Scenario(bolus_u=4.0, carbs_g=40.0, carbs_delay_min=15.0),
        Scenario(bolus_u=4.0, carbs_g=40.0, carbs_delay_min=12.5), horizon_min=360, n_samples=50, step_min=10.0,
    )
    assert later.scenario.name == "bolus 4 U + eat 40 g in 15 min"
    # the first minutes: insulin without the meal yet, so lower than eating at once
    assert later.mean_mg_dl[1:4].max() < at_once.mean_mg_dl[1:4].max()
    assert later.mean_mg_dl[1:4].min() < at_once.mean_mg_dl[1:4].min()
    # the same carbs arrive in the end: eventual glucose close (a little of the later meal is still absorbing at
    # 6 h), and a delay inside a block counts
    assert at_once.eventual_mg_dl <= later.eventual_mg_dl <= at_once.eventual_mg_dl + 8.0
    assert not np.array_equal(much_later.mean_mg_dl, later.mean_mg_dl)
    assert not np.array_equal(much_later.mean_mg_dl, at_once.mean_mg_dl)


@pytest.mark.parametrize("kwargs", [{"bolus_u": -1.0}, {"carbs_g": float("nan")}, {"temp_basal_u_per_h": -2.0},
                                    {"temp_basal_duration_min": 1e6}, {"carbs_delay_min": -5.0}])
def test_bad_scenarios_are_refused(kwargs: dict) -> None:
    with pytest.raises(ScenarioError):
        Scenario(**kwargs)


def test_bad_horizon_is_refused(twin: DigitalTwin) -> None:
    with pytest.raises(ScenarioError):
        what_if(twin, horizon_min=0)


def test_scheduled_basal_can_be_named_explicitly(twin: DigitalTwin) -> None:
    low = what_if(twin, basal_u_per_h=0.0, n_samples=50, horizon_min=120)[0]
    high = what_if(twin, basal_u_per_h=2.0, n_samples=50, horizon_min=120)[0]
    assert low.eventual_mg_dl > high.eventual_mg_dl
    with pytest.raises(ScenarioError):
        what_if(twin, basal_u_per_h=-1.0)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    readings=st.lists(st.floats(50, 350), min_size=3, max_size=12),
    bolus=st.floats(0.1, 10.0),
    carbs=st.floats(1.0, 120.0),
)
def test_more_insulin_never_raises_and_more_carbs_never_lower_the_mean(readings, bolus, carbs) -> None:
    """Safety property the recommender relies on (common random numbers across scenarios)."""
    t = DigitalTwin.from_therapy_settings(SETTINGS, filter_kind="ekf")
    for k, g in enumerate(readings):
        t.update(g, 5.0 * k)
    none, more_insulin, more_carbs = what_if(t, NO_ACTION, Scenario(bolus_u=bolus), Scenario(carbs_g=carbs),
                                             horizon_min=150, n_samples=40)
    assert np.all(more_insulin.mean_mg_dl <= none.mean_mg_dl + 1e-9)
    assert np.all(more_carbs.mean_mg_dl >= none.mean_mg_dl - 1e-9)
    assert more_insulin.min_mg_dl <= none.min_mg_dl + 1e-9


@pytest.mark.parametrize("tsc_min", [5.0, 10.0])
def test_five_minute_substeps_stay_close_to_finer_ones(tsc_min: float) -> None:
    """The hub forecast's twin mean uses 5-min Euler substeps (``HUB_TWIN_SUBSTEP_MIN``): over its 2-h horizon,
    after 60 g and 4 U, it stays within 6 mg/dL of 2.5-min substeps (measured: 5.0-5.2 mg/dL at the meal's peak)."""
    from dataclasses import replace

    from models.forecast.onnx_forecaster import HUB_TWIN_STEP_MIN, HUB_TWIN_SUBSTEP_MIN
    from models.twin import mvp_model as mvp

    p = replace(mvp.from_therapy_settings(1.0, 50.0, 10.0), tsc_min=tsc_min)
    basal = mvp.basal_mu_per_min(1.0)
    fine = mvp.steady_state(p, 1.0, 140.0)
    fine[mvp.D1] = 60.0
    fine[mvp.ISC] += 4.0 * 1000.0 / (p.t1_min * p.ci_dl_per_min)
    coarse = fine.copy()
    worst = 0.0
    for _ in range(int(120 / HUB_TWIN_STEP_MIN)):
        fine = mvp.step(fine, HUB_TWIN_STEP_MIN, p, basal, substep_min=2.5)
        coarse = mvp.step(coarse, HUB_TWIN_STEP_MIN, p, basal, substep_min=HUB_TWIN_SUBSTEP_MIN)
        worst = max(worst, abs(fine[mvp.GSC] - coarse[mvp.GSC]))
    assert 0.0 < worst < 6.0
