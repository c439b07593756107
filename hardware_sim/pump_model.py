"""A vectorised insulin pump: M pumps advanced together in 1-minute steps.

What it models (defaults after common tubed pumps; every number is a parameter):

* **Basal program**: a rate per subject, either flat (M,) or a 24-hour schedule (M, 24) in U/h, rounded to the
  pump's rate resolution (0.05 U/h). Basal is delivered in pulses of ``basal_pulse_u`` (0.05 U): insulin owed
  accumulates each minute and a pulse goes out whenever a whole pulse is owed, as real pumps do.
* **Temporary basal**: a rate (U/h, rounded down to the resolution, capped at ``max_basal_u_per_h``) for a
  duration; a temp of 0 U/h is a suspension. Duration 0 cancels a running temp.
* **Bolus**: the requested amount is rounded DOWN to ``bolus_increment_u`` (0.05 U), capped at
  ``max_bolus_u``, and delivered at ``bolus_rate_u_per_min`` (1.5 U/min). A request while a bolus is still
  being delivered is refused (accepted amount 0), like a real pump.
* **Reservoir**: every delivered unit leaves the reservoir; an empty reservoir stops delivery and raises
  ``reservoir_empty``.
* **Reservoir and set change**: every ``set_change_interval_min`` (3 days, the usual infusion-set change) the
  person refills the reservoir to capacity; ``None`` disables refills (then a reservoir can run dry).
* **Occlusion**: from the scheduled onset on, the pump keeps pushing but nothing reaches the body; the pump's
  own record still counts the insulin (it does not know). When the missed insulin reaches
  ``occlusion_alarm_threshold_u`` the pump alarms (``occlusion_alarm``), stops delivery and cancels the bolus
  in progress. The infusion set is replaced ``occlusion_resolution_min`` after the alarm, clearing it.

Two ledgers per pump: ``true_delivered_u`` is what reached the subcutaneous tissue (the simulator uses it);
``reported_delivered_u`` is what the pump believes it delivered (what a hub reads). They differ only during a
silent occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

MINUTES_PER_HOUR = 60.0
MINUTES_PER_DAY = 1440.0
_EPS_U = 1e-9


class PumpModelError(ValueError):
    """Bad pump parameters or a command of the wrong shape or sign."""


@dataclass(frozen=True)
class PumpParameters:
    bolus_increment_u: float = 0.05
    basal_rate_resolution_u_per_h: float = 0.05
    basal_pulse_u: float = 0.05
    bolus_rate_u_per_min: float = 1.5
    max_bolus_u: float = 25.0
    max_basal_u_per_h: float = 10.0
    reservoir_capacity_u: float = 300.0
    occlusion_alarm_threshold_u: float = 2.0
    occlusion_resolution_min: float = 60.0
    set_change_interval_min: float | None = 3 * MINUTES_PER_DAY

    def __post_init__(self) -> None:
        for name in ("bolus_increment_u", "basal_rate_resolution_u_per_h", "basal_pulse_u",
                     "bolus_rate_u_per_min", "max_bolus_u", "max_basal_u_per_h", "reservoir_capacity_u",
                     "occlusion_alarm_threshold_u"):
            if not getattr(self, name) > 0:
                raise PumpModelError(f"pump parameter {name} must be positive, got {getattr(self, name)!r}")
        if self.occlusion_resolution_min < 0:
            raise PumpModelError("occlusion_resolution_min must be >= 0")
        if self.set_change_interval_min is not None and not self.set_change_interval_min >= 1:
            raise PumpModelError("set_change_interval_min must be >= 1 minute or None")


def round_down_to(value: NDArray, increment: float) -> NDArray:
    """Round down to a multiple of ``increment`` (with a tolerance for binary fractions like 0.05*3)."""
    return np.floor(np.asarray(value, dtype=float) / increment + 1e-9) * increment


@dataclass(frozen=True)
class PumpState:
    """What a pump reports (and therefore what a hub may see); arrays of shape (M,)."""

    reservoir_u: NDArray[np.float64]
    scheduled_basal_u_per_h: NDArray[np.float64]
    temp_basal_u_per_h: NDArray[np.float64]  # NaN when no temp basal runs
    temp_basal_remaining_min: NDArray[np.float64]
    bolus_remaining_u: NDArray[np.float64]
    reported_delivered_u: NDArray[np.float64]  # cumulative, as the pump believes
    occlusion_alarm: NDArray[np.bool_]
    reservoir_empty: NDArray[np.bool_]

    @property
    def effective_basal_u_per_h(self) -> NDArray[np.float64]:
        return np.where(np.isnan(self.temp_basal_u_per_h), self.scheduled_basal_u_per_h, self.temp_basal_u_per_h)


class InsulinPumpArray:
    """M pumps. Call :meth:`step` once per simulated minute; it returns the insulin (U) that reached each body.

    ``basal_schedule_u_per_h``: (M,) flat rates or (M, 24) hourly schedules. ``occlusion_onset_min``: (M,)
    trial minute at which each pump's infusion set occludes (NaN = never).
    """

    def __init__(
        self,
        basal_schedule_u_per_h: ArrayLike,
        parameters: PumpParameters | None = None,
        *,
        reservoir_u: ArrayLike | None = None,
        start_time_of_day_min: float = 0.0,
        occlusion_onset_min: ArrayLike | None = None,
    ) -> None:
        p = parameters or PumpParameters()
        self.parameters = p
        schedule = np.asarray(basal_schedule_u_per_h, dtype=float)
        if schedule.ndim == 1:
            schedule = np.repeat(schedule[:, None], 24, axis=1)
        if schedule.ndim != 2 or schedule.shape[1] != 24:
            raise PumpModelError(f"basal schedule must be (M,) or (M, 24) U/h, got shape {schedule.shape}")
        if not np.all(np.isfinite(schedule)) or (schedule < 0).any():
            raise PumpModelError("basal rates must be finite and >= 0 U/h")
        res = p.basal_rate_resolution_u_per_h
        self.basal_schedule_u_per_h = np.minimum(np.round(schedule / res) * res, p.max_basal_u_per_h)
        m = schedule.shape[0]
        self.n_pumps = m
        self.time_min = 0.0
        self.start_time_of_day_min = float(start_time_of_day_min)
        self.reservoir_u = np.full(m, p.reservoir_capacity_u) if reservoir_u is None else np.array(
            np.broadcast_to(np.asarray(reservoir_u, dtype=float), (m,)))
        self.temp_basal_u_per_h = np.full(m, np.nan)
        self.temp_basal_remaining_min = np.zeros(m)
        self.bolus_remaining_u = np.zeros(m)
        self.basal_owed_u = np.zeros(m)
        self.reported_delivered_u = np.zeros(m)
        self.true_delivered_u = np.zeros(m)
        self.occlusion_onset_min = np.full(m, np.nan) if occlusion_onset_min is None else np.array(
            np.broadcast_to(np.asarray(occlusion_onset_min, dtype=float), (m,)))
        self.occluded = np.zeros(m, dtype=bool)
        self.occlusion_alarm = np.zeros(m, dtype=bool)
        self.occlusion_missed_u = np.zeros(m)
        self.occlusion_alarm_time_min = np.full(m, np.nan)

    # ---- commands ---------------------------------------------------------------------------------
    def _vector(self, values: ArrayLike, name: str) -> NDArray[np.float64]:
        arr = np.asarray(values, dtype=float)
        if arr.shape != (self.n_pumps,):
            raise PumpModelError(f"{name} has shape {arr.shape}, expected ({self.n_pumps},)")
        return arr

    def command_bolus(self, bolus_u: ArrayLike) -> NDArray[np.float64]:
        """Request boluses (M,) in U (0 or NaN = none). Returns the accepted amounts (rounded, capped)."""
        request = np.nan_to_num(self._vector(bolus_u, "bolus_u"), nan=0.0)
        if (request < 0).any():
            raise PumpModelError("bolus requests must be >= 0 U")
        p = self.parameters
        accepted = round_down_to(np.minimum(request, p.max_bolus_u), p.bolus_increment_u)
        refused = (self.bolus_remaining_u > _EPS_U) | self.occlusion_alarm | self.reservoir_empty
        accepted = np.where(refused, 0.0, accepted)
        self.bolus_remaining_u = self.bolus_remaining_u + accepted
        return accepted

    def set_temp_basal(self, rate_u_per_h: ArrayLike, duration_min: ArrayLike) -> NDArray[np.float64]:
        """Set temp basals where ``rate_u_per_h`` is not NaN; duration 0 cancels. Returns the set rates."""
        rate = self._vector(rate_u_per_h, "rate_u_per_h")
        duration = np.nan_to_num(self._vector(duration_min, "duration_min"), nan=0.0)
        command = ~np.isnan(rate)
        if (rate[command] < 0).any() or (duration[command] < 0).any():
            raise PumpModelError("temp basal rates and durations must be >= 0")
        p = self.parameters
        set_rate = np.minimum(round_down_to(np.where(command, rate, 0.0), p.basal_rate_resolution_u_per_h),
                              p.max_basal_u_per_h)
        starts = command & (duration > 0)
        cancels = command & (duration <= 0)
        self.temp_basal_u_per_h = np.where(starts, set_rate, np.where(cancels, np.nan, self.temp_basal_u_per_h))
        self.temp_basal_remaining_min = np.where(starts, duration,
                                                 np.where(cancels, 0.0, self.temp_basal_remaining_min))
        return np.where(starts, set_rate, np.nan)

    # ---- state ------------------------------------------------------------------------------------
    @property
    def reservoir_empty(self) -> NDArray[np.bool_]:
        return self.reservoir_u <= _EPS_U

    def scheduled_basal_u_per_h(self) -> NDArray[np.float64]:
        hour = int(((self.start_time_of_day_min + self.time_min) % MINUTES_PER_DAY) // MINUTES_PER_HOUR)
        return self.basal_schedule_u_per_h[:, hour]

    def state(self) -> PumpState:
        return PumpState(
            reservoir_u=self.reservoir_u.copy(),
            scheduled_basal_u_per_h=self.scheduled_basal_u_per_h(),
            temp_basal_u_per_h=self.temp_basal_u_per_h.copy(),
            temp_basal_remaining_min=self.temp_basal_remaining_min.copy(),
            bolus_remaining_u=self.bolus_remaining_u.copy(),
            reported_delivered_u=self.reported_delivered_u.copy(),
            occlusion_alarm=self.occlusion_alarm.copy(),
            reservoir_empty=self.reservoir_empty.copy(),
        )

    # ---- one minute -------------------------------------------------------------------------------
    def step(self) -> NDArray[np.float64]:
        """Advance one minute; return the insulin (U, shape (M,)) that reached each body in that minute."""
        p = self.parameters
        now = self.time_min
        if p.set_change_interval_min is not None and now > 0 and now % p.set_change_interval_min == 0:
            self.reservoir_u = np.full(self.n_pumps, p.reservoir_capacity_u)
        # Occlusion onset, alarm and resolution (set change) happen at minute boundaries.
        self.occluded |= ~np.isnan(self.occlusion_onset_min) & (self.occlusion_onset_min <= now) & ~self.occlusion_alarm
        resolved = self.occlusion_alarm & (now >= self.occlusion_alarm_time_min + p.occlusion_resolution_min)
        if resolved.any():
            self.occlusion_alarm &= ~resolved
            self.occluded &= ~resolved
            self.occlusion_onset_min = np.where(resolved, np.nan, self.occlusion_onset_min)
            self.occlusion_missed_u = np.where(resolved, 0.0, self.occlusion_missed_u)

        rate = np.where(np.isnan(self.temp_basal_u_per_h), self.scheduled_basal_u_per_h(), self.temp_basal_u_per_h)
        self.basal_owed_u = self.basal_owed_u + rate / MINUTES_PER_HOUR
        basal_u = round_down_to(self.basal_owed_u, p.basal_pulse_u)
        bolus_u = np.minimum(self.bolus_remaining_u, p.bolus_rate_u_per_min)
        halted = self.occlusion_alarm | self.reservoir_empty
        pushed = np.where(halted, 0.0, np.minimum(basal_u + bolus_u, self.reservoir_u))
        # Split what was pushed between basal and bolus (the reservoir may run dry mid-minute).
        basal_pushed = np.minimum(pushed, basal_u)
        bolus_pushed = pushed - basal_pushed
        self.basal_owed_u = np.where(halted, 0.0, self.basal_owed_u - basal_pushed)
        self.bolus_remaining_u = np.where(halted, 0.0, self.bolus_remaining_u - bolus_pushed)
        self.bolus_remaining_u[self.bolus_remaining_u < _EPS_U] = 0.0
        self.reservoir_u = self.reservoir_u - pushed
        self.reported_delivered_u = self.reported_delivered_u + pushed
        reached = np.where(self.occluded, 0.0, pushed)
        self.true_delivered_u = self.true_delivered_u + reached

        self.occlusion_missed_u = self.occlusion_missed_u + np.where(self.occluded, pushed, 0.0)
        alarm_now = self.occluded & ~self.occlusion_alarm & (
            self.occlusion_missed_u >= p.occlusion_alarm_threshold_u - _EPS_U)
        if alarm_now.any():
            self.occlusion_alarm |= alarm_now
            self.occlusion_alarm_time_min = np.where(alarm_now, now, self.occlusion_alarm_time_min)
            self.bolus_remaining_u = np.where(alarm_now, 0.0, self.bolus_remaining_u)

        active_temp = ~np.isnan(self.temp_basal_u_per_h)
        self.temp_basal_remaining_min = np.where(active_temp, self.temp_basal_remaining_min - 1.0, 0.0)
        expired = active_temp & (self.temp_basal_remaining_min <= _EPS_U)
        self.temp_basal_u_per_h = np.where(expired, np.nan, self.temp_basal_u_per_h)
        self.temp_basal_remaining_min = np.where(expired, 0.0, self.temp_basal_remaining_min)
        self.time_min = now + 1.0
        return reached
