"""The OpenAPS arm: oref0 0.7.1's own code decides, through a persistent node process (``oref0_runner.js``).

What oref0 gets is built ONLY from the arm observation and from what this arm commanded (as a rig reads the
pump history): CGM readings as Nightscout-style entries (device "fakecgm" so flat stretches are not refused),
pump history (its boluses, SMBs and temp basals, newest first, each TempBasalDuration next to its TempBasal),
carb entries (the announced carbs), the running temp basal, and a profile made from the programmed settings.

Setup as in a typical oref1 rig: SMB with COB and after carbs, UAM on, rapid-acting exponential curve
(DIA 6 h), autosens (8 h and 24 h, the lower ratio, refreshed every 30 min), target 110 mg/dL (the hub's),
max IOB and max basal from the same age-group hard limits the hub uses (:func:`edge.safety.default_limits`),
so every arm meets the same rails. The person boluses ``carbs / CR`` (at most the same max bolus) with the
pump's wizard at each announced meal and follows the 15-15 rule for lows (:mod:`hardware_sim.trial.peers.person`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from edge.safety import default_limits
from hardware_sim.trial.observation import ArmAction, ArmObservation, ArmSetup
from hardware_sim.trial.peers.peer_arm import PeerArm
from hardware_sim.trial.peers.install import node_executable, oref0_available, oref0_package_dir
from hardware_sim.trial.peers.jsonlines import JsonLinesProcess, PeerProcessError
from hardware_sim.trial.peers.person import PersonHabits, RescueRule

ARM_NAME = "oref0"
RUNNER = Path(__file__).with_name("oref0_runner.js")
#: Simulated trial minute 0 (at midnight, plus the trial's start time of day) is this UTC instant.
SIM_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
BOLUS_INCREMENT_U = 0.05


class PeerUnavailableError(RuntimeError):
    """The peer algorithm is not installed (see ``hardware_sim.trial.peers.install``)."""


@dataclass(frozen=True)
class Oref0Config:
    target_mg_dl: float = 110.0
    dia_h: float = 6.0
    enable_smb: bool = True
    habits: PersonHabits = PersonHabits()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _floor_to(value: float, increment: float) -> float:
    return math.floor(value / increment + 1e-9) * increment if value > 0 else 0.0


def profile_inputs(setup: ArmSetup, config: Oref0Config) -> dict[str, Any]:
    """oref0 profile inputs (pump settings, schedules, preferences) for one row's programmed therapy."""
    limits = default_limits(setup.age_groups[0])
    target = config.target_mg_dl
    basal = round(float(setup.basal_u_per_h[0]), 3)
    smb = config.enable_smb
    return {
        "settings": {"insulin_action_curve": config.dia_h, "maxBasal": limits.max_basal_u_per_h},
        "basals": [{"i": 0, "start": "00:00:00", "minutes": 0, "rate": basal}],
        "targets": {"units": "mg/dL", "user_preferred_units": "mg/dL", "targets": [
            {"i": 0, "start": "00:00:00", "offset": 0, "low": target, "high": target, "min_bg": target,
             "max_bg": target}]},
        "isf": {"units": "mg/dL", "user_preferred_units": "mg/dL", "sensitivities": [
            {"i": 0, "start": "00:00:00", "offset": 0, "x": 0, "endOffset": 1440,
             "sensitivity": round(float(setup.correction_factor_mg_dl_per_u[0]), 1)}]},
        "carbratio": {"units": "grams", "schedule": [
            {"i": 0, "x": 0, "start": "00:00:00", "offset": 0, "ratio": round(float(setup.carb_ratio_g_per_u[0]), 1),
             "r": round(float(setup.carb_ratio_g_per_u[0]), 1)}]},
        "preferences": {
            "max_iob": limits.max_iob_u, "enableSMB_with_COB": smb, "enableSMB_after_carbs": smb, "enableUAM": smb,
            "enableSMB_always": False, "maxSMBBasalMinutes": 30, "maxUAMSMBBasalMinutes": 30, "SMBInterval": 3,
            "bolus_increment": BOLUS_INCREMENT_U, "curve": "rapid-acting", "min_5m_carbimpact": 8,
        },
    }


class Oref0Service:
    """The node process (one per arm, shared by its rows)."""

    def __init__(self, stderr_path: str | None = None) -> None:
        ok, why = oref0_available()
        if not ok:
            raise PeerUnavailableError(f"OpenAPS arm unavailable: {why}")
        env = {"OREF0_DIR": str(oref0_package_dir()), "TZ": "UTC"}
        self.process = JsonLinesProcess([node_executable() or "node", str(RUNNER)], env=env, stderr_path=stderr_path,
                                        cwd=str(RUNNER.parent))
        self.version = self.process.request({"op": "ping"})["oref0"]

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.process.request(message)

    def close(self) -> None:
        self.process.close()


class Oref0Policy:
    """One person on OpenAPS."""

    _ids = itertools.count()

    def __init__(self, setup: ArmSetup, service: Oref0Service, config: Oref0Config | None = None) -> None:
        self.config = config or Oref0Config()
        self.service = service
        self.id = f"{setup.row_labels[0]}#{next(self._ids)}"
        self.carb_ratio = float(setup.carb_ratio_g_per_u[0])
        self.max_bolus_u = default_limits(setup.age_groups[0]).max_bolus_u  # the same rail as the hub and Loop
        self.epoch = SIM_EPOCH + timedelta(minutes=float(setup.start_time_of_day_min))
        self.rescue = RescueRule(self.config.habits)
        self.pending_events: list[dict[str, Any]] = []  # commanded since the last request, oldest first
        self.last_answer: dict[str, Any] = {}
        self.errors = 0
        answer = service.request({"op": "init", "id": self.id, "profile_inputs": profile_inputs(setup, self.config)})
        self.profile = answer["profile"]

    def _moment(self, time_min: float) -> datetime:
        return self.epoch + timedelta(minutes=float(time_min))

    def decide(self, obs: ArmObservation) -> ArmAction:
        now = self._moment(obs.time_min)
        stamp = _iso(now)
        time_ms = int(now.timestamp() * 1000)
        cgm = float(obs.cgm_glucose_mg_dl[0, -1])
        glucose = None
        if math.isfinite(cgm):
            value = int(round(cgm))
            glucose = {"glucose": value, "sgv": value, "date": time_ms, "dateString": stamp, "device": "fakecgm",
                       "type": "sgv"}
        carbs_g = float(obs.announced_carbs_g[0, -1])
        carbs = []
        meal_bolus = 0.0
        if math.isfinite(carbs_g) and carbs_g > 0:
            carbs = [{"carbs": carbs_g, "created_at": stamp, "enteredBy": "trial"}]
            meal_bolus = min(_floor_to(carbs_g / self.carb_ratio, BOLUS_INCREMENT_U), self.max_bolus_u)
            if meal_bolus > 0:
                self.pending_events.append({"_type": "Bolus", "amount": meal_bolus, "programmed": meal_bolus,
                                            "unabsorbed": 0, "duration": 0, "timestamp": stamp})
        temp_rate = float(obs.temp_basal_u_per_h[0])
        remaining = float(obs.temp_basal_remaining_min[0])
        current_temp = ({"duration": round(remaining), "rate": temp_rate, "temp": "absolute"}
                        if math.isfinite(temp_rate) and remaining > 0 else {"duration": 0, "rate": 0, "temp": "absolute"})
        request = {"op": "step", "id": self.id, "time_ms": time_ms, "glucose": glucose,
                   "pump_events": self.pending_events, "carbs": carbs, "current_temp": current_temp}
        self.pending_events = []
        try:
            answer = self.service.request(request)
        except PeerProcessError:
            self.errors += 1
            raise
        self.last_answer = answer
        rate, duration = math.nan, 0.0
        if answer.get("rate") is not None and answer.get("duration") is not None:
            rate, duration = max(float(answer["rate"]), 0.0), max(float(answer["duration"]), 0.0)
            self.pending_events += [
                {"_type": "TempBasal", "temp": "absolute", "rate": rate, "timestamp": stamp},
                {"_type": "TempBasalDuration", "duration (min)": int(round(duration)), "timestamp": stamp},
            ]
        smb = _floor_to(float(answer.get("units") or 0.0), BOLUS_INCREMENT_U) if self.config.enable_smb else 0.0
        if smb > 0:
            self.pending_events.append({"_type": "Bolus", "amount": smb, "programmed": smb, "unabsorbed": 0,
                                        "duration": 0, "timestamp": stamp, "isSMB": True})
        rescue = self.rescue.carbs_g(obs.time_min, cgm)
        return ArmAction(np.array([meal_bolus + smb]), np.array([rate]), np.array([duration]), np.array([rescue]))

    def close(self) -> None:
        try:
            self.service.request({"op": "close", "id": self.id})
        except PeerProcessError:
            pass


class Oref0Arm(PeerArm):
    """OpenAPS oref0 for every row; one node process per arm (started at :meth:`start`)."""

    service_type = Oref0Service
    policy_type = Oref0Policy
    config_type = Oref0Config
    arm_name = ARM_NAME


def make_oref0_arm() -> Oref0Arm:
    return Oref0Arm()
