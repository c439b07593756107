"""The GlucoTwin trial arm: hub settings from the programmed therapy, advice accepted, a short real trial."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.trial.arms import make_arm
from hardware_sim.trial.engine import TrialConfig, run_trial
from hardware_sim.trial.glucotwin_arm import GlucoTwinArmConfig, GlucoTwinPolicy, therapy_settings_for
from hardware_sim.trial.observation import ArmObservation, ArmSetup


def one_row_setup(**overrides) -> ArmSetup:
    values = dict(
        row_labels=("r0",), age_groups=("adult",), body_weight_kg=np.array([70.0]), basal_u_per_h=np.array([1.0]),
        carb_ratio_g_per_u=np.array([10.0]), correction_factor_mg_dl_per_u=np.array([40.0]),
        total_daily_insulin_u=np.array([40.0]), decision_interval_min=5.0, start_time_of_day_min=0.0,
    )
    values.update(overrides)
    return ArmSetup(**values)


class Stream:
    """Feeds one policy observations 5 min apart, with a growing history, as the engine does."""

    def __init__(self, policy: GlucoTwinPolicy) -> None:
        self.policy = policy
        self.cgm: list[float] = []
        self.delivered: list[float] = []
        self.carbs: list[float] = []
        self.temp_rate = np.nan
        self.temp_left = 0.0

    def step(self, cgm: float, carbs_g: float = 0.0):
        k = len(self.cgm)
        rate = self.temp_rate if self.temp_left > 0 else 1.0
        self.delivered.append(0.0 if k == 0 else rate * 5 / 60 + self._last_bolus)
        self.cgm.append(cgm)
        self.carbs.append(carbs_g)
        obs = ArmObservation(
            time_min=5.0 * k, time_of_day_min=5.0 * k, history_times_min=np.arange(k + 1) * 5.0,
            cgm_glucose_mg_dl=np.array([self.cgm]), pump_delivered_u=np.array([self.delivered]),
            announced_carbs_g=np.array([self.carbs]), reservoir_u=np.array([300.0]),
            scheduled_basal_u_per_h=np.array([1.0]),
            temp_basal_u_per_h=np.array([self.temp_rate if self.temp_left > 0 else np.nan]),
            temp_basal_remaining_min=np.array([self.temp_left]), bolus_in_progress_u=np.zeros(1),
            occlusion_alarm=np.zeros(1, dtype=bool), reservoir_empty=np.zeros(1, dtype=bool),
        )
        action = self.policy.decide(obs).validated(1)
        self._last_bolus = float(action.bolus_u[0])
        self.temp_left = max(self.temp_left - 5.0, 0.0)
        if not np.isnan(action.temp_basal_u_per_h[0]):
            self.temp_rate = float(action.temp_basal_u_per_h[0])
            self.temp_left = float(action.temp_basal_duration_min[0])
        return action

    _last_bolus = 0.0


def test_hub_settings_come_from_the_programmed_therapy_and_are_clipped_to_accepted_ranges():
    settings, clipped = therapy_settings_for(one_row_setup(age_groups=("child",), correction_factor_mg_dl_per_u=np.array([33.0])))
    assert settings.insulin_sensitivity_mg_dl_per_u == 33.0 and settings.carb_ratio_g_per_u == 10.0
    assert settings.age_group == "child" and settings.insulin_peak_min == 65.0 and clipped == ()
    # adult#009's published correction factor (7.6 mg/dL/U) is below what the hub accepts: clipped UP (less insulin)
    settings, clipped = therapy_settings_for(one_row_setup(correction_factor_mg_dl_per_u=np.array([7.6])))
    assert settings.insulin_sensitivity_mg_dl_per_u == 10.0 and clipped == ("insulin_sensitivity_mg_dl_per_u",)


def test_an_announced_meal_gets_a_meal_bolus_near_carbs_over_ratio():
    stream = Stream(GlucoTwinPolicy(one_row_setup()))
    for _ in range(24):
        stream.step(120.0)
    action = stream.step(125.0, carbs_g=60.0)
    # 60 g / 10 g/U = 6 U, give or take the correction to the 110 target and the twin's IOB; never above max bolus
    assert 4.5 <= action.bolus_u[0] <= 7.5
    assert action.rescue_carbs_g[0] == 0


def test_pre_bolus_advice_is_followed_the_meal_reaches_the_twin_when_eaten_and_nothing_else_is_advised_meanwhile():
    policy = GlucoTwinPolicy(one_row_setup())
    stream = Stream(policy)
    for _ in range(24):
        stream.step(150.0)
    action = stream.step(150.0, carbs_g=60.0)
    assert action.bolus_u[0] > 0 and action.eat_after_min[0] == 15.0
    consulted = policy.memory.consultations
    # while the person waits to eat, readings that would otherwise prompt advice (below 90) prompt none
    waiting = [stream.step(g) for g in (85.0, 80.0)]
    assert policy.memory.consultations == consulted
    assert all(a.bolus_u[0] == 0 and a.rescue_carbs_g[0] == 0 and np.isnan(a.temp_basal_u_per_h[0]) for a in waiting)
    assert sum(c.grams for c in policy.twin.carbs) == 0.0  # not eaten yet
    stream.step(150.0)  # 15 min: eating starts
    assert sum(c.grams for c in policy.twin.carbs) == 0.0
    stream.step(160.0)  # the next reading: the twin learns of the meal, as it does for a meal eaten at once
    assert sum(c.grams for c in policy.twin.carbs) == pytest.approx(60.0)


def test_the_hub_knows_the_total_daily_insulin_only_after_a_day_of_pump_history():
    policy = GlucoTwinPolicy(one_row_setup())
    stream = Stream(policy)
    for _ in range(289):  # minutes 0 .. 1440, 1 U/h reported
        stream.step(120.0)
    assert policy._snapshot(_observation_at(stream, 287)).total_daily_insulin_u is None  # 23 h 55 min
    day = policy._snapshot(_observation_at(stream, 288)).total_daily_insulin_u
    assert day == pytest.approx(24.0, abs=0.1)


def _observation_at(stream: "Stream", k: int) -> ArmObservation:
    """The observation of decision ``k`` with the engine's 24-h history window."""
    lo = max(0, k + 1 - 288)
    return ArmObservation(
        time_min=5.0 * k, time_of_day_min=5.0 * k, history_times_min=np.arange(lo, k + 1) * 5.0,
        cgm_glucose_mg_dl=np.array([stream.cgm[lo : k + 1]]), pump_delivered_u=np.array([stream.delivered[lo : k + 1]]),
        announced_carbs_g=np.array([stream.carbs[lo : k + 1]]), reservoir_u=np.array([300.0]),
        scheduled_basal_u_per_h=np.array([1.0]), temp_basal_u_per_h=np.array([np.nan]),
        temp_basal_remaining_min=np.zeros(1), bolus_in_progress_u=np.zeros(1),
        occlusion_alarm=np.zeros(1, dtype=bool), reservoir_empty=np.zeros(1, dtype=bool),
    )


def test_eating_at_once_is_a_config_switch():
    stream = Stream(GlucoTwinPolicy(one_row_setup(), GlucoTwinArmConfig(follow_pre_bolus_timing=False)))
    for _ in range(24):
        stream.step(150.0)
    action = stream.step(150.0, carbs_g=60.0)
    assert action.bolus_u[0] > 0 and action.eat_after_min[0] == 0.0
    stream.step(150.0)
    assert sum(c.grams for c in stream.policy.twin.carbs) == pytest.approx(60.0)


def test_a_low_gets_rescue_carbs_and_suspension_but_not_again_within_15_minutes():
    policy = GlucoTwinPolicy(one_row_setup())
    stream = Stream(policy)
    for _ in range(12):
        stream.step(100.0)
    actions = [stream.step(g) for g in (80.0, 66.0, 62.0, 60.0, 61.0)]
    first = next(i for i, a in enumerate(actions) if a.rescue_carbs_g[0] > 0)
    assert actions[first].temp_basal_u_per_h[0] == 0.0  # basal suspended with the carbs
    assert all(a.bolus_u[0] == 0 for a in actions)
    later = [a.rescue_carbs_g[0] for a in actions[first + 1 : first + 3]]
    assert later == [0.0, 0.0]  # recheck in 15 min: no second helping at 5 and 10 min
    # the carbs eaten reach the twin at the next reading, as carbs the hub knows about
    assert sum(c.grams for c in policy.twin.carbs) == pytest.approx(actions[first].rescue_carbs_g[0])


def test_missing_readings_never_dose():
    stream = Stream(GlucoTwinPolicy(one_row_setup()))
    for _ in range(12):
        stream.step(150.0)
    for _ in range(6):
        action = stream.step(np.nan)
        assert action.bolus_u[0] == 0 and action.rescue_carbs_g[0] == 0


def test_the_arm_is_registered_and_runs_a_short_challenging_trial_safely():
    arm = make_arm("glucotwin")
    assert arm.name == "glucotwin"
    cohort = load_cohort("adult#001,child#001")
    config = TrialConfig(days=1.0, seeds=(1,), scenario="challenging")
    result = run_trial([arm], cohort, config)
    rows = result.arms["glucotwin"]
    assert rows.totals["bolus_u_per_day"].min() > 0  # meal boluses were given and delivered
    assert (rows.totals["model_glucose_below_20_pct"] == 0).all()
    assert (rows.metrics["time_below_54_pct"] < 1.0).all()
    assert (rows.metrics["time_in_range_70_180_pct"] > 60.0).all()
    # the hub consulted its recommender only when it could matter, but at every meal
    policies = arm._policies
    assert all(0 < p.memory.consultations < p.memory.decisions for p in policies)


def test_config_always_consult_is_a_dataclass_switch():
    config = dataclasses.replace(GlucoTwinArmConfig(), always_consult=True)
    assert config.always_consult and not GlucoTwinArmConfig().always_consult


@pytest.mark.slow
def test_glucotwin_beats_basal_bolus_on_time_out_of_range_over_three_days():
    cohort = load_cohort("adult#001,adolescent#001,child#001")
    result = run_trial(["basal-bolus", "glucotwin"], cohort, TrialConfig(days=3.0, seeds=(1,), scenario="challenging"))
    out = {arm: 100 - rows.metrics["time_in_range_70_180_pct"].mean() for arm, rows in result.arms.items()}
    assert out["glucotwin"] < out["basal-bolus"]


def test_hub_cadence_consults_at_most_every_15_minutes_outside_meals_but_always_for_a_meal():
    from hardware_sim.trial.glucotwin_arm import PIPELINE_CADENCE

    policy = GlucoTwinPolicy(one_row_setup(), PIPELINE_CADENCE)
    stream = Stream(policy)
    for _ in range(6):
        stream.step(120.0)
    before = policy.memory.consultations
    for _ in range(3):  # 15 min of highs: one consultation only
        stream.step(230.0)
    assert policy.memory.consultations - before == 1
    stream.step(230.0, carbs_g=40.0)  # a meal is always answered
    assert policy.memory.consultations - before == 2
