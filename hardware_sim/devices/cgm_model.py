"""State model of an emulated CGM sensor (no radio, no clock: every method takes the sim minute).

A session starts at a sim minute; from then on the sensor takes a reading every ``interval_min`` minutes
(after an optional warm-up), numbered by its *time offset* (whole minutes since session start, u16 on the
wire), and stores every reading of the session. The GATT front end (:mod:`hardware_sim.devices.cgm_sensor`)
serves these records live and through the Record Access Control Point.

Choices:

* Glucose is rounded to whole mg/dL and clamped to the device range 40..400 mg/dL, as commercial sensors
  report it; a clamped value carries RESULT_BELOW/ABOVE_DEVICE_RANGE.
* Trend is the difference to the previous reading divided by the interval (mg/dL/min, 0.1 resolution);
  the first reading of a session has no trend.
* CGMS has no "warm-up" annunciation: during warm-up the sensor takes no readings and its CGM Status
  reports CALIBRATION_NOT_ALLOWED (a Dexcom-like sensor cannot be calibrated while warming up).
* Malfunction windows produce no readings (the sensor skips them, so the hub sees a real gap that no
  backfill can fill) and raise SENSOR_MALFUNCTION in the status; low battery is flagged on every reading
  taken after ``low_battery_after_min``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from firmware_bridge.codec.cgms import CgmMeasurement, CgmStatus, SensorStatusAnnunciation

from .glucose_source import GlucoseSource

A = SensorStatusAnnunciation
DEVICE_RANGE_MG_DL = (40.0, 400.0)
MAX_TIME_OFFSET_MIN = 0xFFFF


@dataclass(frozen=True)
class CgmSensorConfig:
    interval_min: int = 5
    warmup_min: int = 0
    e2e_crc: bool = False
    trend: bool = True
    session_run_time_h: int = 14 * 24
    hypo_mg_dl: float = 70.0
    hyper_mg_dl: float = 250.0
    rate_alert_mg_dl_min: float = 3.0
    low_battery_after_min: float | None = None
    malfunction_windows_min: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.interval_min < 1:
            raise ValueError("interval_min must be >= 1")
        if self.warmup_min < 0:
            raise ValueError("warmup_min must be >= 0")


class SessionError(RuntimeError):
    """A session operation that the sensor's state does not allow (e.g. start while running)."""


@dataclass
class CgmSensorModel:
    """What the sensor knows: its session, its stored records, its health."""

    source: GlucoseSource
    config: CgmSensorConfig = field(default_factory=CgmSensorConfig)
    session_start_min: float | None = None
    records: list[CgmMeasurement] = field(default_factory=list)
    _next_offset_min: int = 0

    # -- session --------------------------------------------------------------------------------------------
    @property
    def session_running(self) -> bool:
        return self.session_start_min is not None

    def start_session(self, sim_minute: float) -> None:
        """Start a new session at ``sim_minute``: the records of the previous session are discarded."""
        if self.session_running:
            raise SessionError("session already running")
        self.session_start_min = float(sim_minute)
        self.records.clear()
        self._next_offset_min = self.config.warmup_min
        if self._next_offset_min % self.config.interval_min:
            self._next_offset_min += self.config.interval_min - self._next_offset_min % self.config.interval_min

    def stop_session(self, sim_minute: float) -> None:
        if not self.session_running:
            raise SessionError("no session running")
        self.advance_to(sim_minute)
        self.session_start_min = None

    def time_offset_at(self, sim_minute: float) -> int:
        if self.session_start_min is None:
            return 0
        return max(0, min(MAX_TIME_OFFSET_MIN, int(math.floor(sim_minute - self.session_start_min + 1e-9))))

    def next_reading_min(self) -> float | None:
        """Sim minute at which the next reading is due (None without a session)."""
        if self.session_start_min is None or self._next_offset_min > MAX_TIME_OFFSET_MIN:
            return None
        return self.session_start_min + self._next_offset_min

    # -- readings -------------------------------------------------------------------------------------------
    def advance_to(self, sim_minute: float) -> list[CgmMeasurement]:
        """Take every reading due up to ``sim_minute`` (inclusive); store and return the new ones."""
        new: list[CgmMeasurement] = []
        due = self.next_reading_min()
        while due is not None and due <= sim_minute + 1e-9:
            offset = self._next_offset_min
            self._next_offset_min += self.config.interval_min
            if not self._malfunctioning(due):
                reading = self._measure(offset, due)
                self.records.append(reading)
                new.append(reading)
            due = self.next_reading_min()
        return new

    def _malfunctioning(self, sim_minute: float) -> bool:
        return any(start <= sim_minute < end for start, end in self.config.malfunction_windows_min)

    def _measure(self, offset_min: int, sim_minute: float) -> CgmMeasurement:
        low, high = DEVICE_RANGE_MG_DL
        raw = float(self.source.interstitial_glucose_mg_dl(sim_minute))
        glucose = float(min(high, max(low, round(raw))))
        flags = A(0)
        if raw < low:
            flags |= A.RESULT_BELOW_DEVICE_RANGE
        elif raw > high:
            flags |= A.RESULT_ABOVE_DEVICE_RANGE
        if glucose < self.config.hypo_mg_dl:
            flags |= A.RESULT_BELOW_HYPO
        if glucose > self.config.hyper_mg_dl:
            flags |= A.RESULT_ABOVE_HYPER
        trend: float | None = None
        previous = self.records[-1] if self.records else None
        if self.config.trend and previous is not None:
            trend = round((glucose - previous.glucose_mg_dl) / (offset_min - previous.time_offset_min), 1)
            if trend <= -self.config.rate_alert_mg_dl_min:
                flags |= A.RATE_OF_DECREASE_EXCEEDED
            elif trend >= self.config.rate_alert_mg_dl_min:
                flags |= A.RATE_OF_INCREASE_EXCEEDED
        if self.config.low_battery_after_min is not None and sim_minute >= self.config.low_battery_after_min:
            flags |= A.DEVICE_BATTERY_LOW
        return CgmMeasurement(glucose, offset_min, flags, trend, None)

    def status(self, sim_minute: float) -> CgmStatus:
        flags = A(0)
        if not self.session_running:
            flags |= A.SESSION_STOPPED
        else:
            assert self.session_start_min is not None
            if sim_minute - self.session_start_min < self.config.warmup_min:
                flags |= A.CALIBRATION_NOT_ALLOWED
            if self._malfunctioning(sim_minute):
                flags |= A.SENSOR_MALFUNCTION
        if self.config.low_battery_after_min is not None and sim_minute >= self.config.low_battery_after_min:
            flags |= A.DEVICE_BATTERY_LOW
        return CgmStatus(self.time_offset_at(sim_minute), flags)

    # -- record access (RACP semantics, filter type = time offset) ------------------------------------------
    def select(self, operator: str, operand_min: int | None = None, operand_max: int | None = None) -> list[CgmMeasurement]:
        """Stored records matching an RACP operator: all, <=, >=, range, first, last."""
        return select_records(self.records, operator, operand_min, operand_max)

    def delete(self, operator: str, operand_min: int | None = None, operand_max: int | None = None) -> int:
        doomed = {id(record) for record in self.select(operator, operand_min, operand_max)}
        before = len(self.records)
        self.records[:] = [record for record in self.records if id(record) not in doomed]
        return before - len(self.records)


def select_records(
    records: Sequence[CgmMeasurement], operator: str, operand_min: int | None = None, operand_max: int | None = None
) -> list[CgmMeasurement]:
    """Filter records (stored in time-offset order) by an RACP operator name.

    ``<=`` and ``>=`` take one operand (the first), ``range`` takes both (inclusive).
    """
    if operator == "all":
        return list(records)
    if operator == "first":
        return list(records[:1])
    if operator == "last":
        return list(records[-1:])
    if operator in ("<=", ">=") and operand_min is not None:
        if operator == "<=":
            return [r for r in records if r.time_offset_min <= operand_min]
        return [r for r in records if r.time_offset_min >= operand_min]
    if operator == "range" and operand_min is not None and operand_max is not None:
        return [r for r in records if operand_min <= r.time_offset_min <= operand_max]
    raise ValueError(f"RACP operator {operator!r} with operands ({operand_min!r}, {operand_max!r}) is not valid")
