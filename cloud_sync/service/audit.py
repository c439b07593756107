"""Append-only, hash-chained audit log of every access (reads, ingest, admin and consent changes).

Entry ``n`` stores ``entry_hash = SHA-256(prev_hash || canonical_json(entry_id, ts_ms, actor, action,
patient_id, detail))`` with ``prev_hash`` the hash of entry ``n-1`` (64 zeros for the first). Editing,
deleting or reordering any entry breaks every later link, which ``verify`` reports with the first bad id.
Entries hold pseudonymous ids and counts, never health data, so erasure does not need to rewrite the chain.
Appends are serialised (SQLite's single writer; a transaction-scoped advisory lock on PostgreSQL) and made
in the same transaction as the access they record, so an access that commits is always audited.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from cloud_sync.envelope import canonical_json
from cloud_sync.errors import AuditChainBroken
from cloud_sync.service.storage import Database, Tx

__all__ = ["AuditEntry", "GENESIS_HASH", "append", "verify", "entries"]

GENESIS_HASH = "0" * 64
_PG_AUDIT_LOCK = 0x617564697401  # arbitrary constant for pg_advisory_xact_lock


@dataclass(frozen=True)
class AuditEntry:
    entry_id: int
    ts_ms: int
    actor: str
    action: str
    patient_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    entry_hash: str


def _hash(prev_hash: str, entry_id: int, ts_ms: int, actor: str, action: str, patient_id: str | None,
          detail_json: str) -> str:
    body = canonical_json({"entry_id": entry_id, "ts_ms": ts_ms, "actor": actor, "action": action,
                           "patient_id": patient_id, "detail": detail_json})
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def append(tx: Tx, actor: str, action: str, patient_id: str | None = None,
           detail: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry inside the caller's transaction (call it last: it serialises writers on PostgreSQL)."""
    if tx.dialect == "postgres":
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_AUDIT_LOCK,))
    head = tx.one("SELECT entry_id, entry_hash FROM audit_log ORDER BY entry_id DESC LIMIT 1")
    entry_id, prev_hash = (1, GENESIS_HASH) if head is None else (head[0] + 1, head[1])
    ts_ms = int(time.time() * 1000)
    detail_json = canonical_json(detail or {}).decode()
    entry_hash = _hash(prev_hash, entry_id, ts_ms, actor, action, patient_id, detail_json)
    tx.execute(
        "INSERT INTO audit_log (entry_id, ts_ms, actor, action, patient_id, detail, prev_hash, entry_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (entry_id, ts_ms, actor, action, patient_id, detail_json, prev_hash, entry_hash),
    )
    tx.execute(  # the head pointer makes truncation of the newest entries detectable too
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"{entry_id}:{entry_hash}",),
    )
    return AuditEntry(entry_id, ts_ms, actor, action, patient_id, detail or {}, prev_hash, entry_hash)


def verify(db: Database, page_size: int = 5000) -> int:
    """Check the whole chain; return the number of entries, or raise ``AuditChainBroken(entry_id=...)``."""
    prev_hash, expected_id, count = GENESIS_HASH, 1, 0
    while True:
        with db.transaction() as tx:
            rows = tx.all(
                "SELECT entry_id, ts_ms, actor, action, patient_id, detail, prev_hash, entry_hash FROM audit_log "
                "WHERE entry_id >= ? ORDER BY entry_id LIMIT ?", (expected_id, page_size))
        if not rows:
            with db.transaction() as tx:
                total = tx.one("SELECT COUNT(*) FROM audit_log")
                head = tx.one("SELECT value FROM meta WHERE key = 'audit_head'")
            if int(total[0] if total else 0) != count:
                raise AuditChainBroken("audit log has entries outside the chain", entry_id=expected_id)
            expected_head = None if count == 0 else f"{expected_id - 1}:{prev_hash}"
            if (head[0] if head else None) != expected_head:
                raise AuditChainBroken("audit log head does not match (entries truncated?)", entry_id=expected_id - 1)
            return count
        for entry_id, ts_ms, actor, action, patient_id, detail_json, stored_prev, stored_hash in rows:
            if entry_id != expected_id:
                raise AuditChainBroken(f"audit entry {expected_id} is missing", entry_id=expected_id)
            if stored_prev != prev_hash:
                raise AuditChainBroken(f"audit entry {entry_id} does not link to its predecessor", entry_id=entry_id)
            if _hash(prev_hash, entry_id, ts_ms, actor, action, patient_id, detail_json) != stored_hash:
                raise AuditChainBroken(f"audit entry {entry_id} was edited", entry_id=entry_id)
            prev_hash, expected_id, count = stored_hash, entry_id + 1, count + 1


def entries(db: Database, patient_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """Most recent entries first (optionally for one patient)."""
    sql = "SELECT entry_id, ts_ms, actor, action, patient_id, detail, prev_hash, entry_hash FROM audit_log"
    params: tuple[Any, ...] = ()
    if patient_id is not None:
        sql += " WHERE patient_id = ?"
        params = (patient_id,)
    with db.transaction() as tx:
        rows = tx.all(sql + " ORDER BY entry_id DESC LIMIT ?", (*params, limit))
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]
