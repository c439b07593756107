"""The Loop arm: Tidepool's PyLoopKit port of Loop's algorithm, in its own virtualenv (``loop_runner.py``).

Loop gets, from the arm observation and what this arm commanded only: CGM readings, the doses it commanded
(boluses, temp basals; the pump history Loop reads), carb entries (announced carbs, 3 h absorption, dynamic
absorption on), the running temp basal, and settings from the programmed therapy: ISF, CR, flat basal,
correction range 110 mg/dL (the hub's target), exponential insulin model (360 min; peak 75 min, 65 for
children), momentum 15 min, retrospective correction on, suspend threshold, max basal (min of the age-group
max basal and 4 x scheduled, the same ceiling the hub obeys) and max bolus from :func:`edge.safety.default_limits`.

Dosing: at an announced meal the person enters the carbs and accepts Loop's recommended bolus, then Loop runs
again with that bolus in its history; otherwise Loop sets temp basals every 5 min ("temp basal only", the
dosing strategy PyLoopKit implements). ``loop-ab`` adds Loop 3's automatic bolus: 40% of the recommended
correction bolus each cycle. Lows: the person's 15-15 rule (:mod:`hardware_sim.trial.peers.person`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from edge.safety import default_limits
from hardware_sim.trial.observation import ArmAction, ArmObservation, ArmSetup
from hardware_sim.trial.peers.peer_arm import PeerArm
from hardware_sim.trial.peers.install import loop_available, loop_python
from hardware_sim.trial.peers.jsonlines import JsonLinesProcess, PeerProcessError
from hardware_sim.trial.peers.oref0_arm import BOLUS_INCREMENT_U, SIM_EPOCH, PeerUnavailableError
from hardware_sim.trial.peers.person import PersonHabits, RescueRule

ARM_NAME = "loop"
RUNNER = Path(__file__).with_name("loop_runner.py")
MS_PER_MIN = 60_000
CARB_ABSORPTION_MIN = 180.0
AUTOMATIC_BOLUS_FRACTION = 0.4


@dataclass(frozen=True)
class LoopConfig:
    target_mg_dl: float = 110.0
    automatic_bolus: bool = False
    habits: PersonHabits = field(default_factory=PersonHabits)


def _floor_to(value: float, increment: float) -> float:
    return math.floor(value / increment + 1e-9) * increment if value > 0 else 0.0


def loop_settings(setup: ArmSetup, config: LoopConfig) -> tuple[dict[str, Any], dict[str, float]]:
    """(settings_dictionary, schedules) for PyLoopKit from one row's programmed therapy."""
    group = setup.age_groups[0]
    limits = default_limits(group)
    basal = float(setup.basal_u_per_h[0])
    settings = {
        "model": [360.0, 65.0 if group == "child" else 75.0],
        "momentum_data_interval": 15.0,
        "suspend_threshold": limits.suspend_threshold_mg_dl,
        "dynamic_carb_absorption_enabled": True,
        "retrospective_correction_integration_interval": 30,
        "recency_interval": 15,
        "retrospective_correction_grouping_interval": 30,
        "rate_rounder": 0.05,
        "insulin_delay": 10,
        "carb_delay": 10,
        "default_absorption_times": [120.0, 180.0, 240.0],
        "max_basal_rate": min(limits.max_basal_u_per_h, limits.max_basal_multiple_of_scheduled * basal),
        "max_bolus": limits.max_bolus_u,
        "retrospective_correction_enabled": True,
    }
    schedules = {"isf": float(setup.correction_factor_mg_dl_per_u[0]), "carb_ratio": float(setup.carb_ratio_g_per_u[0]),
                 "basal": basal, "target_min": config.target_mg_dl, "target_max": config.target_mg_dl}
    return settings, schedules


class LoopService:
    """The PyLoopKit process (one per arm, shared by its rows)."""

    def __init__(self, stderr_path: str | None = None) -> None:
        ok, why = loop_available()
        if not ok:
            raise PeerUnavailableError(f"Loop arm unavailable: {why}")
        self.process = JsonLinesProcess([str(loop_python()), str(RUNNER)], env={"TZ": "UTC"},
                                        stderr_path=stderr_path, cwd=str(RUNNER.parent))
        self.process.request({"op": "ping"})

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.process.request(message)

    def close(self) -> None:
        self.process.close()


class LoopPolicy:
    """One person on Loop."""

    _ids = itertools.count()

    def __init__(self, setup: ArmSetup, service: LoopService, config: LoopConfig | None = None) -> None:
        self.config = config or LoopConfig()
        self.service = service
        self.id = f"{setup.row_labels[0]}#{next(self._ids)}"
        self.epoch_ms = int((SIM_EPOCH + timedelta(minutes=float(setup.start_time_of_day_min))).timestamp() * 1000)
        self.scheduled_basal = float(setup.basal_u_per_h[0])
        self.max_bolus_u = default_limits(setup.age_groups[0]).max_bolus_u
        self.rescue = RescueRule(self.config.habits)
        self.pending_doses: list[list[Any]] = []
        self.last_temp: list[float] | None = None  # [start_ms, end_ms, rate]
        self.last_answer: dict[str, Any] = {}
        settings, schedules = loop_settings(setup, self.config)
        service.request({"op": "init", "id": self.id, "settings": settings, "schedules": schedules})

    def _step(self, time_ms: int, glucose: float | None, carbs: list[list[float]]) -> dict[str, Any]:
        request = {"op": "step", "id": self.id, "time_ms": time_ms, "glucose": glucose, "doses": self.pending_doses,
                   "carbs": carbs, "last_temp": self.last_temp if self.last_temp and self.last_temp[1] > time_ms else None}
        self.pending_doses = []
        answer = self.service.request(request)
        self.last_answer = answer
        return answer

    def _bolus(self, time_ms: int, units: float) -> None:
        self.pending_doses.append(["bolus", time_ms, time_ms + 2 * MS_PER_MIN, units])

    def decide(self, obs: ArmObservation) -> ArmAction:
        time_ms = self.epoch_ms + int(round(obs.time_min * MS_PER_MIN))
        cgm = float(obs.cgm_glucose_mg_dl[0, -1])
        glucose = round(cgm, 1) if math.isfinite(cgm) else None
        carbs_g = float(obs.announced_carbs_g[0, -1])
        bolus = 0.0
        if math.isfinite(carbs_g) and carbs_g > 0:
            answer = self._step(time_ms, glucose, [[time_ms, carbs_g, CARB_ABSORPTION_MIN]])
            bolus = min(_floor_to(float(answer.get("bolus_u") or 0.0), BOLUS_INCREMENT_U), self.max_bolus_u)
            if bolus > 0:
                self._bolus(time_ms, bolus)
            answer = self._step(time_ms, None, [])  # Loop runs again once the bolus is in its history
        else:
            answer = self._step(time_ms, glucose, [])
            if self.config.automatic_bolus:
                auto = _floor_to(AUTOMATIC_BOLUS_FRACTION * float(answer.get("bolus_u") or 0.0), BOLUS_INCREMENT_U)
                if auto > 0:
                    bolus = auto
                    self._bolus(time_ms, auto)
        rate, duration = math.nan, 0.0
        temp = answer.get("temp_basal")
        if temp is not None:
            rate, duration = max(float(temp[0]), 0.0), max(float(temp[1]), 0.0)
            if duration > 0:
                self.pending_doses.append(["tempbasal", time_ms, time_ms + int(duration * MS_PER_MIN), rate])
                self.last_temp = [time_ms, time_ms + int(duration * MS_PER_MIN), rate]
            else:  # cancel: the schedule resumes (a net-zero record ends the running temp in Loop's history)
                self.pending_doses.append(["tempbasal", time_ms, time_ms + 30 * MS_PER_MIN, self.scheduled_basal])
                self.last_temp = None
        rescue = self.rescue.carbs_g(obs.time_min, cgm)
        return ArmAction(np.array([bolus]), np.array([rate]), np.array([duration]), np.array([rescue]))

    def close(self) -> None:
        try:
            self.service.request({"op": "close", "id": self.id})
        except PeerProcessError:
            pass


class LoopArm(PeerArm):
    """Loop (PyLoopKit) for every row; one Python process in the Loop virtualenv per arm."""

    service_type = LoopService
    policy_type = LoopPolicy
    config_type = LoopConfig
    arm_name = ARM_NAME


def make_loop_arm() -> LoopArm:
    return LoopArm()


def make_loop_automatic_bolus_arm() -> LoopArm:
    return LoopArm(LoopConfig(automatic_bolus=True), name="loop-ab")
