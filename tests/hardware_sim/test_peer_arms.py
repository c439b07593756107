"""OpenAPS (oref0) and Loop (PyLoopKit) arms: each skips cleanly when its peer is not installed.

Install with ``python -m hardware_sim.trial.peers.install`` (npm and PyPI registries needed once).
"""

from __future__ import annotations

import numpy as np
import pytest

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.trial.engine import TrialConfig, run_trial
from hardware_sim.trial.observation import ArmObservation, ArmSetup
from hardware_sim.trial.peers import install
from hardware_sim.trial.peers.jsonlines import JsonLinesProcess, PeerProcessError

OREF0_OK, OREF0_WHY = install.oref0_available()
LOOP_OK, LOOP_WHY = install.loop_available()
needs_oref0 = pytest.mark.skipif(not OREF0_OK, reason=f"OpenAPS oref0 not available: {OREF0_WHY}")
needs_loop = pytest.mark.skipif(not LOOP_OK, reason=f"Loop (pyloopkit venv) not available: {LOOP_WHY}")


def one_row_setup(group: str = "adult") -> ArmSetup:
    return ArmSetup(
        row_labels=("r0",), age_groups=(group,), body_weight_kg=np.array([70.0]), basal_u_per_h=np.array([1.0]),
        carb_ratio_g_per_u=np.array([10.0]), correction_factor_mg_dl_per_u=np.array([40.0]),
        total_daily_insulin_u=np.array([40.0]), decision_interval_min=5.0, start_time_of_day_min=0.0,
    )


class Stream:
    """One row's observations 5 min apart; the pump state follows the policy's temp basal commands."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.cgm: list[float] = []
        self.carbs: list[float] = []
        self.temp_rate, self.temp_left = np.nan, 0.0

    def step(self, cgm: float, carbs_g: float = 0.0):
        k = len(self.cgm)
        self.cgm.append(cgm)
        self.carbs.append(carbs_g)
        obs = ArmObservation(
            time_min=5.0 * k, time_of_day_min=5.0 * k, history_times_min=np.arange(k + 1) * 5.0,
            cgm_glucose_mg_dl=np.array([self.cgm]), pump_delivered_u=np.zeros((1, k + 1)),
            announced_carbs_g=np.array([self.carbs]), reservoir_u=np.array([300.0]),
            scheduled_basal_u_per_h=np.array([1.0]),
            temp_basal_u_per_h=np.array([self.temp_rate if self.temp_left > 0 else np.nan]),
            temp_basal_remaining_min=np.array([self.temp_left]), bolus_in_progress_u=np.zeros(1),
            occlusion_alarm=np.zeros(1, dtype=bool), reservoir_empty=np.zeros(1, dtype=bool),
        )
        action = self.policy.decide(obs).validated(1)
        self.temp_left = max(self.temp_left - 5.0, 0.0)
        if not np.isnan(action.temp_basal_u_per_h[0]):
            self.temp_rate, self.temp_left = float(action.temp_basal_u_per_h[0]), float(action.temp_basal_duration_min[0])
        return action


def test_jsonlines_process_reports_a_dead_peer_as_a_typed_error():
    process = JsonLinesProcess(["python3", "-c", "import sys; sys.stdin.readline(); print('not json')"])
    with pytest.raises(PeerProcessError, match="non-JSON"):
        process.request({"op": "ping"})
    process.close()
    with pytest.raises(PeerProcessError):
        JsonLinesProcess(["/nonexistent/peer-binary"])


def test_install_check_reports_each_peer(capsys):
    status = install.main(["all", "--check"])
    out = capsys.readouterr().out
    assert "oref0:" in out and "loop:" in out
    assert status == (0 if OREF0_OK and LOOP_OK else 1)


# ---- OpenAPS ---------------------------------------------------------------------------------------------------

@pytest.fixture
def oref0_service():
    from hardware_sim.trial.peers.oref0_arm import Oref0Service

    service = Oref0Service()
    yield service
    service.close()


@needs_oref0
def test_oref0_profile_is_built_by_oref0_from_the_programmed_settings(oref0_service):
    from hardware_sim.trial.peers.oref0_arm import Oref0Policy

    assert oref0_service.version == "0.7.1"
    policy = Oref0Policy(one_row_setup("child"), oref0_service)
    assert policy.profile["sens"] == 40 and policy.profile["carb_ratio"] == 10
    assert policy.profile["max_iob"] == 7 and policy.profile["max_basal"] == 2  # child hard limits, as the hub's
    assert policy.profile["min_bg"] == policy.profile["max_bg"] == 110


@needs_oref0
def test_oref0_suspends_on_a_fall_and_its_zero_temp_counts_as_negative_iob(oref0_service):
    from hardware_sim.trial.peers.oref0_arm import Oref0Policy

    policy = Oref0Policy(one_row_setup(), oref0_service)
    stream = Stream(policy)
    for _ in range(40):
        stream.step(110.0)
    actions = [stream.step(g) for g in np.linspace(105.0, 62.0, 10)]
    assert any(a.temp_basal_u_per_h[0] == 0.0 for a in actions)
    assert all(a.bolus_u[0] == 0 for a in actions)
    for _ in range(6):
        stream.step(62.0)
    # Pump history is sent newest-first with TempBasalDuration before TempBasal: had oref0 skipped the records,
    # withheld basal would not show up as negative insulin on board.
    assert policy.last_answer["IOB"] < 0


@needs_oref0
def test_oref0_doses_more_for_a_sustained_high_and_boluses_the_meal(oref0_service):
    from hardware_sim.trial.peers.oref0_arm import Oref0Policy

    policy = Oref0Policy(one_row_setup(), oref0_service)
    stream = Stream(policy)
    for _ in range(40):
        stream.step(110.0)
    meal = stream.step(112.0, carbs_g=50.0)
    assert meal.bolus_u[0] >= 5.0  # the wizard bolus: 50 g / 10 g/U
    policy2 = Oref0Policy(one_row_setup(), oref0_service)
    stream2 = Stream(policy2)
    for _ in range(40):
        stream2.step(110.0)
    actions = [stream2.step(g) for g in np.linspace(120.0, 260.0, 15)]
    extra = sum(a.bolus_u[0] for a in actions) + sum(
        (a.temp_basal_u_per_h[0] - 1.0) for a in actions if np.isfinite(a.temp_basal_u_per_h[0]))
    assert extra > 0  # SMB and / or high temps


@needs_oref0
def test_oref0_arm_runs_in_the_trial_engine():
    from hardware_sim.trial.peers.oref0_arm import Oref0Arm

    arm = Oref0Arm()
    try:
        result = run_trial([arm], load_cohort("adult#001"), TrialConfig(days=0.25, seeds=(1,), scenario="standard",
                                                                          start_time_of_day_min=6 * 60))
    finally:
        arm.close()
    rows = result.arms["oref0"]
    assert rows.totals["bolus_u_per_day"][0] > 0 and rows.metrics["time_below_54_pct"][0] < 5.0


# ---- Loop ------------------------------------------------------------------------------------------------------

@pytest.fixture
def loop_service():
    from hardware_sim.trial.peers.loop_arm import LoopService

    service = LoopService()
    yield service
    service.close()


@needs_loop
def test_loop_recommends_a_meal_bolus_and_raises_basal_for_a_high(loop_service):
    from hardware_sim.trial.peers.loop_arm import LoopPolicy

    stream = Stream(LoopPolicy(one_row_setup(), loop_service))
    for _ in range(6):
        stream.step(110.0)
    meal = stream.step(110.0, carbs_g=50.0)
    assert 3.0 <= meal.bolus_u[0] <= 6.5  # Loop's recommendation for 50 g at 10 g/U, at target
    high = Stream(LoopPolicy(one_row_setup(), loop_service))
    actions = [high.step(g) for g in (200.0, 205.0, 210.0, 215.0)]
    assert actions[-1].temp_basal_u_per_h[0] > 1.0 and actions[-1].temp_basal_u_per_h[0] <= 4.0  # <= 4 x basal


@needs_loop
def test_loop_suspends_when_glucose_heads_below_the_suspend_threshold(loop_service):
    from hardware_sim.trial.peers.loop_arm import LoopPolicy

    stream = Stream(LoopPolicy(one_row_setup(), loop_service))
    actions = [stream.step(g) for g in (100.0, 90.0, 80.0, 72.0, 66.0)]
    assert actions[-1].temp_basal_u_per_h[0] == 0.0 and actions[-1].temp_basal_duration_min[0] > 0
    assert all(a.bolus_u[0] == 0 for a in actions)
    assert actions[-1].rescue_carbs_g[0] == 15.0  # the person's 15-15 rule


@needs_loop
def test_loop_arm_runs_in_the_trial_engine():
    from hardware_sim.trial.peers.loop_arm import LoopArm

    arm = LoopArm()
    try:
        result = run_trial([arm], load_cohort("adult#001"), TrialConfig(days=2 / 24, seeds=(1,), scenario="standard",
                                                                          start_time_of_day_min=6 * 60))
    finally:
        arm.close()
    rows = result.arms["loop"]
    assert rows.totals["bolus_u_per_day"][0] > 0 and rows.metrics["time_below_54_pct"][0] == 0.0


def test_missing_peer_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GLUCOTWIN_PEERS_DIR", str(tmp_path))
    from hardware_sim.trial.peers.loop_arm import LoopService
    from hardware_sim.trial.peers.oref0_arm import Oref0Service, PeerUnavailableError

    with pytest.raises(PeerUnavailableError, match="install"):
        LoopService()
    if install.node_executable() is not None:
        with pytest.raises(PeerUnavailableError, match="install"):
            Oref0Service()
