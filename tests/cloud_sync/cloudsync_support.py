"""Shared helpers for the cloud_sync tests: a real uvicorn server on loopback, a seeded service, hub payloads."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from cloud_sync.envelope import (
    AlertEvent,
    CarbEntry,
    InsulinDose,
    ReadingSeries,
    RecommendationOutcome,
    SummaryPayload,
    TwinEstimate,
)
from cloud_sync.keys import create_enrollment_code
from cloud_sync.service import accounts
from cloud_sync.service.app import Service, ServiceConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL; stop it afterwards."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Clinic:
    service: Service
    clinic_id: str
    clinician_id: str
    clinician_token: str


def make_service(tmp_path: Path, **overrides) -> Service:
    return Service(ServiceConfig(db_path=tmp_path / "cloud.db", master_key=b"k" * 32, **overrides))


def make_clinic(service: Service, name: str = "Clinic A") -> Clinic:
    with service.db.transaction() as tx:
        clinic_id = accounts.create_clinic(tx, name)
        clinician_id = accounts.create_clinician(tx, clinic_id, f"dr@{clinic_id}.example", "correct horse battery")
        token = accounts.issue_token(tx, "clinician", clinician_id, clinic_id=clinic_id)
    return Clinic(service, clinic_id, clinician_id, token)


def new_patient_code(clinic: Clinic) -> tuple[str, str]:
    """(patient_id, one-time enrollment code) at ``clinic``."""
    with clinic.service.db.transaction() as tx:
        patient_id = accounts.create_patient(tx, clinic.clinic_id, "Test Person")
        code = create_enrollment_code(tx, patient_id, clinic.clinic_id)
    return patient_id, code


def hour_summary(rng: random.Random, hour_index: int, start_ms: int = 1_767_225_600_000) -> SummaryPayload:
    """One hour of hub data: 12 CGM readings (5 min), sometimes a dose, carbs, twin estimate, alert."""
    t0 = start_ms + hour_index * 3_600_000
    pairs = [(t0 + i * 300_000, rng.randint(50, 300)) for i in range(12)]
    insulin = (InsulinDose(t0 + 600_000, round(rng.uniform(0.5, 8.0), 2), "bolus"),) if rng.random() < 0.3 else ()
    carbs = (CarbEntry(t0 + 500_000, float(rng.randint(10, 80))),) if insulin else ()
    twin = (TwinEstimate(t0, {"isf_mg_dl_per_u": round(rng.uniform(30, 60), 3), "cr_g_per_u": 10.0}),)
    recs = (RecommendationOutcome(t0 + 400_000, f"r{hour_index}", 2.5, rng.choice([True, False, None]), "meal"),) \
        if insulin else ()
    alerts = (AlertEvent(t0 + 900_000, "low", "urgent", "glucose below 54"),) if pairs[3][1] < 60 else ()
    return SummaryPayload(t0, t0 + 3_600_000, ReadingSeries.from_pairs(pairs), insulin, carbs, twin, recs, alerts)
