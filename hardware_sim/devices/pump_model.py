"""State model of an emulated insulin pump (no radio, no clock: every method takes the sim minute).

The pump delivers a programmed basal profile (U/h by minute of day), optionally modified by a temporary
basal rate (absolute U/h or relative factor), and boluses: a fast bolus is delivered at
``bolus_rate_u_per_min`` (real pumps give about 1 U per 40-60 s), an extended bolus evenly over its
duration. Every delivered amount leaves the reservoir and goes to the :class:`InsulinSink` (a virtual
patient), in slices of at most one minute.

Faults: :meth:`PumpModel.inject_occlusion` and an empty reservoir stop all delivery (therapy state STOP) and
raise an annunciation; RESERVOIR_LOW is raised below ``reservoir_low_u``. Each event of the therapy is kept as
an IDS History Data event with an increasing sequence number.

Insulin on board is the *bolus* insulin still acting (as commercial pumps report it), by the exponential
insulin-action curve of :mod:`models.insulin_action` (Loop/OpenAPS, peak 75 min, duration 6 h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from firmware_bridge.codec.ids import (
    AnnunciationState,
    AnnunciationType,
    BolusDeliveredPart2,
    BolusEndReason,
    BolusPart1,
    BolusProgrammedPart2,
    BolusType,
    HistoryEvent,
    HistoryEventType,
    ResponseCode,
    TbrEnded,
    TbrEndReason,
    TbrStarted,
    TbrType,
    TherapyControlState,
    TherapyStateChanged,
)
from firmware_bridge.codec.ids_history import (
    AnnunciationChangedPart1,
    BasalRateChanged,
    RecordingReason,
    ReferenceTime,
    ReservoirRemainingChanged,
)
from models.insulin_action import INSULIN_PRESETS, ExponentialInsulinCurve

from .glucose_source import InsulinLedger, InsulinSink

EPSILON_U = 1e-9
REFERENCE_TIME_EVERY_MIN = 12 * 60  # relative offsets are u16 seconds: re-anchor well before 18.2 h


@dataclass
class Bolus:
    bolus_id: int
    bolus_type: BolusType
    fast_u: float
    extended_u: float
    duration_min: int
    programmed_min: float
    delivered_fast_u: float = 0.0
    delivered_extended_u: float = 0.0
    end_reason: BolusEndReason | None = None
    ended_min: float | None = None

    @property
    def delivered_u(self) -> float:
        return self.delivered_fast_u + self.delivered_extended_u

    @property
    def remaining_fast_u(self) -> float:
        return max(0.0, self.fast_u - self.delivered_fast_u)

    @property
    def remaining_extended_u(self) -> float:
        return max(0.0, self.extended_u - self.delivered_extended_u)

    @property
    def active(self) -> bool:
        return self.end_reason is None


@dataclass
class Tbr:
    tbr_type: TbrType
    adjustment: float  # U/h (absolute) or factor (relative)
    duration_min: int
    start_min: float

    @property
    def end_min(self) -> float:
        return self.start_min + self.duration_min

    def rate_u_per_h(self, programmed_u_per_h: float) -> float:
        if self.tbr_type is TbrType.ABSOLUTE:
            return self.adjustment
        return programmed_u_per_h * self.adjustment


@dataclass(frozen=True)
class PumpLimits:
    max_bolus_u: float = 25.0
    max_basal_u_per_h: float = 5.0
    max_tbr_factor: float = 2.5
    max_tbr_duration_min: int = 24 * 60
    max_active_boluses: int = 3
    bolus_rate_u_per_min: float = 1.5


@dataclass
class PumpModel:
    """An insulin pump. Commands return an IDS :class:`ResponseCode` (and a bolus id for Set Bolus)."""

    sink: InsulinSink = field(default_factory=InsulinLedger)
    reservoir_u: float = 200.0
    reservoir_low_u: float = 20.0
    concentration_u_per_ml: float = 100.0
    basal_profile: tuple[tuple[int, float], ...] = ((0, 0.8), (6 * 60, 1.0), (22 * 60, 0.8))
    """(start minute of day, rate U/h), sorted, the first at minute 0."""
    limits: PumpLimits = field(default_factory=PumpLimits)
    curve: ExponentialInsulinCurve = field(default_factory=lambda: INSULIN_PRESETS["rapid_adult"])
    epoch: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)
    """Wall-clock time of sim minute 0 (the pump's clock, UTC), for Reference Time events."""
    therapy_state: TherapyControlState = TherapyControlState.RUN
    now_min: float = 0.0
    tbr: Tbr | None = None
    boluses: dict[int, Bolus] = field(default_factory=dict)
    delivered_basal_u: float = 0.0
    delivered_bolus_u: float = 0.0
    daily_basal_u: float = 0.0
    daily_bolus_u: float = 0.0
    occluded: bool = False
    annunciations: list[tuple[int, AnnunciationType, AnnunciationState]] = field(default_factory=list)
    history: list[HistoryEvent] = field(default_factory=list)
    _next_bolus_id: int = 1
    _bolus_deliveries: list[tuple[float, float]] = field(default_factory=list)  # (minute, units) for IOB
    _reference_min: float = 0.0
    _next_annunciation_id: int = 1
    _day: int = 0
    _last_rate_u_per_h: float | None = None

    def __post_init__(self) -> None:
        if not self.basal_profile or self.basal_profile[0][0] != 0:
            raise ValueError("the basal profile must start at minute 0 of the day")
        self._record_reference_time(self.now_min)
        self._last_rate_u_per_h = self.delivered_rate_u_per_h(self.now_min)

    # -- rates ------------------------------------------------------------------------------------------------
    def programmed_rate_u_per_h(self, sim_minute: float) -> float:
        minute_of_day = sim_minute % (24 * 60)
        rate = self.basal_profile[0][1]
        for start, value in self.basal_profile:
            if minute_of_day >= start:
                rate = value
        return rate

    def delivered_rate_u_per_h(self, sim_minute: float) -> float:
        if self.therapy_state is not TherapyControlState.RUN:
            return 0.0
        programmed = self.programmed_rate_u_per_h(sim_minute)
        if self.tbr is not None and self.tbr.start_min <= sim_minute < self.tbr.end_min:
            return self.tbr.rate_u_per_h(programmed)
        return programmed

    # -- time -------------------------------------------------------------------------------------------------
    def advance_to(self, sim_minute: float) -> float:
        """Deliver everything due up to ``sim_minute``; return the units delivered."""
        delivered = 0.0
        while self.now_min < sim_minute - EPSILON_U:
            step_end = min(sim_minute, math.floor(self.now_min + 1.0 + 1e-9))  # at most to the next whole minute
            if self.tbr is not None and self.now_min < self.tbr.end_min < step_end:
                step_end = self.tbr.end_min
            delivered += self._deliver_slice(self.now_min, step_end)
            self.now_min = step_end
            if self.tbr is not None and self.now_min >= self.tbr.end_min - 1e-9:
                self._end_tbr(TbrEndReason.PROGRAMMED_DURATION_OVER)
            if self.now_min - self._reference_min >= REFERENCE_TIME_EVERY_MIN:
                self._record_reference_time(self.now_min)
            day = int(self.now_min // (24 * 60))
            if day != self._day:
                self._day, self.daily_basal_u, self.daily_bolus_u = day, 0.0, 0.0
        return delivered

    def _deliver_slice(self, start: float, end: float) -> float:
        if self.therapy_state is not TherapyControlState.RUN:
            return 0.0
        minutes = end - start
        rate = self.delivered_rate_u_per_h(start)
        if self._last_rate_u_per_h is not None and abs(rate - self._last_rate_u_per_h) > EPSILON_U:
            self._record(start, HistoryEventType.DELIVERED_BASAL_RATE_CHANGED, BasalRateChanged(round(self._last_rate_u_per_h, 2), round(rate, 2)))
        self._last_rate_u_per_h = rate
        basal = self._take(rate * minutes / 60.0)
        self.delivered_basal_u += basal
        self.daily_basal_u += basal
        bolus_total = 0.0
        for bolus in [b for b in self.boluses.values() if b.active]:
            fast = self._take(min(bolus.remaining_fast_u, self.limits.bolus_rate_u_per_min * minutes))
            bolus.delivered_fast_u += fast
            extended = 0.0
            if bolus.extended_u > 0 and bolus.remaining_fast_u <= EPSILON_U:
                per_min = bolus.extended_u / max(1, bolus.duration_min)
                extended = self._take(min(bolus.remaining_extended_u, per_min * minutes))
                bolus.delivered_extended_u += extended
            bolus_total += fast + extended
            if bolus.remaining_fast_u <= EPSILON_U and bolus.remaining_extended_u <= EPSILON_U:
                self._end_bolus(bolus, BolusEndReason.PROGRAMMED_DURATION_OVER, end)
        if bolus_total > 0:
            self._bolus_deliveries.append((end, bolus_total))
        self.delivered_bolus_u += bolus_total
        self.daily_bolus_u += bolus_total
        total = basal + bolus_total
        if total > 0:
            self.sink.deliver_insulin(total, end)
        if self.reservoir_u <= EPSILON_U and self.therapy_state is TherapyControlState.RUN:
            self._stop_for(AnnunciationType.RESERVOIR_EMPTY, end)
        return total

    def _take(self, units: float) -> float:
        units = max(0.0, min(units, self.reservoir_u))
        before = self.reservoir_u
        self.reservoir_u -= units
        if before >= self.reservoir_low_u > self.reservoir_u:
            self._annunciate(AnnunciationType.RESERVOIR_LOW, self.now_min)
        if math.floor(before / 10) != math.floor(self.reservoir_u / 10):
            self._record(self.now_min, HistoryEventType.RESERVOIR_REMAINING_AMOUNT_CHANGED, ReservoirRemainingChanged(math.floor(self.reservoir_u * 10) / 10))
        return units

    # -- faults -----------------------------------------------------------------------------------------------
    def inject_occlusion(self, sim_minute: float) -> None:
        """An occlusion: all delivery stops until the person resolves it (:meth:`resolve_occlusion`)."""
        self.advance_to(sim_minute)
        self.occluded = True
        self._stop_for(AnnunciationType.OCCLUSION_DETECTED, sim_minute)

    def resolve_occlusion(self, sim_minute: float) -> None:
        self.advance_to(sim_minute)
        self.occluded = False
        if self.reservoir_u > EPSILON_U:
            self._set_therapy(TherapyControlState.RUN, sim_minute)

    def refill(self, units: float, sim_minute: float) -> None:
        self.advance_to(sim_minute)
        self.reservoir_u = float(units)
        if not self.occluded:
            self._set_therapy(TherapyControlState.RUN, sim_minute)

    def _stop_for(self, annunciation: AnnunciationType, sim_minute: float) -> None:
        self._annunciate(annunciation, sim_minute)
        for bolus in [b for b in self.boluses.values() if b.active]:
            self._end_bolus(bolus, BolusEndReason.ERROR_ABORT, sim_minute)
        if self.tbr is not None:
            self._end_tbr(TbrEndReason.ERROR_ABORT)
        self._set_therapy(TherapyControlState.STOP, sim_minute)

    def _annunciate(self, annunciation: AnnunciationType, sim_minute: float) -> None:
        instance = self._next_annunciation_id
        self._next_annunciation_id += 1
        self.annunciations.append((instance, annunciation, AnnunciationState.PENDING))
        self._record(
            sim_minute,
            HistoryEventType.ANNUNCIATION_STATUS_CHANGED_PART_1_OF_2,
            AnnunciationChangedPart1(instance, annunciation, AnnunciationState.PENDING),
        )

    @property
    def latest_annunciation(self) -> tuple[int, AnnunciationType, AnnunciationState] | None:
        return self.annunciations[-1] if self.annunciations else None

    def _set_therapy(self, state: TherapyControlState, sim_minute: float) -> None:
        if state is not self.therapy_state:
            self._record(sim_minute, HistoryEventType.THERAPY_CONTROL_STATE_CHANGED, TherapyStateChanged(self.therapy_state, state))
            self.therapy_state = state

    # -- commands ---------------------------------------------------------------------------------------------
    def set_bolus(
        self, bolus_type: BolusType, fast_u: float, extended_u: float, duration_min: int, sim_minute: float
    ) -> tuple[ResponseCode, int | None]:
        self.advance_to(sim_minute)
        total = fast_u + extended_u
        if self.therapy_state is not TherapyControlState.RUN:
            return ResponseCode.PROCEDURE_NOT_APPLICABLE, None
        if not (math.isfinite(total) and total > 0) or total > self.limits.max_bolus_u:
            return ResponseCode.PARAMETER_OUT_OF_RANGE, None
        if bolus_type is BolusType.FAST and (extended_u or duration_min):
            return ResponseCode.INVALID_OPERAND, None
        if bolus_type is not BolusType.FAST and (extended_u <= 0 or duration_min <= 0):
            return ResponseCode.INVALID_OPERAND, None
        if total > self.reservoir_u + EPSILON_U:
            return ResponseCode.PLAUSIBILITY_CHECK_FAILED, None
        if sum(1 for b in self.boluses.values() if b.active) >= self.limits.max_active_boluses:
            return ResponseCode.MAXIMUM_BOLUS_NUMBER_REACHED, None
        bolus = Bolus(self._next_bolus_id, bolus_type, fast_u, extended_u, duration_min, sim_minute)
        self._next_bolus_id = self._next_bolus_id % 0xFFFF + 1
        self.boluses[bolus.bolus_id] = bolus
        part1 = BolusPart1(bolus.bolus_id, bolus_type, fast_u, extended_u, duration_min)
        self._record(sim_minute, HistoryEventType.BOLUS_PROGRAMMED_PART_1_OF_2, part1)
        self._record(sim_minute, HistoryEventType.BOLUS_PROGRAMMED_PART_2_OF_2, BolusProgrammedPart2())
        return ResponseCode.SUCCESS, bolus.bolus_id

    def cancel_bolus(self, bolus_id: int, sim_minute: float) -> ResponseCode:
        self.advance_to(sim_minute)
        bolus = self.boluses.get(bolus_id)
        if bolus is None or not bolus.active:
            return ResponseCode.PROCEDURE_NOT_APPLICABLE
        self._end_bolus(bolus, BolusEndReason.CANCELED, sim_minute)
        return ResponseCode.SUCCESS

    def _end_bolus(self, bolus: Bolus, reason: BolusEndReason, sim_minute: float) -> None:
        bolus.end_reason, bolus.ended_min = reason, sim_minute
        part1 = BolusPart1(
            bolus.bolus_id,
            bolus.bolus_type,
            round(bolus.delivered_fast_u, 2),
            round(bolus.delivered_extended_u, 2),
            int(round(sim_minute - bolus.programmed_min)) if bolus.bolus_type is not BolusType.FAST else 0,
        )
        self._record(sim_minute, HistoryEventType.BOLUS_DELIVERED_PART_1_OF_2, part1)
        self._record(sim_minute, HistoryEventType.BOLUS_DELIVERED_PART_2_OF_2, BolusDeliveredPart2(0, end_reason=reason))

    def set_tbr(self, tbr_type: TbrType, adjustment: float, duration_min: int, sim_minute: float) -> ResponseCode:
        self.advance_to(sim_minute)
        if self.therapy_state is not TherapyControlState.RUN:
            return ResponseCode.PROCEDURE_NOT_APPLICABLE
        if not 1 <= duration_min <= self.limits.max_tbr_duration_min or not math.isfinite(adjustment) or adjustment < 0:
            return ResponseCode.PARAMETER_OUT_OF_RANGE
        if tbr_type is TbrType.ABSOLUTE and adjustment > self.limits.max_basal_u_per_h:
            return ResponseCode.PARAMETER_OUT_OF_RANGE
        if tbr_type is TbrType.RELATIVE and adjustment > self.limits.max_tbr_factor:
            return ResponseCode.PARAMETER_OUT_OF_RANGE
        if tbr_type not in (TbrType.ABSOLUTE, TbrType.RELATIVE):
            return ResponseCode.INVALID_OPERAND
        if self.tbr is not None:
            self._end_tbr(TbrEndReason.CANCELED)
        self.tbr = Tbr(tbr_type, adjustment, duration_min, sim_minute)
        self._record(sim_minute, HistoryEventType.TBR_ADJUSTMENT_STARTED, TbrStarted(tbr_type, adjustment, duration_min))
        return ResponseCode.SUCCESS

    def cancel_tbr(self, sim_minute: float) -> ResponseCode:
        self.advance_to(sim_minute)
        if self.tbr is None:
            return ResponseCode.PROCEDURE_NOT_APPLICABLE
        self._end_tbr(TbrEndReason.CANCELED)
        return ResponseCode.SUCCESS

    def _end_tbr(self, reason: TbrEndReason) -> None:
        tbr = self.tbr
        if tbr is None:
            return
        self.tbr = None
        effective = int(round(min(self.now_min, tbr.end_min) - tbr.start_min))
        self._record(self.now_min, HistoryEventType.TBR_ADJUSTMENT_ENDED, TbrEnded(tbr.tbr_type, effective, reason))

    # -- status ---------------------------------------------------------------------------------------------
    def active_boluses(self) -> list[Bolus]:
        return [bolus for bolus in self.boluses.values() if bolus.active]

    def insulin_on_board_u(self, sim_minute: float) -> float:
        return float(
            sum(units * float(self.curve.iob_fraction(sim_minute - minute)) for minute, units in self._bolus_deliveries)
        )

    def tbr_remaining_min(self, sim_minute: float) -> int:
        if self.tbr is None:
            return 0
        return max(0, int(math.ceil(self.tbr.end_min - sim_minute - 1e-9)))

    # -- history ----------------------------------------------------------------------------------------------
    def _record(self, sim_minute: float, event_type: HistoryEventType, data: object) -> None:
        offset_s = int(round((sim_minute - self._reference_min) * 60))
        sequence = len(self.history)
        self.history.append(HistoryEvent(event_type, sequence, max(0, min(0xFFFF, offset_s)), data))  # type: ignore[arg-type]

    def _record_reference_time(self, sim_minute: float) -> None:
        """Reference Time event (UTC, zone 0, standard time): later events count seconds from it."""
        self._reference_min = sim_minute
        moment = self.epoch.astimezone(timezone.utc) + timedelta(minutes=sim_minute)
        reason = RecordingReason.SET_DATE_TIME if not self.history else RecordingReason.PERIODIC_RECORDING
        data = ReferenceTime(reason, moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, 0, 0)
        self._record(sim_minute, HistoryEventType.REFERENCE_TIME, data)

    def wall_time(self, sim_minute: float) -> datetime:
        return self.epoch + timedelta(minutes=sim_minute)
