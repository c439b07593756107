"""Chaos test: hubs that were offline for a (simulated) week sync through a fault-injecting proxy to a real
uvicorn server on loopback, with 503s, 429 + Retry-After, dropped connections before and after commit (lost
acknowledgements) and hub restarts (a new client rebuilt from the SQLite outbox and the credential files).
The service must end with exactly the hubs' records: nothing missing, nothing twice."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sync.envelope import SummaryPayload
from cloud_sync.errors import TransientSyncError
from cloud_sync.outbox import Outbox
from cloud_sync.service.app import create_app
from cloud_sync.sync_client import HubCredentials, SyncClient, SyncConfig, enroll, full_jitter_delay_s, \
    start_background_sync
from tests.cloud_sync.cloudsync_chaos_proxy import ChaosProxy
from tests.cloud_sync.cloudsync_support import hour_summary, make_clinic, make_service, new_patient_code, \
    running_server


@dataclass
class HubRun:
    directory: Path
    patient_id: str
    device_id: str
    payloads: list[bytes]  # payload of seq k is payloads[k - 1]
    restarts: int = 0
    requests_failed: int = 0


def _offline_hub(directory: Path, url: str, clinic, hours: int, rng: random.Random) -> HubRun:
    directory.mkdir(parents=True)
    patient_id, code = new_patient_code(clinic)
    creds = enroll(url, code)
    creds.save(directory)
    outbox = Outbox.open(directory / "hub.db")
    payloads = []
    for hour in range(hours):  # a week without network: everything piles up in the outbox
        payload = hour_summary(rng, hour).to_bytes()
        assert outbox.enqueue(payload) == len(payloads) + 1
        payloads.append(payload)
    outbox.close()
    return HubRun(directory, patient_id, creds.device_id, payloads)


def _sync_with_restarts(hub: HubRun, proxy_url: str, rng: random.Random, extra_hours: int,
                        deadline: float) -> None:
    """One hub process after another until everything is acknowledged; it keeps producing meanwhile."""
    produced_extra = 0
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"hub {hub.device_id} did not drain in time")
        outbox = Outbox.open(hub.directory / "hub.db")  # a (re)started hub process
        creds = HubCredentials.load(hub.directory)
        config = SyncConfig(proxy_url, batch_records=rng.randint(2, 12), timeout_s=10,
                            request_retries=rng.choice([0, 1, 3]), request_backoff_factor_s=0.01,
                            request_backoff_max_s=0.05, backoff_base_s=0.01, backoff_cap_s=0.2)
        client = SyncClient(outbox, creds, config, rng=random.Random(rng.random()))
        try:
            client.sync_once(max_batches=rng.randint(1, 4))
        except TransientSyncError as exc:
            hub.requests_failed += 1
            time.sleep(max(float(exc.detail.get("retry_after_s") or 0), full_jitter_delay_s(1, 0.01, 0.2, rng)))
        if produced_extra < extra_hours and rng.random() < 0.5:
            payload = hour_summary(rng, 10_000 + produced_extra).to_bytes()
            with outbox.db.conn:  # written in the hub's own transaction, as the edge store would
                assert outbox.enqueue(payload, conn=outbox.db.conn) == len(hub.payloads) + 1
            hub.payloads.append(payload)
            produced_extra += 1
        done = produced_extra == extra_hours and outbox.cursor("cloud") == outbox.last_seq() == len(hub.payloads)
        outbox.close()
        hub.restarts += 1
        if done:
            return


def _expected(hub: HubRun) -> list[tuple]:
    out = []
    for seq, payload in enumerate(hub.payloads, start=1):
        for idx, rec in enumerate(SummaryPayload.from_bytes(payload).records()):
            out.append((hub.device_id, seq, idx, rec.record_type, rec.time_ms, json.dumps(rec.data, sort_keys=True)))
    return sorted(out)


def run_chaos(tmp_path: Path, seed: int, n_hubs: int, hours: int, extra_hours: int, time_budget_s: float) -> Counter:
    service = make_service(tmp_path)
    clinic = make_clinic(service)
    rng = random.Random(seed)
    with running_server(create_app(service.config, service=service)) as url, ChaosProxy(url, seed, p_long_retry_after=0.3) as proxy:
        hubs = [_offline_hub(tmp_path / f"hub{i}", url, clinic, hours, rng) for i in range(n_hubs)]
        deadline = time.monotonic() + time_budget_s
        errors: list[BaseException] = []

        def worker(hub: HubRun, hub_rng: random.Random) -> None:
            try:
                _sync_with_restarts(hub, proxy.url, hub_rng, extra_hours, deadline)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(hub, random.Random(rng.random()))) for hub in hubs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for hub in hubs:
            stored = sorted((r.device_id, r.seq, r.idx, r.record_type, r.time_ms, json.dumps(r.data, sort_keys=True))
                            for r in service.records.read(hub.patient_id))
            expected = _expected(hub)
            assert len(stored) == len(set(stored)), "duplicates stored"
            assert stored == expected, f"seed {seed}: hub {hub.device_id} differs"
            assert service.ingest.acknowledged_seq(hub.device_id) == len(hub.payloads)
            with service.db.transaction() as tx:
                seqs = [r[0] for r in tx.all("SELECT seq FROM envelopes WHERE device_id = ? ORDER BY seq",
                                             (hub.device_id,))]
            assert seqs == list(range(1, len(hub.payloads) + 1))
        honoured = proxy.retry_after_honoured()
        for promised, waited in honoured:
            assert waited >= promised * 0.9, f"Retry-After {promised}s answered after {waited:.2f}s"
        counts = Counter(proxy.counts)
        counts["retry_after_checked"] = len(honoured)
    service.close()
    return counts


SEEDS = [11, 23, 37, 41, 59]


def test_chaos_sync_is_exactly_once_across_seeds(tmp_path: Path) -> None:
    """CI size: 3 hubs x 36 hourly summaries offline (+4 produced while syncing), 5 seeds, all faults."""
    total: Counter = Counter()
    for seed in SEEDS:
        total += run_chaos(tmp_path / f"seed{seed}", seed, n_hubs=3, hours=36, extra_hours=4, time_budget_s=60)
    for fault in ("pass", "503", "429", "drop_before", "drop_after_commit", "retry_after_checked"):
        assert total[fault] > 0, f"fault {fault} never injected: {total}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 202, 303, 404, 505, 606, 707, 808])
def test_chaos_full_week_many_hubs(tmp_path: Path, seed: int) -> None:
    """Full size: 6 hubs x 168 hourly summaries (a week, 12 CGM readings each) + 24 while syncing."""
    counts = run_chaos(tmp_path, seed, n_hubs=6, hours=168, extra_hours=24, time_budget_s=600)
    assert counts["drop_after_commit"] > 0 and counts["429"] > 0


def test_background_sync_thread_drains_under_faults_and_stops(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    clinic = make_clinic(service)
    with running_server(create_app(service.config, service=service)) as url, ChaosProxy(url, 7) as proxy:
        hub = _offline_hub(tmp_path / "hub", url, clinic, 30, random.Random(7))
        outbox = Outbox.open(hub.directory / "hub.db")
        client = SyncClient(outbox, HubCredentials.load(hub.directory),
                            SyncConfig(proxy.url, batch_records=5, request_retries=1, request_backoff_factor_s=0.01,
                                       backoff_base_s=0.01, backoff_cap_s=0.1, idle_interval_s=0.05))
        stop, wake = threading.Event(), threading.Event()
        thread = start_background_sync(client, stop, wake)
        deadline = time.monotonic() + 30
        while outbox.cursor("cloud") < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.cursor("cloud") == 30
        outbox.enqueue(hour_summary(random.Random(1), 999).to_bytes())  # the real-time side keeps writing
        wake.set()
        while outbox.cursor("cloud") < 31 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert service.ingest.acknowledged_seq(hub.device_id) == 31
    service.close()
