"""Ingest of hub envelopes: verify, decrypt, deduplicate, store, acknowledge.

For one request (one device, a batch of envelopes in sequence order):

1. Parse every envelope (``MalformedEnvelope``/``UnsupportedSchema``); each header must name the URL's device.
2. Device: enrolled (``UnknownDevice`` 401), not revoked (``DeviceRevoked`` 403), signing key active
   (``UnknownDeviceKey`` 401); Ed25519 signature over header + ciphertext (``BadSignature`` 401).
3. Ingest key by id, active or retired (``UnknownKey`` 400); HPKE open with the header as info
   (``TamperedEnvelope`` 400); payload schema (``InvalidPayload`` 422).
4. One transaction: the ``Idempotency-Key`` (if sent) must not have been used with a different request
   (``IdempotencyKeyReused`` 422); each (device, seq) is inserted or ignored; a stored seq whose content
   differs is ``ReplayedSequence`` (409); the contiguous high-water mark advances; an audit entry is appended.

The whole batch is accepted or refused (nothing half-stored), and the answer always carries
``acknowledged_seq``: the largest n with every seq <= n stored. Duplicates are answered 200 so a hub that
lost an acknowledgement moves on. Content identity uses an HMAC of (seq, plaintext) under a key derived
from the master key, because HPKE ciphertexts of a re-sealed retry differ while the plaintext does not.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_sync import keys as keymod
from cloud_sync.envelope import Envelope, SummaryPayload, open_envelope, verify_signature
from cloud_sync.errors import (
    BatchTooLarge,
    CloudSyncError,
    DeviceRevoked,
    IdempotencyKeyReused,
    MalformedEnvelope,
    ReplayedSequence,
    UnknownDevice,
)
from cloud_sync.service import audit
from cloud_sync.service.records import RecordStore
from cloud_sync.service.storage import Database, Tx

__all__ = ["IngestResult", "IngestService", "MAX_BATCH"]

MAX_BATCH = 500


@dataclass(frozen=True)
class IngestResult:
    device_id: str
    acknowledged_seq: int
    stored: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "acknowledged_seq": self.acknowledged_seq,
                "stored": self.stored, "duplicates": self.duplicates}


@dataclass(frozen=True)
class _Opened:
    envelope: Envelope
    records: list[Any]
    fingerprint: bytes


class IngestService:
    def __init__(self, db: Database, keyring: keymod.IngestKeyRing, records: RecordStore, fingerprint_key: bytes,
                 max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.keyring = keyring
        self.records = records
        self._fp_key = fingerprint_key
        self.max_batch = max_batch

    def acknowledged_seq(self, device_id: str) -> int:
        with self.db.transaction() as tx:
            row = tx.one("SELECT acked_seq FROM devices WHERE device_id = ?", (device_id,))
        if row is None:
            raise UnknownDevice(f"device {device_id!r} is not enrolled")
        return int(row[0])

    def prune_idempotency(self, older_than_ms: int) -> int:
        """Forget Idempotency-Keys created before ``older_than_ms`` (seq deduplication stays forever)."""
        with self.db.transaction() as tx:
            return tx.execute("DELETE FROM idempotency WHERE created_ms < ?", (older_than_ms,))

    def ingest(self, device_id: str, envelopes: Sequence[Any], idempotency_key: str | None = None) -> IngestResult:
        """Verify, decrypt and store one batch; refusals for an enrolled device are audited (``denied:ingest``)."""
        try:
            return self._ingest(device_id, envelopes, idempotency_key)
        except CloudSyncError as error:
            self._audit_refusal(device_id, error)
            raise

    def _audit_refusal(self, device_id: str, error: CloudSyncError) -> None:
        # Only for enrolled devices: anonymous garbage must not be able to grow the audit log.
        with self.db.transaction() as tx:
            row = tx.one("SELECT patient_id FROM devices WHERE device_id = ?", (device_id,))
            if row is not None:
                audit.append(tx, f"device:{device_id}", "denied:ingest", row[0],
                             {"code": error.code, "seq": error.detail.get("seq")})

    def _ingest(self, device_id: str, envelopes: Sequence[Any], idempotency_key: str | None) -> IngestResult:
        if len(envelopes) > self.max_batch:
            raise BatchTooLarge(f"at most {self.max_batch} envelopes per request")
        parsed = [Envelope.from_json(e) for e in envelopes]
        seqs = [e.header.seq for e in parsed]
        if any(e.header.device_id != device_id for e in parsed):
            raise MalformedEnvelope("every envelope header must name the device of the URL")
        if len(set(seqs)) != len(seqs):
            raise MalformedEnvelope("a batch must not repeat a sequence number")

        # Authentication and decryption happen outside the write transaction (CPU work, no locks held).
        with self.db.transaction() as tx:
            verification = {kid: keymod.device_verification_key(tx, device_id, kid)
                            for kid in {e.header.device_key_id for e in parsed}}
        patient_id = next(iter(verification.values()))[1] if verification else self._patient_of(device_id)
        opened = []
        for env in parsed:
            verify_signature(env, verification[env.header.device_key_id][0])
        for env in parsed:
            plaintext = open_envelope(env, self.keyring.private_key(env.header.key_id))
            payload = SummaryPayload.from_bytes(plaintext)
            fp = hmac.new(self._fp_key, str(env.header.seq).encode() + b"|" + plaintext, hashlib.sha256).digest()
            opened.append(_Opened(env, payload.records(), fp))
        request_fp = hashlib.sha256(b"".join(str(o.envelope.header.seq).encode() + b":" + o.fingerprint
                                             for o in opened)).digest()
        with self.db.transaction() as tx:
            return self._store(tx, device_id, patient_id, opened, idempotency_key, request_fp)

    def _patient_of(self, device_id: str) -> str:
        with self.db.transaction() as tx:
            row = tx.one("SELECT patient_id, revoked_ms FROM devices WHERE device_id = ?", (device_id,))
        if row is None:
            raise UnknownDevice(f"device {device_id!r} is not enrolled")
        if row[1] is not None:
            raise DeviceRevoked(f"device {device_id} was revoked")
        return row[0]

    def _store(self, tx: Tx, device_id: str, patient_id: str, opened: list[_Opened], idempotency_key: str | None,
               request_fp: bytes) -> IngestResult:
        device = tx.one("SELECT acked_seq, revoked_ms FROM devices WHERE device_id = ?" + tx.for_update, (device_id,))
        if device is None:
            raise UnknownDevice(f"device {device_id!r} is not enrolled")
        if device[1] is not None:  # revoked (or patient erased) while this request was being verified
            raise DeviceRevoked(f"device {device_id} was revoked")
        acked = int(device[0])
        now = int(time.time() * 1000)
        if idempotency_key is not None:
            row = tx.one("SELECT fingerprint FROM idempotency WHERE device_id = ? AND idem_key = ?",
                         (device_id, idempotency_key))
            if row is None:
                tx.execute("INSERT INTO idempotency (device_id, idem_key, fingerprint, created_ms) VALUES (?, ?, ?, ?)",
                           (device_id, idempotency_key, request_fp, now))
            elif bytes(row[0]) != request_fp:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        stored: list[int] = []
        duplicates: list[int] = []
        if opened:
            seqs = [o.envelope.header.seq for o in opened]
            existing = dict(tx.all(
                "SELECT seq, fingerprint FROM envelopes WHERE patient_id = ? AND device_id = ? AND seq >= ? AND seq <= ?",
                (patient_id, device_id, min(seqs), max(seqs))))
            for o in opened:
                seq = o.envelope.header.seq
                if seq in existing:
                    if bytes(existing[seq]) != o.fingerprint:
                        raise ReplayedSequence(f"sequence {seq} was already stored with different content", seq=seq)
                    duplicates.append(seq)
                elif seq <= acked:  # below the mark but not here: before base_seq, or erased
                    duplicates.append(seq)
                else:
                    tx.execute("INSERT INTO envelopes (patient_id, device_id, seq, key_id, fingerprint, received_ms, "
                               "n_records) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (patient_id, device_id, seq, o.envelope.header.key_id, o.fingerprint, now,
                                len(o.records)))
                    self.records.put(tx, patient_id, device_id, seq, o.records)
                    stored.append(seq)
        new_acked = acked
        while True:
            rows = tx.all("SELECT seq FROM envelopes WHERE patient_id = ? AND device_id = ? AND seq > ? "
                          "ORDER BY seq LIMIT 1000", (patient_id, device_id, new_acked))
            advanced = False
            for (seq,) in rows:
                if seq != new_acked + 1:
                    break
                new_acked, advanced = seq, True
            if not advanced or len(rows) < 1000:
                break
        if new_acked != acked:
            tx.execute("UPDATE devices SET acked_seq = ? WHERE device_id = ?", (new_acked, device_id))
        audit.append(tx, f"device:{device_id}", "ingest", patient_id,
                     {"stored": len(stored), "duplicates": len(duplicates),
                      "first_seq": min((o.envelope.header.seq for o in opened), default=None),
                      "last_seq": max((o.envelope.header.seq for o in opened), default=None),
                      "acknowledged_seq": new_acked})
        return IngestResult(device_id, new_acked, stored, duplicates)
