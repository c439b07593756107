"""The hub's sync client: sends the outbox to the cloud in order, in bounded batches, and resumes anywhere.

Two layers of retry:
* per request, urllib3 ``Retry`` under ``requests``: POST is retried (safe: every request carries an
  ``Idempotency-Key`` and the service deduplicates by (device, seq)) on connection/read errors and on
  429/500/502/503/504, honouring ``Retry-After``;
* across outages, ``run`` repeats ``sync_once`` with full-jitter exponential backoff
  (sleep = uniform(0, min(cap, base * 2**attempt)), AWS architecture blog, "Exponential Backoff and Jitter").

A batch is marked sent only when a 2xx answer parses and names ``acknowledged_seq`` (the service's contiguous
high-water mark); all state lives in the outbox's SQLite file, so a restarted hub builds a new client and
continues. ``run`` blocks: start it in a background thread (``start_background_sync``), never on the
real-time path.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from cloud_sync import keys as keymod
from cloud_sync.envelope import EnvelopeHeader, seal
from cloud_sync.errors import PermanentSyncError, TransientSyncError
from cloud_sync.keys import DeviceIdentity, IngestPublicKey
from cloud_sync.outbox import DEFAULT_DESTINATION, Outbox, OutboxRecord

__all__ = ["SyncConfig", "HubCredentials", "SyncReport", "SyncClient", "make_session", "enroll",
           "full_jitter_delay_s", "start_background_sync"]

log = logging.getLogger(__name__)
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class SyncConfig:
    base_url: str
    destination: str = DEFAULT_DESTINATION
    batch_records: int = 100
    batch_bytes: int = 512_000
    timeout_s: float = 15.0
    request_retries: int = 5
    request_backoff_factor_s: float = 0.5
    request_backoff_max_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 900.0
    idle_interval_s: float = 60.0


def make_session(config: SyncConfig) -> requests.Session:
    """A ``requests`` session whose adapter retries idempotent-keyed POSTs and GETs with urllib3 ``Retry``."""
    retry = Retry(
        total=config.request_retries,
        connect=config.request_retries,
        read=config.request_retries,
        status=config.request_retries,
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=config.request_backoff_factor_s,
        backoff_max=config.request_backoff_max_s,
        backoff_jitter=config.request_backoff_factor_s,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=2)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def full_jitter_delay_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 62))))


@dataclass
class HubCredentials:
    """What enrollment gave the hub: its device id and key, the ingest key to seal to, the patient token."""

    device_id: str
    identity: DeviceIdentity
    ingest_key: IngestPublicKey
    patient_id: str = ""
    patient_token: str = ""
    pending_identity: DeviceIdentity | None = None  # a rotation whose answer was not seen (crash, lost ack)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.identity.save(directory / "device.key")
        body = json.dumps({"device_id": self.device_id, "patient_id": self.patient_id,
                           "ingest_key": self.ingest_key.to_json(), "patient_token": self.patient_token})
        tmp = directory / "hub-credentials.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / "hub-credentials.json")
        pending = directory / "device.key.next"
        if self.pending_identity is not None:
            self.pending_identity.save(pending)
        elif pending.exists():
            pending.unlink()

    @classmethod
    def load(cls, directory: str | Path) -> HubCredentials:
        directory = Path(directory)
        obj = json.loads((directory / "hub-credentials.json").read_text())
        pending = directory / "device.key.next"
        return cls(obj["device_id"], DeviceIdentity.load(directory / "device.key"),
                   IngestPublicKey.from_json(obj["ingest_key"]), obj.get("patient_id", ""),
                   obj.get("patient_token", ""), DeviceIdentity.load(pending) if pending.exists() else None)


def enroll(base_url: str, code: str, identity: DeviceIdentity | None = None, *, base_seq: int = 0,
           session: requests.Session | None = None, timeout_s: float = 15.0) -> HubCredentials:
    """Register this hub with a one-time enrollment code (generates the device key if not given)."""
    identity = identity or DeviceIdentity.generate()
    http = session or requests.Session()
    response = http.post(base_url.rstrip("/") + "/v1/enroll",
                         json=keymod.enroll_request(identity, code, base_seq), timeout=timeout_s)
    if response.status_code != 200:
        raise PermanentSyncError(f"enrollment refused: HTTP {response.status_code} {response.text[:300]}",
                                 status=response.status_code)
    body = response.json()
    return HubCredentials(body["device_id"], identity, IngestPublicKey.from_json(body["ingest_key"]),
                          body["patient_id"], body["patient_token"])


@dataclass
class SyncReport:
    batches: int = 0
    envelopes_sent: int = 0
    acknowledged_seq: int = 0
    pending: int = 0
    duplicates: int = 0


class SyncClient:
    """Sends ``outbox`` to the service at ``config.base_url`` as ``credentials.device_id``."""

    def __init__(self, outbox: Outbox, credentials: HubCredentials, config: SyncConfig,
                 session: requests.Session | None = None, rng: random.Random | None = None,
                 credentials_dir: str | Path | None = None) -> None:
        self.outbox = outbox
        self.credentials = credentials
        self.credentials_dir = credentials_dir
        self.config = config
        self.session = session or make_session(config)
        self.rng = rng or random.Random()
        self.last_error: Exception | None = None
        outbox.add_destination(config.destination)

    # --- one pass ----------------------------------------------------------------------------------------
    def sync_once(self, max_batches: int | None = None) -> SyncReport:
        """Send batches until the outbox is drained (or ``max_batches``). Raises ``TransientSyncError``
        (retry later) or ``PermanentSyncError`` (the service refuses; nothing is dropped)."""
        report = SyncReport(acknowledged_seq=self.outbox.cursor(self.config.destination))
        while max_batches is None or report.batches < max_batches:
            batch = self.outbox.read_batch(self.config.destination, self.config.batch_records, self.config.batch_bytes)
            if not batch:
                break
            before = self.outbox.cursor(self.config.destination)
            result = self._send(batch)
            report.batches += 1
            report.envelopes_sent += len(batch)
            report.duplicates += len(result.get("duplicates", []))
            report.acknowledged_seq = self._apply_ack(result["acknowledged_seq"], batch, before)
        report.pending = self.outbox.pending_count(self.config.destination)
        return report

    def _apply_ack(self, acked: Any, batch: list[OutboxRecord], before: int) -> int:
        if isinstance(acked, bool) or not isinstance(acked, int) or acked < 0:
            raise TransientSyncError("acknowledgement without a valid acknowledged_seq")
        destination = self.config.destination
        if acked > self.outbox.last_seq():  # the hub was restored from an older backup than the service has seen
            log.warning("service acknowledges %d > our last seq %d: hub restored from a backup? skipping ahead",
                        acked, self.outbox.last_seq())
            self.outbox.reserve_through(acked)
        if acked < before:
            log.warning("service acknowledges %d < our cursor %d: it lost data; rewinding to resend", acked, before)
            try:
                return self.outbox.rewind(destination, acked)
            except ValueError as exc:  # the records it lost were pruned here: a person must decide
                raise PermanentSyncError(f"service lost records after {acked} that this hub already pruned") from exc
        cursor = self.outbox.acknowledge(destination, acked)
        if cursor == before:  # nothing confirmed: do not spin on the same batch
            raise TransientSyncError(f"service stored seq {batch[0].seq}.. but acknowledges only {acked}")
        return cursor

    def _seal(self, record: OutboxRecord) -> dict[str, Any]:
        header = EnvelopeHeader(device_id=self.credentials.device_id, device_key_id=self.credentials.identity.key_id,
                                seq=record.seq, key_id=self.credentials.ingest_key.key_id,
                                payload_type=record.record_type)
        return seal(record.payload, header, self.credentials.ingest_key.x25519(),
                    self.credentials.identity.private_key).to_json()

    def _send(self, batch: list[OutboxRecord], refreshed_key: bool = False, switched_key: bool = False) -> dict[str, Any]:
        body = {"envelopes": [self._seal(r) for r in batch]}
        idempotency_key = f"{self.credentials.device_id}:{batch[0].seq}-{batch[-1].seq}"
        url = f"{self.config.base_url.rstrip('/')}/v1/ingest/{self.credentials.device_id}"
        try:
            response = self.session.post(url, json=body, timeout=self.config.timeout_s,
                                         headers={"Idempotency-Key": idempotency_key})
        except requests.RequestException as exc:
            raise TransientSyncError(f"network error: {type(exc).__name__}: {exc}") from exc
        if response.status_code in RETRY_STATUSES:
            raise TransientSyncError(f"HTTP {response.status_code} after retries",
                                     status=response.status_code, retry_after_s=_retry_after_s(response))
        try:
            payload = response.json()
        except ValueError as exc:
            if 200 <= response.status_code < 300:
                raise TransientSyncError("2xx answer that is not JSON") from exc
            payload = {}
        if 200 <= response.status_code < 300:
            if not isinstance(payload, dict) or "acknowledged_seq" not in payload:
                raise TransientSyncError("2xx answer without acknowledged_seq")
            return payload
        code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
        if code == "unknown_ingest_key" and not refreshed_key:
            self.refresh_ingest_key()
            return self._send(batch, refreshed_key=True, switched_key=switched_key)
        if code == "unknown_device_key" and self.credentials.pending_identity is not None and not switched_key:
            self._adopt_pending_identity()  # the service took our rotation but we never saw its answer
            return self._send(batch, refreshed_key=refreshed_key, switched_key=True)
        raise PermanentSyncError(f"service refused seq {batch[0].seq}-{batch[-1].seq}: HTTP {response.status_code} "
                                 f"{code}", status=response.status_code, error_code=code)

    def refresh_ingest_key(self) -> IngestPublicKey:
        """Fetch the service's active ingest key (after a rotation)."""
        try:
            response = self.session.get(f"{self.config.base_url.rstrip('/')}/v1/ingest-key",
                                        timeout=self.config.timeout_s)
            response.raise_for_status()
            key = IngestPublicKey.from_json(response.json())
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise TransientSyncError(f"cannot fetch the ingest key: {exc}") from exc
        self.credentials.ingest_key = key
        return key

    def rotate_device_key(self, new_identity: DeviceIdentity | None = None) -> DeviceIdentity:
        """Register a new device key signed by the old and the new key.

        Crash-safe with ``credentials_dir``: the new key is saved as pending (``device.key.next``) before the
        request and adopted after the answer; if the answer is lost, the next ``unknown_device_key`` refusal
        adopts the pending key, so a rotation can never lock the hub out."""
        new_identity = new_identity or DeviceIdentity.generate()
        self.credentials.pending_identity = new_identity
        self._persist()
        body = keymod.rotate_request(self.credentials.device_id, self.credentials.identity, new_identity)
        try:
            response = self.session.post(
                f"{self.config.base_url.rstrip('/')}/v1/devices/{self.credentials.device_id}/keys",
                json=body, timeout=self.config.timeout_s)
        except requests.RequestException as exc:
            raise TransientSyncError(f"key rotation: network error {exc}") from exc
        if response.status_code != 200:
            raise PermanentSyncError(f"key rotation refused: HTTP {response.status_code}", status=response.status_code)
        self._adopt_pending_identity()
        return new_identity

    def _adopt_pending_identity(self) -> None:
        assert self.credentials.pending_identity is not None
        self.credentials.identity = self.credentials.pending_identity
        self.credentials.pending_identity = None
        self._persist()

    def _persist(self) -> None:
        if self.credentials_dir is not None:
            self.credentials.save(self.credentials_dir)

    # --- background loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Sync until ``stop`` is set: drain, then idle (or until ``wake`` is set); back off on errors."""
        attempt = 0
        while not stop.is_set():
            try:
                self.sync_once()
                attempt, delay_s = 0, self.config.idle_interval_s
                self.last_error = None
            except TransientSyncError as exc:
                attempt += 1
                self.last_error = exc
                delay_s = max(float(exc.detail.get("retry_after_s") or 0.0),
                              full_jitter_delay_s(attempt, self.config.backoff_base_s, self.config.backoff_cap_s,
                                                  self.rng))
                log.info("sync: %s; next try in %.1f s", exc, delay_s)
            except PermanentSyncError as exc:
                attempt += 1
                self.last_error = exc
                delay_s = self.config.backoff_cap_s
                log.error("sync stopped by the service: %s; retrying in %.0f s", exc, delay_s)
            except Exception as exc:  # noqa: BLE001 - e.g. SQLite busy: the sync thread must outlive it
                attempt += 1
                self.last_error = exc
                delay_s = full_jitter_delay_s(attempt, self.config.backoff_base_s, self.config.backoff_cap_s, self.rng)
                log.exception("sync pass failed unexpectedly; next try in %.1f s", delay_s)
            _wait(stop, wake, delay_s)


def _wait(stop: threading.Event, wake: threading.Event | None, delay_s: float) -> None:
    deadline = time.monotonic() + delay_s
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if wake is not None and wake.wait(min(left, 0.2)):
            wake.clear()
            return
        if wake is None:
            stop.wait(min(left, 0.2))


def _retry_after_s(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def start_background_sync(client: SyncClient, stop: threading.Event,
                          wake: threading.Event | None = None) -> threading.Thread:
    """Start ``client.run`` in a daemon thread named ``glucotwin-sync``."""
    thread = threading.Thread(target=client.run, args=(stop, wake), name="glucotwin-sync", daemon=True)
    thread.start()
    return thread
