"""Helpers for the report/FHIR/Nightscout tests: a live service with the report routes, a clinic, and hubs
that push synthetic days of data through the real enrollment and ingest path (HPKE envelopes over HTTP)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from cloud_sync.envelope import (
    AlertEvent,
    CarbEntry,
    EnvelopeHeader,
    InsulinDose,
    ReadingSeries,
    RecommendationOutcome,
    SummaryPayload,
    TwinEstimate,
    seal,
)
from cloud_sync.reports.routes import create_app_with_reports
from cloud_sync.service.app import Service
from cloud_sync.sync_client import HubCredentials, enroll
from tests.cloud_sync.cloudsync_support import Clinic, make_clinic, make_service, new_patient_code, running_server

DAY_MS = 86_400_000
FIVE_MIN_MS = 300_000


def daily_wave(time_ms: int) -> float:
    """A smooth day: 110 mg/dL at night, meal peaks (~08:30, 13:30, 19:30 UTC)."""
    minute = (time_ms // 60_000) % 1440
    g = 110.0
    for peak_min, height in ((510, 90.0), (810, 70.0), (1170, 110.0)):
        g += height * math.exp(-((minute - peak_min) / 50.0) ** 2)
    return g


def day_payload(day_start_ms: int, glucose: Callable[[int], float], rng: random.Random, *,
                hypo_at_min: int | None = None, step_min: int = 5) -> SummaryPayload:
    """One day: readings every 5 min, three meal boluses with carbs, hourly twin estimates, advice."""
    pairs = []
    for k in range(1440 // step_min):
        t = day_start_ms + k * step_min * 60_000
        g = glucose(t) + rng.uniform(-4, 4)
        if hypo_at_min is not None and hypo_at_min <= k * step_min < hypo_at_min + 30:
            g = 48.0
        pairs.append((t, int(round(max(40.0, min(400.0, g))))))
    insulin, carbs, recs = [], [], []
    for n, (meal_min, grams) in enumerate(((480, 45.0), (780, 60.0), (1140, 70.0))):
        t = day_start_ms + meal_min * 60_000
        dose = round(grams / 10.0, 2)
        followed = n != 1
        recs.append(RecommendationOutcome(t - 60_000, f"rec-{day_start_ms}-{n}", dose, followed, f"meal {grams:.0f} g"))
        carbs.append(CarbEntry(t, grams))
        if followed:
            insulin.append(InsulinDose(t + 60_000, dose, "bolus"))
    insulin.append(InsulinDose(day_start_ms + 3 * 3_600_000, 0.4, "basal", 30.0))
    twin = tuple(TwinEstimate(day_start_ms + h * 3_600_000, {
        "insulin_sensitivity_factor_mg_dl_per_u": 45.0 + 5 * math.sin(h / 4), "insulin_sensitivity_factor_sd": 4.0,
        "insulin_on_board_u": 1.5, "carbs_on_board_g": 12.0}) for h in range(0, 24, 2))
    alerts = (AlertEvent(day_start_ms + hypo_at_min * 60_000, "urgent_low", "urgent", "below 54"),) \
        if hypo_at_min is not None else ()
    return SummaryPayload(day_start_ms, day_start_ms + DAY_MS, ReadingSeries.from_pairs(pairs), tuple(insulin),
                          tuple(carbs), twin, tuple(recs), alerts)


@dataclass
class Hub:
    url: str
    creds: HubCredentials
    patient_id: str
    seq: int = 0

    def push(self, payloads: list[SummaryPayload]) -> None:
        envelopes = []
        for payload in payloads:
            self.seq += 1
            header = EnvelopeHeader(self.creds.device_id, self.creds.identity.key_id, self.seq,
                                    self.creds.ingest_key.key_id)
            envelopes.append(seal(payload.to_bytes(), header, self.creds.ingest_key.x25519(),
                                  self.creds.identity.private_key).to_json())
        for i in range(0, len(envelopes), 20):
            response = requests.post(f"{self.url}/v1/ingest/{self.creds.device_id}",
                                     json={"envelopes": envelopes[i:i + 20]}, timeout=30)
            assert response.status_code == 200, response.text


def new_hub(url: str, clinic: Clinic, name: str = "Test Person") -> Hub:
    patient_id, code = new_patient_code(clinic)
    if name != "Test Person":
        with clinic.service.db.transaction() as tx:
            tx.execute("UPDATE patients SET display_name = ? WHERE patient_id = ?", (name, patient_id))
    return Hub(url, enroll(url, code), patient_id)


@contextmanager
def live_service(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    service = make_service(tmp_path)
    with running_server(create_app_with_reports(service.config, service=service)) as url:
        yield service, url
    service.close()


__all__ = ["daily_wave", "day_payload", "Hub", "new_hub", "live_service", "make_clinic", "DAY_MS"]
