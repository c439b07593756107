"""The same service on PostgreSQL (hash-partitioned by patient): loss-free sync under faults, consent,
erasure and the audit chain. Skipped when PostgreSQL's binaries or psycopg are not installed."""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloud_sync.bench_load import _pg_bin, postgres_cluster
from cloud_sync.envelope import SummaryPayload
from cloud_sync.errors import KeyDestroyed
from cloud_sync.outbox import Outbox
from cloud_sync.service import audit
from cloud_sync.service.app import Service, ServiceConfig, create_app
from cloud_sync.sync_client import SyncClient, SyncConfig, enroll
from tests.cloud_sync.cloudsync_chaos_proxy import ChaosProxy
from tests.cloud_sync.cloudsync_support import hour_summary, make_clinic, new_patient_code, running_server

pytestmark = pytest.mark.skipif(_pg_bin() is None or importlib.util.find_spec("psycopg") is None,
                                reason="PostgreSQL binaries or psycopg not installed")


@pytest.fixture(scope="module")
def pg_service() -> Iterator[Service]:
    with postgres_cluster(install=False) as dsn:
        assert dsn is not None
        service = Service(ServiceConfig(postgres_dsn=dsn, master_key=b"p" * 32, postgres_pool_size=4))
        yield service
        service.close()


def test_partitioned_schema(pg_service: Service) -> None:
    with pg_service.db.transaction() as tx:
        parts = tx.all("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'records'::regclass")
    assert len(parts) == 8


def test_sync_under_faults_then_erasure_on_postgres(pg_service: Service, tmp_path: Path) -> None:
    clinic = make_clinic(pg_service)
    with running_server(create_app(pg_service.config, service=pg_service)) as url, ChaosProxy(url, 5) as proxy:
        hubs = []
        for i in range(3):
            patient_id, code = new_patient_code(clinic)
            outbox = Outbox.open(tmp_path / f"hub{i}.db")
            payloads = [hour_summary(random.Random(i * 100 + h), h).to_bytes() for h in range(15)]
            for payload in payloads:
                outbox.enqueue(payload)
            hubs.append((patient_id, enroll(url, code), outbox, payloads))
        for patient_id, creds, outbox, payloads in hubs:
            client = SyncClient(outbox, creds, SyncConfig(proxy.url, batch_records=4, request_retries=8,
                                                          request_backoff_factor_s=0.01, request_backoff_max_s=0.05))
            assert client.sync_once().acknowledged_seq == len(payloads)
            stored = pg_service.records.read(patient_id)
            expected = [r for p in payloads for r in SummaryPayload.from_bytes(p).records()]
            assert sorted((r.record_type, r.time_ms, json.dumps(r.data, sort_keys=True)) for r in stored) == \
                sorted((r.record_type, r.time_ms, json.dumps(r.data, sort_keys=True)) for r in expected)
        assert proxy.counts["drop_after_commit"] + proxy.counts["503"] + proxy.counts["429"] > 0
        patient_id, creds, _, _ = hubs[0]
        assert requests.get(f"{url}/v1/patients/{patient_id}/records?record_type=glucose",
                            headers={"Authorization": f"Bearer {clinic.clinician_token}"}, timeout=10).status_code == 200
        erased = requests.delete(f"{url}/v1/patients/{patient_id}",
                                 headers={"Authorization": f"Bearer {creds.patient_token}"}, timeout=10)
        assert erased.status_code == 200
    with pytest.raises(KeyDestroyed), pg_service.db.transaction() as tx:
        pg_service.vault.forget(patient_id)
        pg_service.vault.decrypt_record(tx, patient_id, b"\0" * 12, b"\0" * 32, b"")
    assert pg_service.records.count(hubs[1][0]) > 0
    assert audit.verify(pg_service.db) > 5
    with pytest.raises(Exception, match="append-only"), pg_service.db.transaction() as tx:
        tx.execute("UPDATE audit_log SET actor = 'x' WHERE entry_id = 1")
