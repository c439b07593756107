"""Benchmarks of the clinician pages against a named baseline: the DECRYPT FLOOR (reading and decrypting the
same 14 days of records with ``RecordStore.read``, which every page must do). What a page costs beyond the
floor is the report's own work (AGP statistics, percentiles, SVG, templates, HTTP).

    .venv/bin/python -m pytest tests/cloud_sync/test_reports_benchmark.py -m benchmark --benchmark-enable \
        --benchmark-columns=min,median,max,rounds

Without ``--benchmark-enable`` (as in CI) each runs once as a smoke test.
"""

from __future__ import annotations

import random
import time

import pytest
import requests

from cloud_sync.reports.agp import build_agp
from tests.cloud_sync.reports_support import DAY_MS, day_payload, daily_wave, live_service, make_clinic, new_hub

pytestmark = pytest.mark.benchmark
PATIENTS = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with live_service(tmp_path_factory.mktemp("bench")) as (service, url):
        clinic = make_clinic(service)
        today = int(time.time() * 1000) // DAY_MS * DAY_MS
        hubs = [new_hub(url, clinic, f"Patient {i}") for i in range(PATIENTS)]
        for i, hub in enumerate(hubs):
            hub.push([day_payload(today - d * DAY_MS, daily_wave, random.Random(i * 100 + d))
                      for d in range(14, 0, -1)])
        yield {"service": service, "url": url, "pid": hubs[0].patient_id, "pids": [h.patient_id for h in hubs],
               "auth": {"Authorization": f"Bearer {clinic.clinician_token}"}, "end": today}


def _read(env, pid):
    return env["service"].records.read(pid, ["glucose"], env["end"] - 14 * DAY_MS, env["end"])


@pytest.mark.benchmark(group="one patient, 14 days")
def test_baseline_decrypt_floor(benchmark, env) -> None:
    rows = benchmark(_read, env, env["pid"])
    assert len(rows) == 14 * 288


@pytest.mark.benchmark(group="one patient, 14 days")
def test_agp_data_pure(benchmark, env) -> None:
    readings = [(r.time_ms, float(r.data["glucose_mg_dl"])) for r in _read(env, env["pid"])]
    report = benchmark(build_agp, readings, env["end"] - 14 * DAY_MS, env["end"])
    assert report.summary.readings_count == 14 * 288


@pytest.mark.benchmark(group="one patient, 14 days")
def test_agp_page_http(benchmark, env) -> None:
    url = f"{env['url']}/clinic/patients/{env['pid']}?days=14&end={env['end']}"
    response = benchmark(requests.get, url, headers=env["auth"], timeout=60)
    assert response.status_code == 200


@pytest.mark.benchmark(group="one patient, 14 days")
def test_fhir_bundle_http(benchmark, env) -> None:
    url = f"{env['url']}/api/patients/{env['pid']}/fhir?days=14&end={env['end']}"
    response = benchmark(requests.get, url, headers=env["auth"], timeout=120)
    assert response.status_code == 200


@pytest.mark.benchmark(group="patient list")
def test_baseline_decrypt_floor_all_patients(benchmark, env) -> None:
    counts = benchmark(lambda: [len(_read(env, pid)) for pid in env["pids"]])
    assert counts == [14 * 288] * PATIENTS


@pytest.mark.benchmark(group="patient list")
def test_patient_list_http(benchmark, env) -> None:
    url = f"{env['url']}/clinic/patients?days=14&end={env['end']}"
    response = benchmark(requests.get, url, headers=env["auth"], timeout=120)
    assert response.status_code == 200 and response.text.count('class="patient-row"') == PATIENTS
