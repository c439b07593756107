"""The storage API other parts of the cloud read: decrypted records per patient, by type and time range.

    store = RecordStore(db, vault)
    for rec in store.read("pt-…", record_types=["glucose"], start_ms=t0, end_ms=t1):
        rec.time_ms, rec.data["glucose_mg_dl"]

Record types and their ``data`` (payload schema v1, see ``cloud_sync.envelope``):
``glucose`` {glucose_mg_dl}; ``insulin`` {insulin_u, kind, duration_min}; ``carbs`` {carbs_g};
``twin_parameters`` {parameters: {name: value}}; ``recommendation`` {recommendation_id, insulin_u, followed,
reason}; ``alert`` {kind, severity, message}.
Row metadata (patient, type, time, device, seq, index) is stored in clear for range queries; bodies are
AES-256-GCM under the patient's data key (``at_rest``). Access control and auditing are the caller's job
(the HTTP layer does both: see ``app.py``'s ``patient_access`` dependency).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cloud_sync.envelope import RECORD_TYPES, PatientRecordData, canonical_json
from cloud_sync.service.at_rest import KeyVault, record_aad
from cloud_sync.service.storage import Database, Tx

__all__ = ["PatientRecord", "RecordStore", "RECORD_TYPES"]


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    record_type: str
    time_ms: int
    device_id: str
    seq: int
    idx: int
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"record_type": self.record_type, "time_ms": self.time_ms, "device_id": self.device_id,
                "seq": self.seq, "idx": self.idx, "data": self.data}


class RecordStore:
    def __init__(self, db: Database, vault: KeyVault) -> None:
        self.db = db
        self.vault = vault

    def put(self, tx: Tx, patient_id: str, device_id: str, seq: int, records: Sequence[PatientRecordData]) -> int:
        """Encrypt and insert the records of one envelope (inside the ingest transaction)."""
        rows = []
        for idx, rec in enumerate(records):
            aad = record_aad(patient_id, device_id, seq, idx, rec.record_type, rec.time_ms)
            nonce, ciphertext = self.vault.encrypt_record(tx, patient_id, canonical_json(rec.data), aad)
            rows.append((patient_id, rec.record_type, rec.time_ms, device_id, seq, idx, nonce, ciphertext))
        tx.executemany(
            "INSERT INTO records (patient_id, record_type, time_ms, device_id, seq, idx, nonce, ciphertext) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
        return len(rows)

    def read(self, patient_id: str, record_types: Iterable[str] | None = None, start_ms: int | None = None,
             end_ms: int | None = None, limit: int | None = None) -> list[PatientRecord]:
        """Records with ``start_ms <= time_ms < end_ms`` ordered by time; ``KeyDestroyed`` after erasure."""
        sql = ("SELECT record_type, time_ms, device_id, seq, idx, nonce, ciphertext FROM records "
               "WHERE patient_id = ?")
        params: list[Any] = [patient_id]
        types = list(record_types) if record_types is not None else None
        if types is not None:
            if not types:
                return []
            sql += " AND record_type IN (" + ", ".join("?" for _ in types) + ")"
            params.extend(types)
        if start_ms is not None:
            sql += " AND time_ms >= ?"
            params.append(start_ms)
        if end_ms is not None:
            sql += " AND time_ms < ?"
            params.append(end_ms)
        sql += " ORDER BY time_ms, device_id, seq, idx"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self.db.transaction() as tx:
            rows = tx.all(sql, params)
            out = []
            for record_type, time_ms, device_id, seq, idx, nonce, ciphertext in rows:
                aad = record_aad(patient_id, device_id, seq, idx, record_type, time_ms)
                body = self.vault.decrypt_record(tx, patient_id, nonce, ciphertext, aad)
                out.append(PatientRecord(patient_id, record_type, time_ms, device_id, seq, idx, json.loads(body)))
        return out

    def count(self, patient_id: str, record_type: str | None = None) -> int:
        sql, params = "SELECT COUNT(*) FROM records WHERE patient_id = ?", [patient_id]
        if record_type is not None:
            sql += " AND record_type = ?"
            params.append(record_type)
        with self.db.transaction() as tx:
            row = tx.one(sql, params)
        return int(row[0]) if row else 0
