"""The hub's local HTTP interface: the patient's page and the API the CLI (and a phone) use.

Served by uvicorn on the hub's own event loop, so handlers touch the pipeline on the same thread as the BLE
sessions. Requests are validated by pydantic models with hard bounds; anything else is a 422, never a crash.
Dosing needs an explicit confirmation of one stored recommendation; the pump then gets exactly that dose.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from ..config import HubConfig
from ..recommend import HypotheticalAction
from .page import PageData, render_page
from .pipeline import HubPipeline

PumpExecutor = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
HEARTBEAT_STALE_S = 120.0


@dataclass
class HubRuntime:
    pipeline: HubPipeline
    config: HubConfig
    pump_executor: PumpExecutor | None = None
    started_at_s: float = field(default_factory=time.monotonic)
    heartbeat_s: float = field(default_factory=time.monotonic)
    devices: dict[str, str] = field(default_factory=dict)  # e.g. {"cgm": "connected"}

    def beat(self) -> None:
        self.heartbeat_s = time.monotonic()

    def health(self) -> tuple[bool, str]:
        age = time.monotonic() - self.heartbeat_s
        if age > HEARTBEAT_STALE_S:
            return False, f"THE HUB IS NOT WORKING: no heartbeat for {age:.0f} s. Use your CGM reader or app."
        states = ", ".join(f"{k}: {v}" for k, v in sorted(self.devices.items())) or "no devices yet"
        return True, f"Hub running ({states})."


class MealRequest(BaseModel):
    carbs_g: float = Field(ge=0, le=250, description="grams of carbohydrate about to be eaten")


class WhatIfRequest(BaseModel):
    carbs_g: float = Field(default=0, ge=0, le=250)
    bolus_u: float = Field(default=0, ge=0, le=25)
    temp_basal_u_per_h: float | None = Field(default=None, ge=0, le=12)
    temp_basal_duration_min: float = Field(default=30, ge=0, le=240)
    horizon_min: float = Field(default=180, ge=30, le=360)


class DecisionRequest(BaseModel):
    recommendation_id: int = Field(ge=1)


class SnoozeRequest(BaseModel):
    minutes: float = Field(ge=1, le=240)


def _status(runtime: HubRuntime) -> dict[str, Any]:
    pipeline = runtime.pipeline
    snap = pipeline.snapshot()
    ok, text = runtime.health()
    estimate = pipeline.latest_estimate
    return {
        "hub_ok": ok,
        "hub_status": text,
        "units": runtime.config.units,
        "glucose_mg_dl": snap.glucose_mg_dl,
        "glucose_display": runtime.config.display_glucose(snap.glucose_mg_dl) if snap.glucose_mg_dl else None,
        "glucose_age_min": None if snap.glucose_age_min is None else round(snap.glucose_age_min, 1),
        "trend_mg_dl_min": snap.trend_mg_dl_min,
        "iob_u": None if snap.iob_u is None else round(snap.iob_u, 2),
        "cob_g": None if snap.cob_g is None else round(snap.cob_g, 1),
        "isf_estimate_mg_dl_per_u": None if estimate is None else round(
            estimate.insulin_sensitivity_factor_mg_dl_per_u.value, 1),
        "alerts": pipeline.store.open_alerts(),
        "advice": pipeline.store.open_recommendation(),
        "readings_stored": pipeline.store.count_readings(),
        "devices": runtime.devices,
    }


def create_hub_app(runtime: HubRuntime) -> FastAPI:
    app = FastAPI(title="GlucoTwin hub", version="1", description="The patient's hub: status, advice, what-if.")
    pipeline = runtime.pipeline

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return _status(runtime)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        ok, text = runtime.health()
        if not ok:
            raise HTTPException(503, text)
        return {"ok": True, "status": text}

    @app.post("/api/meal")
    async def meal(request: MealRequest) -> dict[str, Any]:
        try:
            advice = pipeline.advise(announced_carbs_g=request.carbs_g, store=True)
        except ValueError as error:
            raise HTTPException(422, str(error)) from error
        data = advice.to_dict()
        data["id"] = advice.numbers.get("recommendation_id")
        return data

    @app.post("/api/whatif")
    async def whatif(request: WhatIfRequest) -> dict[str, Any]:
        predictor = pipeline.predictor(horizon_min=request.horizon_min)
        action = HypotheticalAction(bolus_u=request.bolus_u, carbs_g=request.carbs_g,
                                    temp_basal_u_per_h=request.temp_basal_u_per_h,
                                    temp_basal_duration_min=request.temp_basal_duration_min)
        baseline = predictor.predict(HypotheticalAction())
        scenario = predictor.predict(action)
        return {"no_action": baseline.to_dict(), "what_if": scenario.to_dict(),
                "summary": (f"{action.describe()}: lowest {scenario.min_mg_dl():.0f} mg/dL, "
                            f"eventually {scenario.eventual_mg_dl:.0f} mg/dL (no action: lowest "
                            f"{baseline.min_mg_dl():.0f}, eventually {baseline.eventual_mg_dl:.0f})")}

    @app.post("/api/confirm")
    async def confirm(request: DecisionRequest) -> dict[str, Any]:
        record = pipeline.store.recommendation(request.recommendation_id)
        if record is None:
            raise HTTPException(404, f"no recommendation {request.recommendation_id}")
        if record["status"] != "open":
            raise HTTPException(409, f"recommendation {request.recommendation_id} is {record['status']}")
        result: dict[str, Any] = {"delivered": False, "note": "nothing to deliver"}
        payload = record["payload"]
        wants_pump = payload.get("bolus_u", 0) > 0 or payload.get("temp_basal_u_per_h") is not None
        if wants_pump and runtime.pump_executor is not None:
            try:
                result = await runtime.pump_executor(payload)
            except Exception as error:  # the person must hear that delivery is uncertain, never get a 500
                result = {"delivered": None, "error": f"pump link failed: {type(error).__name__}: {error}. "
                                                      "Check the pump's history before dosing again."}
        elif wants_pump:
            result = {"delivered": False, "error": "no pump connected: deliver it yourself if you agree"}
        pipeline.decide(request.recommendation_id, followed=True)
        return {"recommendation_id": request.recommendation_id, "status": "confirmed", "pump": result}

    @app.post("/api/decline")
    async def decline(request: DecisionRequest) -> dict[str, Any]:
        try:
            pipeline.decide(request.recommendation_id, followed=False)
        except Exception as error:
            raise HTTPException(409, str(error)) from error
        return {"recommendation_id": request.recommendation_id, "status": "declined"}

    @app.post("/api/alerts/{kind}/snooze")
    async def snooze(kind: str, request: SnoozeRequest) -> dict[str, Any]:
        now_min = pipeline.now_ms() / 60_000
        try:
            until_min = pipeline.alerts.snooze(kind, now_min, request.minutes)
        except KeyError as error:
            raise HTTPException(404, str(error)) from error
        pipeline.store.snooze_alert(kind, int(until_min * 60_000))
        return {"kind": kind, "snoozed_until_ms": int(until_min * 60_000)}

    @app.get("/api/settings-review")
    async def settings_review(days: int = 14) -> dict[str, Any]:
        from .review import review_from_store

        days = max(1, min(days, 90))
        return review_from_store(pipeline.store, runtime.config.therapy, pipeline.now_ms(), days).to_dict()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return render_page(page_data(runtime))

    return app


def page_data(runtime: HubRuntime) -> PageData:
    pipeline = runtime.pipeline
    now = pipeline.now_ms()
    status = _status(runtime)
    history = [(r.timestamp_ms, r.glucose_mg_dl) for r in pipeline.store.readings_between(now - 86_400_000, now + 1)]
    minutes: list[float] = []
    mean: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    forecast = pipeline.latest_forecast  # the hub's forecast (ONNX + twin blend), made at the latest reading
    latest = pipeline.latest_reading
    if forecast is not None and latest is not None:
        offset_min = (latest.timestamp_ms - now) / 60_000  # the forecast started at the reading, not now
        minutes = [offset_min] + [offset_min + float(h) for h in forecast.horizons_min]
        mean = [latest.glucose_mg_dl] + [float(v) for v in forecast.mean_mg_dl]
        lower = [latest.glucose_mg_dl] + [float(v) for v in forecast.lower_95_mg_dl]
        upper = [latest.glucose_mg_dl] + [float(v) for v in forecast.upper_95_mg_dl]
    advice = status["advice"]
    advice_view = dict(advice["payload"], id=advice["id"]) if advice else None
    isf = status["isf_estimate_mg_dl_per_u"]
    return PageData(
        now_ms=now, glucose_text=status["glucose_display"], glucose_mg_dl=status["glucose_mg_dl"],
        trend_mg_dl_min=status["trend_mg_dl_min"], reading_age_min=status["glucose_age_min"], iob_u=status["iob_u"],
        cob_g=status["cob_g"], isf_text=f"{isf:.0f} mg/dL/U" if isf else None, history=history,
        forecast_minutes=minutes, forecast_mean=mean, forecast_lower=lower, forecast_upper=upper,
        advice=advice_view, alerts=status["alerts"], hub_ok=status["hub_ok"], hub_status_text=status["hub_status"],
    )
