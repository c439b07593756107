"""Trial engine: what arms may see, reproducibility, chunk independence, basal-bolus doses, dask runner."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.trial.arms import BasalBolusArm, UnknownArmError, arm_names, make_arm, register_arm
from hardware_sim.trial.engine import (
    TRUE_GLUCOSE_FLOOR_MG_DL,
    TrialConfig,
    TrialConfigError,
    TrialRows,
    run_rows,
    run_trial,
)
from hardware_sim.trial.observation import ArmAction, ArmError, ArmObservation, ArmSetup, PerSubjectArm
from models.glycemic_metrics import glycemic_metrics

SHORT = TrialConfig(days=0.25, seeds=(1,), scenario="standard", start_time_of_day_min=6 * 60, keep_traces=True)

#: Everything an arm may see. A new field must be something a real hub sees (never truth from the simulator).
ALLOWED_OBSERVATION_FIELDS = {
    "time_min", "time_of_day_min", "history_times_min", "cgm_glucose_mg_dl", "pump_delivered_u",
    "announced_carbs_g", "reservoir_u", "scheduled_basal_u_per_h", "temp_basal_u_per_h",
    "temp_basal_remaining_min", "bolus_in_progress_u", "occlusion_alarm", "reservoir_empty",
}


def setup_for(m: int, **overrides) -> ArmSetup:
    values = dict(
        row_labels=tuple(f"r{i}" for i in range(m)), age_groups=("adult",) * m, body_weight_kg=np.full(m, 70.0),
        basal_u_per_h=np.full(m, 1.0), carb_ratio_g_per_u=np.full(m, 10.0),
        correction_factor_mg_dl_per_u=np.full(m, 50.0), total_daily_insulin_u=np.full(m, 40.0),
        decision_interval_min=5.0, start_time_of_day_min=0.0,
    )
    values.update(overrides)
    return ArmSetup(**values)


def observation_for(time_min: float, cgm: list[float], carbs: list[float]) -> ArmObservation:
    m = len(cgm)
    return ArmObservation(
        time_min=time_min, time_of_day_min=time_min % 1440, history_times_min=np.array([time_min]),
        cgm_glucose_mg_dl=np.array(cgm, dtype=float)[:, None], pump_delivered_u=np.zeros((m, 1)),
        announced_carbs_g=np.array(carbs, dtype=float)[:, None], reservoir_u=np.full(m, 300.0),
        scheduled_basal_u_per_h=np.ones(m), temp_basal_u_per_h=np.full(m, np.nan),
        temp_basal_remaining_min=np.zeros(m), bolus_in_progress_u=np.zeros(m),
        occlusion_alarm=np.zeros(m, dtype=bool), reservoir_empty=np.zeros(m, dtype=bool),
    )


class SpyArm:
    """Records every observation; never doses."""

    name = "spy"

    def start(self, setup: ArmSetup) -> None:
        self.setup = setup
        self.observations: list[ArmObservation] = []

    def decide(self, observation: ArmObservation) -> ArmAction:
        self.observations.append(observation)
        return ArmAction.nothing(observation.n_rows)


def test_observation_carries_only_what_a_hub_sees() -> None:
    names = {f.name for f in dataclasses.fields(ArmObservation)}
    assert names == ALLOWED_OBSERVATION_FIELDS
    for forbidden in ("plasma", "true", "interstitial", "state", "eaten", "sensitivity", "egp", "scenario"):
        assert not any(forbidden in name for name in names)


def test_spy_sees_sensor_readings_not_truth_and_cannot_write_history() -> None:
    spy = SpyArm()
    rows = TrialRows.build(load_cohort("adult#001,child#002"), (3,))
    result = run_rows(spy, rows, SHORT)
    cgm = result.traces["cgm_mg_dl"]
    last = spy.observations[-1]
    np.testing.assert_array_equal(last.cgm_glucose_mg_dl, cgm[:, -last.cgm_glucose_mg_dl.shape[1]:])
    assert not np.allclose(np.nan_to_num(cgm), result.traces["true_glucose_mg_dl"])  # noisy, not the truth
    with pytest.raises(ValueError):
        last.cgm_glucose_mg_dl[0, 0] = 100.0
    assert spy.observations[0].time_of_day_min == 360.0
    assert len(spy.observations) == SHORT.n_samples


def test_same_seed_reproduces_and_other_seeds_differ() -> None:
    cohort = load_cohort("adolescent#001,child#001")
    a = run_trial(["basal-bolus"], cohort, SHORT).arms["basal-bolus"]
    b = run_trial(["basal-bolus"], cohort, SHORT).arms["basal-bolus"]
    c = run_trial(["basal-bolus"], cohort, dataclasses.replace(SHORT, seeds=(2,))).arms["basal-bolus"]
    for key, values in a.traces.items():
        np.testing.assert_array_equal(values, b.traces[key])
    assert not np.array_equal(a.traces["cgm_mg_dl"], c.traces["cgm_mg_dl"])


def test_chunking_changes_nothing() -> None:
    cohort = load_cohort("adult#002,adolescent#003,child#004")
    config = dataclasses.replace(SHORT, seeds=(1, 2), scenario="challenging")
    whole = run_trial(["basal-bolus"], cohort, config).arms["basal-bolus"]
    chunked = run_trial(["basal-bolus"], cohort, config, chunk_size=2).arms["basal-bolus"]
    assert whole.names == chunked.names
    for key in whole.traces:
        np.testing.assert_array_equal(whole.traces[key], chunked.traces[key])
    for key in whole.metrics:
        np.testing.assert_array_equal(whole.metrics[key], chunked.metrics[key])


def test_every_arm_meets_the_same_meals_and_sensor() -> None:
    cohort = load_cohort("adult#003")
    config = dataclasses.replace(SHORT, scenario="challenging")
    result = run_trial(["basal-bolus", "basal-bolus-lgs"], cohort, config)
    a, b = result.arms["basal-bolus"].traces, result.arms["basal-bolus-lgs"].traces
    np.testing.assert_array_equal(a["carbs_announced_g"], b["carbs_announced_g"])
    np.testing.assert_array_equal(a["true_glucose_mg_dl"][:, 0], b["true_glucose_mg_dl"][:, 0])


def test_metrics_are_on_true_plasma_glucose() -> None:
    result = run_trial(["basal-bolus"], load_cohort("adult#001"), SHORT).arms["basal-bolus"]
    expected = glycemic_metrics(np.maximum(result.traces["true_glucose_mg_dl"], TRUE_GLUCOSE_FLOOR_MG_DL))
    for key, value in expected.items():
        np.testing.assert_array_equal(result.metrics[key], value)
    sensor = glycemic_metrics(result.traces["cgm_mg_dl"])
    np.testing.assert_array_equal(result.sensor_metrics["mean_glucose_mg_dl"], sensor["mean_glucose_mg_dl"])


def test_basal_bolus_meal_and_correction_doses() -> None:
    arm = BasalBolusArm()
    arm.start(setup_for(4))
    # meal 60 g at CGM 200 (CR 10, CF 50, target 140): 6 + 1.2; meal at 120: 6; no meal at 300: 3.2; no data.
    action = arm.decide(observation_for(0.0, [200.0, 120.0, 300.0, np.nan], [60.0, 60.0, 0.0, 60.0]))
    np.testing.assert_allclose(action.bolus_u, [7.2, 6.0, 3.2, 6.0])
    # 2 h later still 300 mg/dL: no new correction before 3 h; after 3 h: again.
    later = arm.decide(observation_for(120.0, [300.0] * 4, [0.0] * 4))
    np.testing.assert_allclose(later.bolus_u, [0, 0, 0, 0])
    again = arm.decide(observation_for(185.0, [300.0] * 4, [0.0] * 4))
    np.testing.assert_allclose(again.bolus_u, [3.2] * 4)
    assert np.isnan(action.temp_basal_u_per_h).all() and (action.rescue_carbs_g == 0).all()


def test_low_glucose_suspend_and_rescue_carbs() -> None:
    arm = make_arm("basal-bolus-rescue")
    arm.start(setup_for(3))
    action = arm.decide(observation_for(0.0, [60.0, 90.0, np.nan], [0.0] * 3))
    assert action.temp_basal_u_per_h[0] == 0.0 and action.temp_basal_duration_min[0] == 30.0
    assert np.isnan(action.temp_basal_u_per_h[1:]).all()
    np.testing.assert_allclose(action.rescue_carbs_g, [15.0, 0.0, 0.0])
    soon = arm.decide(observation_for(5.0, [60.0] * 3, [0.0] * 3))
    np.testing.assert_allclose(soon.rescue_carbs_g, [0.0, 15.0, 15.0])  # row 0 waits 15 min


def test_engine_delivers_what_the_arm_asked_for() -> None:
    config = dataclasses.replace(SHORT, sensor="ideal", scenario="three-meals")
    cohort = load_cohort("adult#004")
    result = run_trial(["basal-bolus"], cohort, config).arms["basal-bolus"]
    announced = result.traces["carbs_announced_g"][0]
    bolus = result.traces["bolus_u"][0]
    meal_steps = np.flatnonzero(announced > 0)
    assert meal_steps.size >= 1
    for k in meal_steps:
        carbs_only = np.floor(announced[k] / cohort.carb_ratio_g_per_u[0] / 0.05 + 1e-9) * 0.05
        assert bolus[k] >= carbs_only - 1e-9
    # Pump reports and true delivery agree (no occlusion in this scenario); totals are basal + boluses.
    total_true = result.traces["insulin_true_u"].sum()
    assert total_true == pytest.approx(bolus.sum() + cohort.basal_u_per_h[0] * 6, abs=0.1)


def test_per_subject_adapter_equals_the_vectorised_arm() -> None:
    cohort = load_cohort("adult#005,child#005")
    vectorised = run_trial([BasalBolusArm()], cohort, SHORT).arms["basal-bolus"]
    adapter = PerSubjectArm("per-subject", lambda setup: _started(BasalBolusArm(), setup))
    per_subject = run_trial([adapter], cohort, SHORT).arms["per-subject"]
    for key in vectorised.traces:
        np.testing.assert_array_equal(vectorised.traces[key], per_subject.traces[key])


def _started(arm: BasalBolusArm, setup: ArmSetup) -> BasalBolusArm:
    arm.start(setup)
    return arm


def test_malformed_actions_and_configs_are_rejected() -> None:
    class Negative(SpyArm):
        name = "negative"

        def decide(self, observation: ArmObservation) -> ArmAction:
            m = observation.n_rows
            return ArmAction(np.full(m, -1.0), np.full(m, np.nan), np.zeros(m), np.zeros(m))

    with pytest.raises(ArmError):
        run_trial([Negative()], load_cohort("adult#001"), SHORT)
    with pytest.raises(TrialConfigError):
        TrialConfig(seeds=())
    with pytest.raises(TrialConfigError):
        TrialConfig(days=0.0)
    with pytest.raises(UnknownArmError):
        make_arm("closed-loop-magic")


def test_registered_arms_can_be_made_by_name() -> None:
    register_arm("spy-for-test", SpyArm)
    assert "spy-for-test" in arm_names()
    arm = make_arm("spy-for-test")
    assert isinstance(arm, SpyArm) and make_arm("spy-for-test") is not arm
    with pytest.raises(ValueError):
        register_arm("a,b", SpyArm)


def test_no_insulin_arm_goes_high() -> None:
    class Suspend(SpyArm):
        name = "suspend"

        def decide(self, observation: ArmObservation) -> ArmAction:
            m = observation.n_rows
            return ArmAction(np.zeros(m), np.zeros(m), np.full(m, 30.0), np.zeros(m))

    cohort = load_cohort("adult#001")
    config = dataclasses.replace(SHORT, scenario="fasting", sensor="ideal")
    off = run_trial([Suspend()], cohort, config).arms["suspend"]
    on = run_trial(["basal-bolus"], cohort, config).arms["basal-bolus"]
    assert off.traces["insulin_true_u"].sum() == 0.0
    assert off.metrics["mean_glucose_mg_dl"][0] > on.metrics["mean_glucose_mg_dl"][0] + 10


def test_an_overdose_that_empties_plasma_glucose_is_reported_not_a_crash() -> None:
    class Overdose(SpyArm):
        name = "overdose"

        def decide(self, observation: ArmObservation) -> ArmAction:
            m = observation.n_rows
            dose = np.full(m, 25.0 if observation.time_min == 0 else 0.0)
            return ArmAction(dose, np.full(m, np.nan), np.zeros(m), np.zeros(m))

    config = dataclasses.replace(SHORT, scenario="fasting", sensor="ideal")
    result = run_trial([Overdose()], load_cohort("child#001"), config).arms["overdose"]
    assert result.traces["true_glucose_mg_dl"].min() < TRUE_GLUCOSE_FLOOR_MG_DL
    assert result.totals["model_glucose_below_20_pct"][0] > 0
    assert result.metrics["time_below_54_pct"][0] > 0 and np.isfinite(result.metrics["lbgi"][0])


def test_dask_run_is_identical_to_the_single_process_run() -> None:
    pytest.importorskip("dask.distributed")
    from hardware_sim.trial.distributed import run_trial_distributed

    cohort = load_cohort("adult#001,adolescent#001,child#001")
    config = dataclasses.replace(SHORT, days=0.1, seeds=(1, 2), scenario="challenging")
    local = run_trial(["basal-bolus"], cohort, config).arms["basal-bolus"]
    spread = run_trial_distributed(["basal-bolus"], cohort, config, n_workers=2, chunk_size=2).arms["basal-bolus"]
    assert local.names == spread.names and local.seeds.tolist() == spread.seeds.tolist()
    for key in local.traces:
        np.testing.assert_array_equal(local.traces[key], spread.traces[key])
    for key in local.metrics:
        np.testing.assert_array_equal(local.metrics[key], spread.metrics[key])


@pytest.mark.slow
def test_basal_bolus_one_day_on_all_thirty_subjects_resembles_the_reference() -> None:
    """physiology.md: simglucose basal-bolus, 1 day: adults TIR 93.8%, adolescents 78.6%, children 72.6%."""
    from hardware_sim.trial.results import group_summary

    result = run_trial(["basal-bolus"], load_cohort("all"), TrialConfig(days=1.0, seeds=(1, 2, 3)))
    groups = group_summary(result.arms["basal-bolus"])
    assert groups["adult"]["time_in_range_70_180_pct"] > 85
    assert groups["adult"]["time_in_range_70_180_pct"] > groups["child"]["time_in_range_70_180_pct"]
    assert groups["child"]["time_below_70_pct"] > groups["adult"]["time_below_70_pct"]


class WaitBeforeMeals(SpyArm):
    """Never doses; asks the person to wait ``wait_min`` before every announced meal."""

    def __init__(self, wait_min: float, name: str) -> None:
        self.wait_min, self.name = wait_min, name

    def start(self, setup: ArmSetup) -> None:
        pass

    def decide(self, observation: ArmObservation) -> ArmAction:
        m = observation.n_rows
        wait = np.where(observation.carbs_announced_now_g > 0, self.wait_min, 0.0)
        return ArmAction(np.zeros(m), np.full(m, np.nan), np.zeros(m), np.zeros(m), wait)


def test_a_pre_bolus_wait_moves_the_announced_meal_later_and_keeps_its_grams() -> None:
    cohort = load_cohort("adult#001,child#002")
    config = dataclasses.replace(SHORT, days=1.0, scenario="three-meals", sensor="ideal")
    at_once = run_trial([WaitBeforeMeals(0.0, "at-once")], cohort, config).arms["at-once"]
    waiting = run_trial([WaitBeforeMeals(15.0, "waiting")], cohort, config).arms["waiting"]
    eaten_now, eaten_later = at_once.traces["carbs_eaten_g"], waiting.traces["carbs_eaten_g"]
    announced = at_once.traces["carbs_announced_g"]
    np.testing.assert_array_equal(announced, waiting.traces["carbs_announced_g"])
    np.testing.assert_allclose(eaten_later.sum(axis=1), eaten_now.sum(axis=1))
    for row in range(cohort.size):
        for k in np.flatnonzero(announced[row] > 0):
            assert eaten_now[row, k] > 0 and eaten_later[row, k] == 0.0  # the meal no longer starts at once
            assert eaten_later[row, k + 3] > 0  # 15 min = 3 decision intervals later
    assert (waiting.totals["meals_eaten_after_pre_bolus_per_day"] == (announced > 0).sum(axis=1)).all()
    assert (at_once.totals["meals_eaten_after_pre_bolus_per_day"] == 0).all()
    # With nothing else different, eating later moves the post-meal rise later: the glucose traces differ.
    assert not np.array_equal(at_once.traces["true_glucose_mg_dl"], waiting.traces["true_glucose_mg_dl"])


@pytest.mark.parametrize("wait", [-5.0, np.nan, 31.0])
def test_an_impossible_pre_bolus_wait_is_rejected(wait: float) -> None:
    action = ArmAction(np.zeros(2), np.full(2, np.nan), np.zeros(2), np.zeros(2), np.array([0.0, wait]))
    with pytest.raises(ArmError, match="eat_after_min"):
        action.validated(2)


def test_only_the_timing_may_be_left_out_of_an_action() -> None:
    ArmAction(np.zeros(2), np.full(2, np.nan), np.zeros(2), np.zeros(2)).validated(2)
    with pytest.raises(ArmError, match="temp_basal_u_per_h"):
        ArmAction(np.zeros(2), None, np.zeros(2), np.zeros(2)).validated(2)  # type: ignore[arg-type]


def test_actions_with_and_without_timing_stack() -> None:
    plain = ArmAction.nothing(2)
    timed = ArmAction(np.zeros(1), np.full(1, np.nan), np.zeros(1), np.zeros(1), np.array([15.0]))
    stacked = ArmAction.stack([plain, timed]).validated(3)
    np.testing.assert_array_equal(stacked.eat_after(3), [0.0, 0.0, 15.0])
