"""Schemathesis fuzzes the report, FHIR and Nightscout routes from the live OpenAPI spec: no 5xx, ever.

CI runs a bounded number of examples per operation; ``-m slow`` runs a longer campaign.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.cloud_sync.reports_support import DAY_MS, day_payload, daily_wave, live_service, make_clinic, new_hub

MINE = ("/clinic", "/api/", "/fhir/", "/v1/patients/{patient_id}/nightscout-tokens")


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory) -> Iterator[dict]:
    with live_service(tmp_path_factory.mktemp("reports-fuzz")) as (service, url):
        clinic = make_clinic(service)
        hub = new_hub(url, clinic)
        hub.push([day_payload((int(time.time() * 1000) // DAY_MS - 1) * DAY_MS, daily_wave, random.Random(1))])
        token = requests.post(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens",
                              headers={"Authorization": f"Bearer {clinic.clinician_token}"}, timeout=30).json()
        yield {"url": url, "clinician": clinic.clinician_token, "secret": token["secret"], "patient": hub.patient_id}


def _fuzz(env: dict, max_examples: int) -> int:
    schema = schemathesis.openapi.from_url(f"{env['url']}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith(MINE)]
    assert len(operations) >= 20
    ran = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case) -> None:  # noqa: ANN001 - schemathesis Case
                nonlocal ran
                ran += 1
                if case.path_parameters and "patient_id" in case.path_parameters and random.random() < 0.5:
                    case.path_parameters["patient_id"] = env["patient"]  # reach the data, not only the 404
                headers = {"Authorization": f"Bearer {env['clinician']}"}
                if case.operation.path.startswith("/api/v1/"):
                    headers = {}
                    case.query = {**(case.query or {}), "token": env["secret"]}
                case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=60)

            try:
                run()
            except Unsatisfiable:
                continue
    return ran


def test_report_routes_never_answer_5xx(fuzz_env) -> None:
    random.seed(7)
    assert _fuzz(fuzz_env, max_examples=4) > 60


@pytest.mark.slow
def test_report_routes_never_answer_5xx_long(fuzz_env) -> None:
    random.seed(8)
    assert _fuzz(fuzz_env, max_examples=60) > 1000
