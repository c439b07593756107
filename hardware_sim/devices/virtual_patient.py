"""A UVA/Padova virtual patient behind the emulated devices: the CGM's glucose source and the pump's insulin sink.

:class:`VirtualPatient` wraps one subject of the published cohort (:mod:`hardware_sim.patient`) and advances it
*lazily*: nothing is computed until someone asks for glucose at a sim minute; then the model is stepped from its
last whole minute to the asked one, one minute at a time, each minute with

* the insulin the pump delivered in that minute (``deliver_insulin`` bins each delivery by the minute its slice
  ended in: a slice ``[k, k+1]`` reported at minute ``k+1`` is minute ``k``'s insulin, as a rate in U/min), and
* the person's eating rate in that minute (:meth:`VirtualPatient.eat` spreads a meal at ``rate_g_per_min``,
  5 g/min as simglucose does), and optionally the scenario's insulin-sensitivity and EGP scales.

Because the model always advances in the same 1-min steps with the same per-minute inputs, asking every minute,
every 5 minutes or once at the end gives identical states (tested).

The pump is pulled, not trusted to have pushed: the pump and the sensor wake on the same sim minute and either
may run first, so before stepping, the patient asks the attached pump model to deliver everything due
(:meth:`attach_pump`; ``PumpModel.advance_to`` is idempotent). Insulin that still arrives for a minute already
stepped (no pump attached, or a pump advanced late) is given in the next minute and counted in
``late_insulin_u``.

What the CGM sees: interstitial glucose Gs/Vg at the asked minute, through the vectorised sensor model of
:mod:`hardware_sim.sensor_model` (Breton & Kovatchev 2008 Johnson-SU noise with AR(1) correlation,
Facchinetti-style calibration drift, night-time compression lows), seeded per subject and seed. The sensor
model's own warm-up, sessions and dropouts are off here: on the radio those are the BLE sensor's job
(``CgmSensorConfig.warmup_min``, ``malfunction_windows_min``) and the fault plan's (link drops), and a glucose
source must always return a number. The noise is drawn in blocks of ``sensor_block_days`` (default 10 days, one
sensor's life): each block is a new sensor with fresh drift.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from hardware_sim.patient import Cohort, UvaPadovaCohortModel, load_cohort
from hardware_sim.random_streams import RowStreams, subject_key
from hardware_sim.sensor_model import CgmSensorArray, CgmSensorParameters, sensor_parameters

logger = logging.getLogger(__name__)

MINUTES_PER_DAY = 1440
_EPS = 1e-9

#: Default sensor for the emulated devices: the "realistic" preset without what the BLE sensor already models.
DEVICE_SENSOR = replace(sensor_parameters("realistic"), sessions_enabled=False, dropout_start_probability=0.0)


class VirtualPatientError(ValueError):
    """Bad input to the virtual patient (negative insulin or carbs, time going backwards, bad sensor preset)."""


@dataclass(frozen=True)
class MinuteRecord:
    """What happened to the patient in minute ``minute`` (the interval [minute, minute + 1))."""

    minute: int
    insulin_u: float
    carbs_g: float
    plasma_glucose_mg_dl: float  # at the END of the minute
    interstitial_glucose_mg_dl: float  # at the END of the minute


class VirtualPatient:
    """One UVA/Padova subject as a :class:`GlucoseSource` and an :class:`InsulinSink`.

    >>> patient = VirtualPatient("adult#001", seed=1)
    >>> patient.eat(50.0, at_min=10)
    >>> patient.deliver_insulin(5.0, sim_minute=11)
    >>> round(patient.true_interstitial_glucose_mg_dl(0.0))
    139
    """

    def __init__(
        self,
        subject: str | Cohort = "adult#001",
        *,
        seed: int = 0,
        sensor: CgmSensorParameters | str | None = None,
        start_time_of_day_min: float = 0.0,
        sensor_block_days: float = 10.0,
        record_history: bool = True,
    ) -> None:
        cohort = load_cohort(subject) if isinstance(subject, str) else subject
        if cohort.size != 1:
            raise VirtualPatientError(f"a VirtualPatient is one subject; got {cohort.size} ({', '.join(cohort.names)})")
        if seed < 0 or int(seed) != seed:
            raise VirtualPatientError(f"seed must be a non-negative integer, got {seed!r}")
        self.cohort = cohort
        self.name = cohort.names[0]
        self.seed = int(seed)
        self.model = UvaPadovaCohortModel(cohort)
        self._initial_glucose_mg_dl = (float(self.model.plasma_glucose_mg_dl[0]),
                                       float(self.model.interstitial_glucose_mg_dl[0]))
        params = DEVICE_SENSOR if sensor is None else (sensor_parameters(sensor) if isinstance(sensor, str) else sensor)
        if params.sessions_enabled or params.dropout_start_probability > 0:
            raise VirtualPatientError(
                "sensor sessions (warm-up) and dropouts belong to the BLE sensor (CgmSensorConfig) and the fault "
                "plan: a glucose source must always return a value; disable them in the sensor parameters"
            )
        self.sensor_parameters = params
        self.start_time_of_day_min = float(start_time_of_day_min)
        if not sensor_block_days > 0:
            raise VirtualPatientError("sensor_block_days must be > 0")
        self._block_samples = max(1, int(round(sensor_block_days * MINUTES_PER_DAY / params.sample_interval_min)))
        self._sensor_blocks: dict[int, CgmSensorArray] = {}
        self._streams_key = subject_key(self.name)

        self._minute = 0  # minutes stepped so far: the model's state is at sim minute self._minute
        self._insulin_u: dict[int, float] = {}
        self._carbs_g_per_min: dict[int, float] = {}
        self._sensitivity: np.ndarray | None = None
        self._egp: np.ndarray | None = None
        self._pump_pull: Callable[[float], object] | None = None
        self.late_insulin_u = 0.0
        self.late_carbs_g = 0.0
        self.delivered_insulin_u = 0.0
        self.eaten_carbs_g = 0.0
        self.record_history = record_history
        self.history: list[MinuteRecord] = []

    # -- therapy the subject's clinician would have set ----------------------------------------------------------
    @property
    def basal_u_per_h(self) -> float:
        """The steady-state basal rate (u2ss * BW / 6000 * 60): the pump's basal program for this subject."""
        return float(self.cohort.basal_u_per_h[0])

    def pump_basal_u_per_h(self, increment_u_per_h: float = 0.01) -> float:
        """The basal program a pump can hold: the steady-state rate rounded to the pump's increment.

        Pumps program basal in steps (0.01 U/h here; IDS carries it as an exact SFLOAT), so the patient gets
        slightly more or less than the exact steady state (adult#001: 1.27 vs 1.2674 U/h) and drifts a little
        over a fasting day, as real people do.
        """
        if not increment_u_per_h > 0:
            raise VirtualPatientError("the basal increment must be > 0")
        steps = max(1, round(self.basal_u_per_h / increment_u_per_h))
        return round(steps * increment_u_per_h, 6)

    def therapy(self) -> dict[str, float | str]:
        """Therapy settings a clinician would start this subject on, in the hub's config vocabulary.

        Basal: the steady-state rate. Carb ratio: simglucose's Quest table (it equals the 500 rule, 500/TDI).
        Insulin sensitivity: the 1800 rule, 1800/TDI mg/dL per U (Walsh), NOT the Quest table's CF, which is
        several times smaller than the subjects' response (adult#001: 8.8 vs 36 by the rule) and would make a
        hub's corrections dangerous; the Quest value is reported alongside. No model-derived value is given:
        handing the hub the simulator's own linearisation would be an inverse crime.
        """
        c = self.cohort
        return {
            "age_group": c.age_groups[0],
            "body_weight_kg": round(float(c.body_weight_kg[0]), 1),
            "basal_u_per_h": self.pump_basal_u_per_h(),
            "insulin_sensitivity_mg_dl_per_u": round(1800.0 / float(c.total_daily_insulin_u[0]), 1),
            "carb_ratio_g_per_u": round(float(c.carb_ratio_g_per_u[0]), 1),
            "quest_correction_factor_mg_dl_per_u": round(float(c.correction_factor_mg_dl_per_u[0]), 1),
        }

    # -- inputs ---------------------------------------------------------------------------------------------------
    def attach_pump(self, pump: object) -> None:
        """Pull deliveries from ``pump`` (anything with ``advance_to(sim_minute)``) before each model step."""
        advance = getattr(pump, "advance_to", None)
        if not callable(advance):
            raise VirtualPatientError(f"{pump!r} has no advance_to(sim_minute)")
        self._pump_pull = advance

    def deliver_insulin(self, units: float, sim_minute: float) -> None:
        """InsulinSink: ``units`` delivered in the slice that ended at ``sim_minute``."""
        units = float(units)
        if not (math.isfinite(units) and units >= 0) or not math.isfinite(sim_minute):
            raise VirtualPatientError(f"cannot deliver {units!r} U at minute {sim_minute!r}")
        if units == 0:
            return
        minute = max(0, math.ceil(sim_minute - _EPS) - 1)
        if minute < self._minute:
            self.late_insulin_u += units
            minute = self._minute
        self._insulin_u[minute] = self._insulin_u.get(minute, 0.0) + units
        self.delivered_insulin_u += units

    def eat(self, carbs_g: float, at_min: float, *, rate_g_per_min: float = 5.0) -> None:
        """The person starts eating ``carbs_g`` at sim minute ``at_min`` (rounded down), at ``rate_g_per_min``."""
        carbs_g, rate = float(carbs_g), float(rate_g_per_min)
        if not (math.isfinite(carbs_g) and carbs_g >= 0 and math.isfinite(rate) and rate > 0 and math.isfinite(at_min)):
            raise VirtualPatientError(f"cannot eat {carbs_g!r} g at {rate_g_per_min!r} g/min at minute {at_min!r}")
        start = max(0, math.floor(at_min + _EPS))
        if start < self._minute:
            self.late_carbs_g += carbs_g
            start = self._minute
        full_min, rest = divmod(carbs_g, rate)
        profile = [rate] * int(full_min) + ([rest] if rest > _EPS else [])
        for offset, grams in enumerate(profile):
            self._carbs_g_per_min[start + offset] = self._carbs_g_per_min.get(start + offset, 0.0) + grams
        self.eaten_carbs_g += carbs_g

    def set_scenario_modifiers(self, insulin_sensitivity_scale: np.ndarray | None, egp_scale: np.ndarray | None) -> None:
        """Per-minute multipliers from sim minute 0 (a scenario realisation's row); 1 beyond their end."""
        for label, values in (("insulin_sensitivity_scale", insulin_sensitivity_scale), ("egp_scale", egp_scale)):
            if values is not None and not (np.all(np.isfinite(values)) and np.all(np.asarray(values) > 0)):
                raise VirtualPatientError(f"{label} must be finite and > 0")
        self._sensitivity = None if insulin_sensitivity_scale is None else np.asarray(insulin_sensitivity_scale, float)
        self._egp = None if egp_scale is None else np.asarray(egp_scale, float)

    # -- time -----------------------------------------------------------------------------------------------------
    @property
    def minute(self) -> int:
        """The sim minute the model's state is at."""
        return self._minute

    def advance_to(self, sim_minute: float) -> None:
        """Step the model, one minute at a time, up to the whole minute at or before ``sim_minute``."""
        if not math.isfinite(sim_minute):
            raise VirtualPatientError(f"sim_minute must be finite, got {sim_minute!r}")
        target = math.floor(sim_minute + _EPS)
        if target <= self._minute:
            return
        if self._pump_pull is not None:
            self._pump_pull(float(target))  # deliveries up to the target land in self._insulin_u first
        while self._minute < target:
            k = self._minute
            insulin_u = self._insulin_u.pop(k, 0.0)
            carbs = self._carbs_g_per_min.pop(k, 0.0)
            self.model.step(carbs, insulin_u, 1.0, insulin_sensitivity_scale=self._scale(self._sensitivity, k),
                            egp_scale=self._scale(self._egp, k))
            self._minute = k + 1
            if self.record_history:
                self.history.append(MinuteRecord(k, insulin_u, carbs, float(self.model.plasma_glucose_mg_dl[0]),
                                                 float(self.model.interstitial_glucose_mg_dl[0])))

    @staticmethod
    def _scale(values: np.ndarray | None, minute: int) -> float | None:
        if values is None or minute >= len(values):
            return None
        return float(values[minute])

    # -- glucose --------------------------------------------------------------------------------------------------
    def true_interstitial_glucose_mg_dl(self, sim_minute: float) -> float:
        """Gs/Vg at the whole minute at or before ``sim_minute`` (stepping there; earlier minutes from history)."""
        past = self._past(sim_minute)
        if past is not None:
            return past[1]
        self.advance_to(sim_minute)
        return float(self.model.interstitial_glucose_mg_dl[0])

    def plasma_glucose_mg_dl(self, sim_minute: float) -> float:
        """Gp/Vg at the whole minute at or before ``sim_minute``."""
        past = self._past(sim_minute)
        if past is not None:
            return past[0]
        self.advance_to(sim_minute)
        return float(self.model.plasma_glucose_mg_dl[0])

    def interstitial_glucose_mg_dl(self, sim_minute: float) -> float:
        """GlucoseSource: what the CGM reads at ``sim_minute`` (true IG through the seeded sensor model)."""
        true_ig = self.true_interstitial_glucose_mg_dl(sim_minute)
        sample = max(0, int(round(sim_minute / self.sensor_parameters.sample_interval_min)))
        return self.sensor_reading_mg_dl(sample, true_ig)

    def sensor_reading_mg_dl(self, sample: int, true_interstitial_mg_dl: float) -> float:
        """The sensor model's reading of sample ``sample`` (every ``sample_interval_min``) for a true IG."""
        block, index = divmod(int(sample), self._block_samples)
        array = self._sensor_blocks.get(block)
        if array is None:
            array = CgmSensorArray(
                RowStreams([self.seed], [self._streams_key], [block]), self._block_samples, self.sensor_parameters,
                start_time_of_day_min=self.start_time_of_day_min
                + block * self._block_samples * self.sensor_parameters.sample_interval_min,
            )
            self._sensor_blocks = {block: array}  # only the current sensor is kept
        return float(array.read(index, np.array([true_interstitial_mg_dl]))[0])

    def _past(self, sim_minute: float) -> tuple[float, float] | None:
        """(plasma, interstitial) at a whole minute already stepped past, or None if it is not in the past."""
        if not math.isfinite(sim_minute):
            raise VirtualPatientError(f"sim_minute must be finite, got {sim_minute!r}")
        minute = max(0, math.floor(sim_minute + _EPS))
        if minute >= self._minute:
            return None
        if minute == 0:
            return self._initial_glucose_mg_dl
        if not self.record_history:
            raise VirtualPatientError(f"minute {sim_minute:g} is in the patient's past and no history is kept")
        record = self.history[minute - 1]
        return record.plasma_glucose_mg_dl, record.interstitial_glucose_mg_dl
