"""The report pages, FHIR export and Nightscout API on PostgreSQL (their own tables, OFFSET queries, row
locks on one-time tickets). Skipped when PostgreSQL's binaries or psycopg are not installed."""

from __future__ import annotations

import importlib.util
import random
import time
from collections.abc import Iterator

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from cloud_sync.bench_load import _pg_bin, postgres_cluster
from cloud_sync.fhir_export import profile_problems
from cloud_sync.reports.routes import create_app_with_reports
from cloud_sync.service.app import Service, ServiceConfig
from tests.cloud_sync.cloudsync_support import running_server
from tests.cloud_sync.reports_support import DAY_MS, day_payload, daily_wave, make_clinic, new_hub

pytestmark = pytest.mark.skipif(_pg_bin() is None or importlib.util.find_spec("psycopg") is None,
                                reason="PostgreSQL binaries or psycopg not installed")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[tuple[Service, str]]:
    with postgres_cluster(install=False) as dsn:
        assert dsn is not None
        service = Service(ServiceConfig(postgres_dsn=dsn, master_key=b"r" * 32, postgres_pool_size=4))
        with running_server(create_app_with_reports(service.config, service=service)) as url:
            yield service, url
        service.close()


def test_reports_on_postgres(pg_url) -> None:
    service, url = pg_url
    clinic = make_clinic(service)
    hub = new_hub(url, clinic, "Pg Patient")
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    hub.push([day_payload(today - d * DAY_MS, daily_wave, random.Random(d), hypo_at_min=60 if d == 1 else None)
              for d in (3, 2, 1)])
    auth = {"Authorization": f"Bearer {clinic.clinician_token}"}
    listed = requests.get(f"{url}/clinic/patients?days=3", headers=auth, timeout=60)
    assert listed.status_code == 200 and hub.patient_id in listed.text and "flag-hypo" in listed.text
    page = requests.get(f"{url}/clinic/patients/{hub.patient_id}?days=3", headers=auth, timeout=60)
    assert page.status_code == 200 and "agp-modal-day" in page.text
    bundle = Bundle.model_validate_json(requests.get(f"{url}/api/patients/{hub.patient_id}/fhir?days=3",
                                                     headers=auth, timeout=60).text)
    assert profile_problems(bundle) == []

    ticket = requests.post(f"{url}/clinic/session-tickets", headers=auth, timeout=30).json()
    assert requests.Session().get(url + ticket["url"], timeout=60).status_code == 200
    assert requests.get(url + ticket["url"], timeout=30).status_code == 401

    secret = requests.post(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens", headers=auth,
                           timeout=30).json()["secret"]
    entries = requests.get(f"{url}/api/v1/entries.json", params={"token": secret, "count": 7}, timeout=30).json()
    assert len(entries) == 7 and entries[0]["date"] == today - 5 * 60_000
    assert all("delta" in e and "direction" in e for e in entries)
    treatments = requests.get(f"{url}/api/v1/treatments", params={"token": secret, "count": 4}, timeout=30).json()
    assert len(treatments) == 4
