"""Schemathesis fuzzes the service from its own OpenAPI spec over real HTTP: no input may cause a 5xx.

CI runs a bounded number of examples per operation; ``-m slow`` runs a longer campaign.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from cloud_sync.service import accounts
from cloud_sync.service.app import create_app
from tests.cloud_sync.cloudsync_support import make_clinic, make_service, new_patient_code, running_server

_TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = make_service(Path(tmp_path_factory.mktemp("fuzz")))
    clinic = make_clinic(service)
    patient_id, _ = new_patient_code(clinic)
    with service.db.transaction() as tx:
        _TOKENS["admin"] = accounts.issue_token(tx, "admin", "fuzzer")
        _TOKENS["patient"] = accounts.issue_token(tx, "patient", patient_id, patient_id=patient_id)
    _TOKENS["clinician"] = clinic.clinician_token
    with running_server(create_app(service.config, service=service)) as url:
        yield url
    service.close()


def _token_for(path: str, method: str) -> str:
    if path.startswith(("/v1/clinics", "/v1/audit", "/v1/ingest-keys")):
        return _TOKENS["admin"]
    if "/consents/" in path or method == "DELETE":
        return _TOKENS["patient"]
    return _TOKENS["clinician"]


def _check(case) -> None:  # noqa: ANN001 - schemathesis Case
    headers = {"Authorization": f"Bearer {_token_for(case.operation.path, case.method.upper())}"}
    if case.headers and any(k.lower() == "authorization" for k in case.headers):
        headers = {}  # the generated case tests authorization itself
    case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=30)


def _fuzz(url: str, max_examples: int) -> int:
    """Run every operation of the live spec in positive and negative generation modes; return cases run."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    ran = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case) -> None:  # noqa: ANN001
                nonlocal ran
                ran += 1
                _check(case)

            try:
                run()
            except Unsatisfiable:  # nothing to negate in this operation
                continue
    return ran


def test_no_server_errors_bounded(fuzz_url: str) -> None:
    assert _fuzz(fuzz_url, max_examples=6) > 80


@pytest.mark.slow
def test_no_server_errors_long(fuzz_url: str) -> None:
    assert _fuzz(fuzz_url, max_examples=300) > 2000
