"""The per-reading pipeline: store -> twin -> forecast -> alerts -> (advice) -> outbox.

It knows nothing of radios or HTTP: the live service, the year-long replay benchmark and the in-silico trial
arm all drive this same object. Crash safety: a reading and its outbox record are committed in ONE SQLite
transaction before :meth:`HubPipeline.on_reading` returns, so an acknowledged reading survives kill -9; the twin's
state is saved every reading and, if it is lost, rebuilt from the stored history on restart.

Time is UTC epoch milliseconds at the edges (``*_ms``) and minutes since the epoch inside the twin.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from collections.abc import Callable
from dataclasses import dataclass, field

from cloud_sync.envelope import AlertEvent as SyncAlert
from cloud_sync.envelope import CarbEntry as SyncCarbs
from cloud_sync.envelope import InsulinDose as SyncInsulin
from cloud_sync.envelope import ReadingSeries, RecommendationOutcome, SummaryPayload
from cloud_sync.envelope import TwinEstimate as SyncTwinEstimate
from cloud_sync.outbox import Outbox
from models.forecast.baselines import Forecast
from models.forecast.onnx_forecaster import HubForecaster
from models.twin.twin import DigitalTwin, TwinEstimate, TwinSettings, TwinStateError

from ..alerts import AlertEngine, AlertEvent, AlertObservation
from ..config import HubConfig
from ..recommend import Advice, AdviceKind, HubSnapshot, recommend
from ..recommend.insulin_history import DAY_MS, insulin_delivered_u
from ..recommend.twin_predictor import RECOMMENDER_HORIZON_MIN, TwinPredictor
from ..recommend.withheld_meal import WithheldMealBolus, withheld_after_meal_advice
from ..safety import CgmQuality
from ..store import CarbEntry, HubStore, InsulinEvent, StoredReading

logger = logging.getLogger(__name__)

MS_PER_MIN = 60_000
FORECAST_SAMPLES = 16  # the hub forecast's twin part: its interval is calibrated online (conformal)
FORECAST_HORIZONS_MIN = (10.0, 20.0, 30.0, 60.0, 90.0, 120.0)
FORECAST_WARMUP_MIN = 6 * 60.0
TWIN_ESTIMATE_SYNC_EVERY_MIN = 60.0
AUTO_ADVICE_EVERY_MIN = 15.0
MEAL_ADVICE_HOLD_MIN = 20.0


@dataclass
class ReadingOutcome:
    stored: bool
    estimate: TwinEstimate | None = None
    forecast_min_mg_dl: float | None = None
    alerts: list[AlertEvent] = field(default_factory=list)
    advice: Advice | None = None


def _minutes(timestamp_ms: int) -> float:
    return timestamp_ms / MS_PER_MIN


class HubPipeline:
    """One person's hub logic over a :class:`HubStore` (and optionally an outbox in the same file)."""

    def __init__(self, store: HubStore, config: HubConfig, *, outbox: Outbox | None = None,
                 now_ms: Callable[[], int] | None = None, auto_advice: bool = True) -> None:
        self.store = store
        self.config = config
        self.outbox = outbox
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.auto_advice = auto_advice
        self.alerts = AlertEngine()
        self.twin = self._restore_twin()
        saved = store.latest_twin_state()
        self._committed_twin_state: dict | None = saved[1] if saved else None
        self._pending_insulin_u = 0.0
        self._pending_carbs_g = 0.0
        self._basal_u_per_h = config.therapy.basal_u_per_h
        self._temp_basal_until_ms: int | None = None
        self._last_twin_sync_min = -math.inf
        self._last_advice_min = -math.inf
        self._last_bolus_ms: int | None = None
        # Meal insulin withheld at the last meal (glucose was low), offered once glucose recovers. Held in memory:
        # after a restart the hub forgets the offer (never a reading), and the corrections deliver it instead.
        self._withheld_meal: WithheldMealBolus | None = None
        self.latest_estimate: TwinEstimate | None = None
        self.latest_reading: StoredReading | None = store.latest_reading()
        self.cgm_quality = CgmQuality()
        self.pump_reservoir_u: float | None = None
        self.pump_occlusion = False
        # the forecaster reads this pipeline's twin (updated once per reading here) instead of running its own
        self.forecaster = HubForecaster(TwinSettings.from_object(config.therapy), twin_samples=FORECAST_SAMPLES,
                                        shared_twin=lambda: self.twin)
        self.latest_forecast: Forecast | None = None
        self._warm_up_forecaster()

    def _warm_up_forecaster(self) -> None:
        """After a restart, replay the last hours the store holds so the forecaster has its history."""
        latest = self.latest_reading
        if latest is None:
            return
        start = latest.timestamp_ms - int(FORECAST_WARMUP_MIN * MS_PER_MIN)
        events: list[tuple[int, int, object]] = []
        events += [(r.timestamp_ms, 2, r) for r in self.store.readings_between(start, latest.timestamp_ms + 1)]
        events += [(e.timestamp_ms, 0, e) for e in self.store.insulin_since(start)]
        events += [(c.timestamp_ms, 1, c) for c in self.store.carbs_since(start)]
        for timestamp_ms, order, item in sorted(events, key=lambda e: (e[0], e[1])):
            minute = _minutes(timestamp_ms)
            if order == 2:
                self.forecaster.observe_glucose(minute, item.glucose_mg_dl)  # type: ignore[attr-defined]
            elif order == 1:
                self.forecaster.observe_carbs(minute, item.carbs_g)  # type: ignore[attr-defined]
            elif item.kind == "bolus" and item.insulin_u:  # type: ignore[attr-defined]
                self.forecaster.observe_bolus(minute, item.insulin_u)  # type: ignore[attr-defined]

    # --- twin persistence ----------------------------------------------------------------------------------

    def _restore_twin(self) -> DigitalTwin:
        saved = self.store.latest_twin_state()
        if saved is not None:
            try:
                return DigitalTwin.from_dict(saved[1])
            except (TwinStateError, KeyError, ValueError, TypeError) as error:
                logger.warning("saved twin state unusable (%s); starting from therapy settings", error)
        return DigitalTwin.from_therapy_settings(self.config.therapy)

    # --- inputs --------------------------------------------------------------------------------------------

    def on_insulin(self, event: InsulinEvent) -> bool:
        """Insulin the pump reports (history or confirmed command); duplicates by pump sequence are ignored."""
        with self.store.transaction() as conn:
            new = self.store.add_insulin(event)
            if new:
                if event.kind == "bolus" and event.insulin_u:
                    self._pending_insulin_u += event.insulin_u
                    self.forecaster.observe_bolus(_minutes(event.timestamp_ms), event.insulin_u)
                    self._last_bolus_ms = max(self._last_bolus_ms or 0, event.timestamp_ms)
                    withheld = self._withheld_meal
                    if withheld is not None and _minutes(event.timestamp_ms) >= withheld.announced_at_min:
                        self._withheld_meal = withheld.after_bolus(event.insulin_u)
                elif event.kind in ("temp_basal", "suspend"):
                    self._basal_u_per_h = 0.0 if event.kind == "suspend" else float(event.rate_u_per_h or 0.0)
                    self.forecaster.observe_basal(_minutes(event.timestamp_ms), self._basal_u_per_h)
                    duration = event.duration_min or 30.0
                    self._temp_basal_until_ms = event.timestamp_ms + int(duration * MS_PER_MIN)
                elif event.kind == "basal" and event.rate_u_per_h is not None:
                    self._basal_u_per_h = float(event.rate_u_per_h)
                self._enqueue(conn, SummaryPayload(
                    event.timestamp_ms, event.timestamp_ms,
                    insulin=(SyncInsulin(event.timestamp_ms, float(event.insulin_u or 0.0) if event.kind == "bolus"
                                         else float(event.rate_u_per_h or 0.0) * float(event.duration_min or 0) / 60,
                                         "bolus" if event.kind == "bolus" else "basal",
                                         float(event.duration_min or 0.0)),)))
        return new

    def on_carbs(self, entry: CarbEntry) -> None:
        with self.store.transaction() as conn:
            self.store.add_carbs(entry)
            self._pending_carbs_g += entry.carbs_g
            self.forecaster.observe_carbs(_minutes(entry.timestamp_ms), entry.carbs_g)
            self._enqueue(conn, SummaryPayload(entry.timestamp_ms, entry.timestamp_ms,
                                               carbs=(SyncCarbs(entry.timestamp_ms, entry.carbs_g),)))

    def on_reading(self, reading: StoredReading) -> ReadingOutcome:
        """Process one reading and commit it, with everything it caused, in ONE durable transaction.

        The reading is acknowledged (durable) when this returns. If the twin or forecast fails on it, the
        reading is still stored: data first, models second. One fsync per reading keeps a Pi's SD card alive.
        """
        if self.store.has_reading(reading.sensor_session, reading.time_offset_min):
            return ReadingOutcome(stored=False)
        outcome = ReadingOutcome(stored=True)
        payloads = [SummaryPayload(reading.timestamp_ms, reading.timestamp_ms, readings=ReadingSeries.from_pairs(
            [(reading.timestamp_ms, round(reading.glucose_mg_dl))]))]
        at_min = _minutes(reading.timestamp_ms)
        twin_state: dict | None = None
        twin_parameters: SummaryPayload | None = None
        alert_events: list[AlertEvent] = []
        moves_forward = self.twin.last_minute is None or at_min >= self.twin.last_minute
        pending_before = (self._pending_insulin_u, self._pending_carbs_g)
        if moves_forward:  # an old backfilled reading is stored, but the twin only moves forward in time
            try:
                self._expire_temp_basal(reading.timestamp_ms)
                estimate = self.twin.update(
                    reading.glucose_mg_dl, at_min, insulin_u=min(self._pending_insulin_u, 100.0),
                    carbs_g=min(self._pending_carbs_g, 1000.0), basal_u_per_h=self._basal_u_per_h,
                )
                self._pending_insulin_u = self._pending_carbs_g = 0.0
                self.latest_estimate = outcome.estimate = estimate
                twin_state = self.twin.to_dict()
                self.forecaster.observe_glucose(at_min, reading.glucose_mg_dl)
                forecast = self.forecaster.forecast(at_min, FORECAST_HORIZONS_MIN)
                self.latest_forecast = forecast
                soon = forecast.horizons_min <= self.alerts.settings.urgent_low_soon_horizon_min
                soon_means = forecast.mean_mg_dl[soon & np.isfinite(forecast.mean_mg_dl)]
                outcome.forecast_min_mg_dl = float(min(soon_means.min(), reading.glucose_mg_dl)) if soon_means.size \
                    else reading.glucose_mg_dl
                age_min = (self.now_ms() - reading.timestamp_ms) / MS_PER_MIN
                if age_min <= self.alerts.settings.stale_after_min:  # alerts are about now, not a backfilled past
                    alert_events = self.alerts.evaluate(self._alert_observation(reading, outcome.forecast_min_mg_dl))
                if at_min - self._last_twin_sync_min >= TWIN_ESTIMATE_SYNC_EVERY_MIN:
                    self._last_twin_sync_min = at_min
                    twin_parameters = self._twin_estimate_payload(reading.timestamp_ms, estimate)
                    payloads.append(twin_parameters)
            except Exception:  # the model failing must never cost a reading
                logger.exception("twin/forecast failed on reading at offset %s", reading.time_offset_min)
        outcome.alerts = alert_events
        advice = None
        if (moves_forward and outcome.forecast_min_mg_dl is not None and self.auto_advice
                and self._advice_due(reading, outcome.forecast_min_mg_dl, at_min)):
            self._last_advice_min = at_min
            try:  # stored with the reading, in the same transaction (one fsync)
                advice = self._recommend(self.snapshot(reading), 0.0)
            except Exception:  # the recommender failing must never cost a reading either
                logger.exception("advice failed on reading at offset %s", reading.time_offset_min)
        try:
            self._commit_reading(reading, payloads, twin_state, twin_parameters, alert_events, advice)
        except Exception:
            # Nothing was stored: put the twin back where the store has it, so memory and disk agree and the
            # same reading, delivered again (backfill or retry), is not counted twice.
            self._rollback_twin(pending_before)
            raise
        if self.latest_reading is None or reading.timestamp_ms >= self.latest_reading.timestamp_ms:
            self.latest_reading = reading
        outcome.advice = advice
        return outcome

    def _commit_reading(self, reading: StoredReading, payloads: list[SummaryPayload], twin_state: dict | None,
                        twin_parameters: SummaryPayload | None, alert_events: list[AlertEvent],
                        advice: Advice | None = None) -> None:
        with self.store.transaction() as conn:
            if advice is not None:
                self._store_advice(advice)
            self.store.add_reading(reading)
            for payload in payloads:
                self._enqueue(conn, payload)
            if twin_state is not None:
                self.store.save_twin_state(reading.timestamp_ms, twin_state)
            if twin_parameters is not None:
                self.store.add_twin_parameters(reading.timestamp_ms,
                                               dict(twin_parameters.twin_parameters[0].parameters))
            self._store_alert_events(conn, alert_events, reading.timestamp_ms)
        if twin_state is not None:
            self._committed_twin_state = twin_state

    def _rollback_twin(self, pending: tuple[float, float]) -> None:
        self._pending_insulin_u, self._pending_carbs_g = pending
        if self._committed_twin_state is not None:
            self.twin = DigitalTwin.from_dict(self._committed_twin_state)
        else:
            self.twin = self._restore_twin()

    def check_staleness(self) -> list[AlertEvent]:
        """Called on a timer: raises "signal loss" when no reading arrived for a while (readings cannot)."""
        now = self.now_ms()
        reading = self.latest_reading
        observation = AlertObservation(
            now_min=now / MS_PER_MIN, glucose_mg_dl=None,
            glucose_age_min=None if reading is None else (now - reading.timestamp_ms) / MS_PER_MIN,
            sensor_warming_up=self.cgm_quality.warming_up, pump_occlusion=self.pump_occlusion,
            pump_reservoir_u=self.pump_reservoir_u)
        # Every event is stored, not only signal loss: the engine now counts any alert it raised here as open.
        events = self.alerts.evaluate(observation)
        if events:
            with self.store.transaction() as conn:
                self._store_alert_events(conn, events, now)
        return events

    def _store_alert_events(self, conn, events: list[AlertEvent], at_ms: int) -> None:  # type: ignore[no-untyped-def]
        """Raise/clear alerts in the store (inside the caller's transaction) and queue raised ones for sync."""
        for event in events:
            if event.action == "raise":
                self.store.raise_alert(event.kind, event.severity.value, event.message, at_ms)
                self._enqueue(conn, SummaryPayload(at_ms, at_ms, alerts=(
                    SyncAlert(at_ms, event.kind, event.severity.value, event.message),)))
            elif event.action == "clear":
                self.store.clear_alert(event.kind, at_ms)

    def note_pump_status(self, reservoir_u: float | None, occlusion: bool) -> None:
        self.pump_reservoir_u = reservoir_u
        self.pump_occlusion = occlusion

    # --- derived views -------------------------------------------------------------------------------------

    def snapshot(self, reading: StoredReading | None = None) -> HubSnapshot:
        """What the recommender sees now; ``reading``: the one being processed (default: the latest stored)."""
        now = self.now_ms()
        reading = reading or self.latest_reading
        estimate = self.latest_estimate
        return HubSnapshot(
            glucose_mg_dl=reading.glucose_mg_dl if reading else None,
            glucose_age_min=(now - reading.timestamp_ms) / MS_PER_MIN if reading else None,
            trend_mg_dl_min=reading.trend_mg_dl_min if reading else None,
            iob_u=estimate.insulin_on_board_u if estimate else None,
            cob_g=estimate.carbs_on_board_g if estimate else None,
            minutes_since_last_bolus=(now - self._last_bolus_ms) / MS_PER_MIN if self._last_bolus_ms else None,
            scheduled_basal_u_per_h=self.config.therapy.basal_u_per_h,
            cgm_quality=self.cgm_quality,
            estimated_isf_mg_dl_per_u=estimate.insulin_sensitivity_factor_mg_dl_per_u.value if estimate else None,
            total_daily_insulin_u=self.total_daily_insulin_u(now),
            withheld_meal_bolus_u=self._withheld_meal_due_u(reading),
        )

    def _withheld_meal_due_u(self, reading: StoredReading | None) -> float:
        if self._withheld_meal is None or reading is None:
            return 0.0
        return self._withheld_meal.owed_now_u(_minutes(reading.timestamp_ms), reading.glucose_mg_dl,
                                              self.config.limits.suspend_threshold_mg_dl)

    def total_daily_insulin_u(self, now_ms: int) -> float | None:
        """Insulin delivered over the last 24 h from the stored pump history, once the hub holds a day of
        readings (before that, None: a partial day would understate it)."""
        first_ms = self.store.earliest_reading_ms()
        if first_ms is None or now_ms - first_ms < DAY_MS:
            return None
        # Events from 12 h before the window say what was running when it opened.
        events = self.store.insulin_since(now_ms - DAY_MS - DAY_MS // 2)
        return insulin_delivered_u(events, now_ms - DAY_MS, now_ms, self.config.therapy.basal_u_per_h)

    def advise(self, announced_carbs_g: float = 0.0, *, store: bool = True) -> Advice:
        """Advice for now (a meal when ``announced_carbs_g`` > 0), recorded for the person to confirm."""
        snapshot = self.snapshot()
        advice = self._recommend(snapshot, announced_carbs_g)
        if store:
            self._store_advice(advice)
            if announced_carbs_g:  # a meal: what its advice leaves owed (its own and any due before) replaces it
                self._withheld_meal = withheld_after_meal_advice(
                    announced_carbs_g, self.config.therapy.carb_ratio_g_per_u, advice.dose.bolus_u,
                    _minutes(self.now_ms()), already_owed_u=snapshot.withheld_meal_bolus_u)
        return advice

    def predictor(self, horizon_min: float = RECOMMENDER_HORIZON_MIN) -> TwinPredictor:
        """The twin's what-if as the hub's advice and its page use it: the programmed basal from now on."""
        return TwinPredictor(self.twin, horizon_min=horizon_min,
                             baseline_basal_u_per_h=self.config.therapy.basal_u_per_h)

    def _recommend(self, snapshot: HubSnapshot, announced_carbs_g: float) -> Advice:
        return recommend(snapshot, self.config.therapy, self.config.limits, self.predictor(),
                         announced_carbs_g=announced_carbs_g)

    def _store_advice(self, advice: Advice) -> None:
        """Record advice for the person to confirm (joins the caller's transaction, if any)."""
        rec_id = self.store.add_recommendation(self.now_ms(), advice.kind.value, advice.to_dict())
        advice.numbers["recommendation_id"] = rec_id

    def decide(self, recommendation_id: int, followed: bool) -> None:
        """Record that the person confirmed or declined a recommendation (and sync the outcome)."""
        now = self.now_ms()
        with self.store.transaction() as conn:
            self.store.decide_recommendation(recommendation_id, "confirmed" if followed else "declined", now)
            record = self.store.recommendation(recommendation_id) or {}
            payload = record.get("payload", {})
            self._enqueue(conn, SummaryPayload(now, now, recommendations=(RecommendationOutcome(
                record.get("created_at_ms", now), str(recommendation_id), float(payload.get("bolus_u", 0.0)),
                followed, str(payload.get("summary", ""))[:2000]),)))

    # --- internals -----------------------------------------------------------------------------------------

    def _expire_temp_basal(self, now_ms: int) -> None:
        if self._temp_basal_until_ms is not None and now_ms >= self._temp_basal_until_ms:
            self._basal_u_per_h = self.config.therapy.basal_u_per_h
            self._temp_basal_until_ms = None

    def _advice_due(self, reading: StoredReading, forecast_min: float, at_min: float) -> bool:
        if at_min - self._last_advice_min < AUTO_ADVICE_EVERY_MIN:
            return False
        open_advice = self.store.open_recommendation()
        if open_advice is not None and open_advice["kind"] == "meal_bolus" and \
                self.now_ms() - open_advice["created_at_ms"] < MEAL_ADVICE_HOLD_MIN * MS_PER_MIN:
            return False  # a person is deciding on meal advice: do not pull it from under them
        low_risk = forecast_min < 80 or reading.glucose_mg_dl < 80
        high = reading.glucose_mg_dl > 200
        return low_risk or high or self._withheld_meal_due_u(reading) > 0

    def _alert_observation(self, reading: StoredReading, forecast_min: float) -> AlertObservation:
        return AlertObservation(
            now_min=_minutes(reading.timestamp_ms),
            glucose_mg_dl=reading.glucose_mg_dl,
            glucose_age_min=max((self.now_ms() - reading.timestamp_ms) / MS_PER_MIN, 0.0),
            trend_mg_dl_min=reading.trend_mg_dl_min,
            forecast_min_mg_dl_within_horizon=forecast_min,
            sensor_warming_up=self.cgm_quality.warming_up,
            sensor_fault="sensor malfunction" if self.cgm_quality.sensor_fault else None,
            pump_occlusion=self.pump_occlusion,
            pump_reservoir_u=self.pump_reservoir_u,
        )

    @staticmethod
    def _twin_estimate_payload(timestamp_ms: int, estimate: TwinEstimate) -> SummaryPayload:
        parameters = {
            "insulin_sensitivity_factor_mg_dl_per_u": estimate.insulin_sensitivity_factor_mg_dl_per_u.value,
            "insulin_sensitivity_factor_sd": estimate.insulin_sensitivity_factor_mg_dl_per_u.sd,
            "sensitivity_ratio": estimate.sensitivity_ratio.value,
            "disturbance_mg_dl_per_min": estimate.disturbance_mg_dl_per_min.value,
            "insulin_on_board_u": estimate.insulin_on_board_u,
            "carbs_on_board_g": estimate.carbs_on_board_g,
        }
        finite = {name: float(value) for name, value in parameters.items() if math.isfinite(value)}
        return SummaryPayload(timestamp_ms, timestamp_ms, twin_parameters=(SyncTwinEstimate(timestamp_ms, finite),))

    def _enqueue(self, conn, payload: SummaryPayload) -> None:  # type: ignore[no-untyped-def]
        if self.outbox is not None:
            self.outbox.enqueue(payload.to_bytes(), "summary", conn=conn)


__all__ = ["AdviceKind", "HubPipeline", "ReadingOutcome"]
