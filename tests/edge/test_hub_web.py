"""The hub's local API and page over a real ASGI app, on a real pipeline and SQLite file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sqlite_utils
from fastapi.testclient import TestClient

from cloud_sync.outbox import Outbox
from edge.agent.pipeline import HubPipeline
from edge.agent.web import HubRuntime, create_hub_app
from edge.config import config_from_dict
from edge.store import HubStore, StoredReading

START_MS = 1_790_000_000_000
CONFIG = config_from_dict({"therapy": {
    "age_group": "adult", "body_weight_kg": 70, "basal_u_per_h": 1.0,
    "insulin_sensitivity_mg_dl_per_u": 50, "carb_ratio_g_per_u": 10}})


@pytest.fixture()
def hub(tmp_path: Path):
    clock = [START_MS]
    store = HubStore(tmp_path / "hub.sqlite")
    pipeline = HubPipeline(store, CONFIG, outbox=Outbox(sqlite_utils.Database(store.conn)), now_ms=lambda: clock[0],
                           auto_advice=False)
    for minute in range(0, 180, 5):
        clock[0] = START_MS + minute * 60_000
        pipeline.on_reading(StoredReading("s1", minute, clock[0], 150.0 + minute / 5, trend_mg_dl_min=0.2))
    delivered: list[dict] = []

    async def pump(payload: dict) -> dict:
        delivered.append(payload)
        return {"delivered": True, "bolus_u": payload["bolus_u"]}

    runtime = HubRuntime(pipeline, CONFIG, pump_executor=pump)
    runtime.devices["cgm"] = "connected"
    return TestClient(create_hub_app(runtime)), delivered


def test_status_reports_the_latest_reading_and_twin(hub) -> None:
    client, _ = hub
    status = client.get("/api/status").json()
    assert status["glucose_mg_dl"] == pytest.approx(185.0)
    assert status["hub_ok"] is True
    assert status["iob_u"] is not None and status["readings_stored"] == 36


def test_meal_advice_then_confirm_sends_exactly_that_dose(hub) -> None:
    client, delivered = hub
    advice = client.post("/api/meal", json={"carbs_g": 45}).json()
    assert advice["kind"] == "meal_bolus" and advice["bolus_u"] > 0 and advice["id"]
    confirmed = client.post("/api/confirm", json={"recommendation_id": advice["id"]}).json()
    assert confirmed["status"] == "confirmed"
    assert len(delivered) == 1 and delivered[0]["bolus_u"] == advice["bolus_u"]
    again = client.post("/api/confirm", json={"recommendation_id": advice["id"]})
    assert again.status_code == 409 and len(delivered) == 1


@pytest.mark.parametrize("body", [{"carbs_g": -5}, {"carbs_g": 1e9}, {"carbs_g": "lots"}, {}, [1, 2]])
def test_hostile_meal_requests_are_422(hub, body) -> None:
    client, delivered = hub
    assert client.post("/api/meal", json=body).status_code == 422
    assert delivered == []


def test_whatif_compares_with_no_action(hub) -> None:
    client, _ = hub
    data = client.post("/api/whatif", json={"carbs_g": 60, "bolus_u": 4}).json()
    assert len(data["what_if"]["mean_mg_dl"]) == len(data["no_action"]["mean_mg_dl"])
    assert "lowest" in data["summary"]


def test_unknown_recommendation_is_404(hub) -> None:
    client, _ = hub
    assert client.post("/api/confirm", json={"recommendation_id": 999}).status_code == 404


def test_page_renders_with_chart(hub) -> None:
    client, _ = hub
    response = client.get("/")
    assert response.status_code == 200
    text = response.text
    assert 'id="glucose"' in text.replace("'", '"') and "185 mg/dL" in text
    svg = text[text.index("<svg"): text.index("</svg>") + 6]
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and len(root) > 10


def test_a_failing_pump_link_is_reported_not_a_500(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite")
    clock = [START_MS]
    pipeline = HubPipeline(store, CONFIG, now_ms=lambda: clock[0], auto_advice=False)
    for minute in range(0, 60, 5):
        clock[0] = START_MS + minute * 60_000
        pipeline.on_reading(StoredReading("s1", minute, clock[0], 160.0))

    async def broken(payload: dict) -> dict:
        raise TimeoutError("no response")

    client = TestClient(create_hub_app(HubRuntime(pipeline, CONFIG, pump_executor=broken)))
    advice = client.post("/api/meal", json={"carbs_g": 30}).json()
    response = client.post("/api/confirm", json={"recommendation_id": advice["id"]})
    assert response.status_code == 200
    assert "Check the pump's history" in response.json()["pump"]["error"]
