"""Encryption at rest: per-patient AES-256-GCM data keys wrapped by a master key; crypto-shredding.

* Each patient has a random 256-bit data key, stored only wrapped (AES-256-GCM under the master key, with the
  patient id as associated data so a wrapped key cannot be swapped to another patient).
* Each record body is AES-256-GCM under the patient's data key with a random 96-bit nonce; the associated data
  binds the row's metadata (patient, device, seq, index, type, time), so rows cannot be moved or relabelled.
* ``destroy_patient_key`` overwrites the wrapped key with NULL: every ciphertext of that patient, including
  copies in database backups taken before, becomes unreadable (GDPR erasure by crypto-shredding). Backups of
  the ``patient_keys`` table must therefore have a shorter retention than data backups (document for ops).
* The master key lives outside the database (a 0600 file or a KMS in production); losing it loses all data.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud_sync.errors import KeyDestroyed, TamperedEnvelope
from cloud_sync.service.storage import Tx

__all__ = ["load_or_create_master_key", "KeyVault", "record_aad"]

NONCE_BYTES = 12
KEY_BYTES = 32


def load_or_create_master_key(path: str | Path) -> bytes:
    """Read a 32-byte master key from ``path``, creating it (mode 0600) if it does not exist."""
    path = Path(path)
    if path.exists():
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ValueError(f"master key file {path} must hold exactly {KEY_BYTES} bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def record_aad(patient_id: str, device_id: str, seq: int, idx: int, record_type: str, time_ms: int) -> bytes:
    return f"glucotwin/record/v1|{patient_id}|{device_id}|{seq}|{idx}|{record_type}|{time_ms}".encode()


class KeyVault:
    """Wraps secrets under the master key and manages patient data keys (with an in-memory cache)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        self._master = AESGCM(master_key)
        self._cache: dict[str, AESGCM] = {}
        self._lock = threading.Lock()

    # --- generic wrapping (also used for ingest private keys) -------------------------------------------------
    def wrap(self, secret: bytes, label: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, secret, label.encode())

    def unwrap(self, wrapped: bytes, label: str) -> bytes:
        try:
            return self._master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], label.encode())
        except InvalidTag as exc:
            raise TamperedEnvelope(f"wrapped key for {label!r} does not unwrap (wrong master key or edited)") from exc

    # --- patient data keys ------------------------------------------------------------------------------------
    def _patient_cipher(self, tx: Tx, patient_id: str, create: bool) -> AESGCM:
        with self._lock:
            cipher = self._cache.get(patient_id)
        if cipher is not None:
            return cipher
        row = tx.one("SELECT wrapped_key, destroyed_ms FROM patient_keys WHERE patient_id = ?", (patient_id,))
        if row is None:
            if not create:
                raise KeyDestroyed(f"patient {patient_id} has no data key", patient_id=patient_id)
            key = secrets.token_bytes(KEY_BYTES)
            tx.execute(
                "INSERT INTO patient_keys (patient_id, wrapped_key, created_ms) VALUES (?, ?, ?)",
                (patient_id, self.wrap(key, f"patient:{patient_id}"), int(time.time() * 1000)),
            )
        elif row[0] is None or row[1] is not None:
            raise KeyDestroyed(f"the data key of patient {patient_id} was destroyed (erased)", patient_id=patient_id)
        else:
            key = self.unwrap(row[0], f"patient:{patient_id}")
        cipher = AESGCM(key)
        with self._lock:
            self._cache[patient_id] = cipher
        return cipher

    def encrypt_record(self, tx: Tx, patient_id: str, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """Return (nonce, ciphertext) under the patient's data key, creating the key on first use."""
        cipher = self._patient_cipher(tx, patient_id, create=True)
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce, cipher.encrypt(nonce, plaintext, aad)

    def decrypt_record(self, tx: Tx, patient_id: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        cipher = self._patient_cipher(tx, patient_id, create=False)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise TamperedEnvelope("stored record does not authenticate (edited or moved)") from exc

    def destroy_patient_key(self, tx: Tx, patient_id: str) -> None:
        """Crypto-shred: drop the wrapped key (and the cached one). Irreversible."""
        now = int(time.time() * 1000)
        changed = tx.execute(
            "UPDATE patient_keys SET wrapped_key = NULL, destroyed_ms = ? WHERE patient_id = ?", (now, patient_id)
        )
        if not changed:
            tx.execute(
                "INSERT INTO patient_keys (patient_id, wrapped_key, created_ms, destroyed_ms) VALUES (?, NULL, ?, ?)",
                (patient_id, now, now),
            )
        self.forget(patient_id)

    def forget(self, patient_id: str) -> None:
        with self._lock:
            self._cache.pop(patient_id, None)
