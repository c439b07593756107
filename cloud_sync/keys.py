"""Keys and enrollment: hub Ed25519 device keys, the service's X25519 ingest keys, one-time enrollment codes.

Lifecycle
* The clinic creates a one-time enrollment code for a patient (``create_enrollment_code``; only its SHA-256 is
  stored; it expires). The hub generates its Ed25519 key pair (``DeviceIdentity.generate``) and registers with
  the code, proving possession of the key by signing ``ENROLL_LABEL|code|public key`` (``enroll_request``).
  The service answers with the device id and the current ingest public key (``redeem_enrollment``).
* Device keys rotate: the hub sends a new public key signed by both the old (still active) and the new key;
  the old key is retired at once (``rotate_device_key``). Devices can be revoked (``revoke_device``): every
  later envelope is refused with ``DeviceRevoked``.
* Ingest keys have ids (``ik-...``); ``IngestKeyRing.rotate`` makes a new one active and keeps the old ones
  *retired* but usable for decryption, because a hub may send a backlog sealed days ago. ``destroy`` removes
  a retired private key once no hub can still hold envelopes for it (longer than the longest offline window).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cloud_sync.envelope import SUITE_NAME, b64d, b64e
from cloud_sync.errors import (
    BadSignature,
    DeviceRevoked,
    EnrollmentError,
    MalformedEnvelope,
    UnknownDevice,
    UnknownDeviceKey,
    UnknownKey,
)

__all__ = [
    "DeviceIdentity",
    "IngestPublicKey",
    "IngestKeyRing",
    "device_key_id",
    "normalize_code",
    "enroll_message",
    "rotate_message",
    "create_enrollment_code",
    "redeem_enrollment",
    "rotate_device_key",
    "revoke_device",
    "device_verification_key",
    "ENROLLMENT_TTL_S",
]

ENROLL_LABEL = b"glucotwin/enroll/v1"
ROTATE_LABEL = b"glucotwin/rotate-device-key/v1"
ENROLLMENT_TTL_S = 7 * 86400
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U: easy to read out over the phone
_CODE_LEN = 20


def _now_ms() -> int:
    return int(time.time() * 1000)


def device_key_id(public_key_raw: bytes) -> str:
    """Stable id of an Ed25519 public key: ``dk-`` + first 16 bytes of its SHA-256, hex."""
    return "dk-" + hashlib.sha256(public_key_raw).hexdigest()[:32]


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- hub side ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceIdentity:
    """The hub's Ed25519 signing key."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> DeviceIdentity:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key_raw(self) -> bytes:
        return _raw_public(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        return device_key_id(self.public_key_raw)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def save(self, path: str | Path) -> None:
        """Write the raw private key (PKCS#8 PEM, unencrypted: protect the file) atomically with mode 0600."""
        path = Path(path)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> DeviceIdentity:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)


def normalize_code(code: str) -> str:
    """Upper-case, drop dashes and spaces: codes are typed by people."""
    return "".join(ch for ch in code.upper() if ch not in "- ")


def enroll_message(code: str, device_public_key_raw: bytes) -> bytes:
    return ENROLL_LABEL + b"|" + normalize_code(code).encode() + b"|" + device_public_key_raw


def rotate_message(device_id: str, old_key_id: str, new_public_key_raw: bytes) -> bytes:
    return ROTATE_LABEL + b"|" + device_id.encode() + b"|" + old_key_id.encode() + b"|" + new_public_key_raw


def enroll_request(identity: DeviceIdentity, code: str, base_seq: int = 0) -> dict[str, Any]:
    """Body of ``POST /v1/enroll``. ``base_seq``: the outbox's last sequence number already handled elsewhere
    (0 for a new hub), so the service's contiguous high-water mark starts there."""
    return {"code": code, "device_public_key": b64e(identity.public_key_raw),
            "signature": b64e(identity.sign(enroll_message(code, identity.public_key_raw))), "base_seq": base_seq}


def rotate_request(device_id: str, old: DeviceIdentity, new: DeviceIdentity) -> dict[str, Any]:
    """Body of ``POST /v1/devices/{device_id}/keys``: the new key, signed by the old and the new key."""
    message = rotate_message(device_id, old.key_id, new.public_key_raw)
    return {"old_device_key_id": old.key_id, "new_public_key": b64e(new.public_key_raw),
            "old_signature": b64e(old.sign(message)), "new_signature": b64e(new.sign(message))}


@dataclass(frozen=True)
class IngestPublicKey:
    """What a hub needs to seal envelopes: the key id and the raw X25519 public key."""

    key_id: str
    public_key_raw: bytes
    suite: str = SUITE_NAME

    def x25519(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.public_key_raw)

    def to_json(self) -> dict[str, str]:
        return {"key_id": self.key_id, "public_key": b64e(self.public_key_raw), "suite": self.suite}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> IngestPublicKey:
        return cls(str(obj["key_id"]), b64d(obj["public_key"], "public_key"), str(obj.get("suite", SUITE_NAME)))


# --- service side --------------------------------------------------------------------------------------------
class IngestKeyRing:
    """The service's ingest keys in the database, private halves wrapped by the master key (``KeyVault``)."""

    def __init__(self, db: Any, vault: Any) -> None:
        self._db = db
        self._vault = vault
        self._private: dict[str, X25519PrivateKey] = {}
        self._lock = threading.Lock()

    def current(self) -> IngestPublicKey:
        """The active key, created on first use."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT key_id, public_key FROM ingest_keys WHERE retired_ms IS NULL "
                         "ORDER BY created_ms DESC LIMIT 1")
            if row is None:
                return self._create(tx)
        return IngestPublicKey(row[0], row[1])

    def _create(self, tx: Any) -> IngestPublicKey:
        private = X25519PrivateKey.generate()
        key_id = "ik-" + secrets.token_hex(8)
        raw_private = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        tx.execute(
            "INSERT INTO ingest_keys (key_id, public_key, wrapped_private_key, created_ms) VALUES (?, ?, ?, ?)",
            (key_id, _raw_public(private.public_key()), self._vault.wrap(raw_private, f"ingest:{key_id}"), _now_ms()))
        return IngestPublicKey(key_id, _raw_public(private.public_key()))

    def rotate(self) -> IngestPublicKey:
        """Retire the active key (kept for decryption) and make a new one active."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE ingest_keys SET retired_ms = ? WHERE retired_ms IS NULL", (_now_ms(),))
            return self._create(tx)

    def destroy(self, key_id: str) -> None:
        """Delete a retired key's private half; envelopes still sealed to it become ``UnknownKey``."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT retired_ms FROM ingest_keys WHERE key_id = ?", (key_id,))
            if row is None:
                raise UnknownKey(f"no ingest key {key_id}")
            if row[0] is None:
                raise ValueError("retire (rotate) a key before destroying it")
            tx.execute("UPDATE ingest_keys SET wrapped_private_key = NULL, destroyed_ms = ? WHERE key_id = ?",
                       (_now_ms(), key_id))
        with self._lock:
            self._private.pop(key_id, None)

    def keys(self) -> list[dict[str, Any]]:
        with self._db.transaction() as tx:
            rows = tx.all("SELECT key_id, created_ms, retired_ms, destroyed_ms FROM ingest_keys ORDER BY created_ms")
        return [{"key_id": r[0], "created_ms": r[1], "retired_ms": r[2], "destroyed_ms": r[3]} for r in rows]

    def private_key(self, key_id: str) -> X25519PrivateKey:
        """The private key for ``key_id`` (active or retired); ``UnknownKey`` if never issued or destroyed."""
        with self._lock:
            cached = self._private.get(key_id)
        if cached is not None:
            return cached
        with self._db.transaction() as tx:
            row = tx.one("SELECT wrapped_private_key FROM ingest_keys WHERE key_id = ?", (key_id,))
        if row is None or row[0] is None:
            raise UnknownKey(f"ingest key {key_id!r} is unknown or destroyed", key_id=key_id[:128])
        private = X25519PrivateKey.from_private_bytes(self._vault.unwrap(row[0], f"ingest:{key_id}"))
        with self._lock:
            self._private[key_id] = private
        return private


def _code_hash(code: str) -> str:
    return hashlib.sha256(b"glucotwin/enrollment-code|" + normalize_code(code).encode()).hexdigest()


def create_enrollment_code(tx: Any, patient_id: str, clinic_id: str, ttl_s: int = ENROLLMENT_TTL_S) -> str:
    """A one-time code (about 98 bits, ``XXXXX-XXXXX-XXXXX-XXXXX``); only its hash is stored."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LEN))
    now = _now_ms()
    tx.execute("INSERT INTO enrollment_codes (code_hash, patient_id, clinic_id, created_ms, expires_ms) "
               "VALUES (?, ?, ?, ?, ?)", (_code_hash(raw), patient_id, clinic_id, now, now + ttl_s * 1000))
    return "-".join(raw[i:i + 5] for i in range(0, _CODE_LEN, 5))


def _ed25519(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise MalformedEnvelope("an Ed25519 public key is 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise MalformedEnvelope("not an Ed25519 public key") from exc


def redeem_enrollment(tx: Any, code: str, device_public_key_raw: bytes, signature: bytes,
                      base_seq: int = 0) -> tuple[str, str]:
    """Consume ``code`` and register the device; return (device_id, patient_id). ``EnrollmentError`` if the
    code is unknown, used or expired, or the signature does not prove possession of the key."""
    public = _ed25519(device_public_key_raw)
    try:
        public.verify(signature, enroll_message(code, device_public_key_raw))
    except InvalidSignature as exc:
        raise EnrollmentError("proof of possession of the device key does not verify") from exc
    now = _now_ms()
    row = tx.one("SELECT patient_id, expires_ms, used_ms FROM enrollment_codes WHERE code_hash = ?" + tx.for_update,
                 (_code_hash(code),))
    if row is None or row[2] is not None or row[1] < now:
        raise EnrollmentError("enrollment code is unknown, already used or expired")
    patient_id = row[0]
    erased = tx.one("SELECT erased_ms FROM patients WHERE patient_id = ?", (patient_id,))
    if erased is None or erased[0] is not None:
        raise EnrollmentError("the patient of this code no longer exists")
    key_id = device_key_id(device_public_key_raw)
    if tx.one("SELECT 1 FROM device_keys WHERE device_key_id = ?", (key_id,)) is not None:
        raise EnrollmentError("this device key is already registered: generate a new key")
    device_id = "dev-" + secrets.token_hex(8)
    changed = tx.execute("UPDATE enrollment_codes SET used_ms = ?, device_id = ? WHERE code_hash = ? AND used_ms IS NULL",
                         (now, device_id, _code_hash(code)))
    if changed != 1:
        raise EnrollmentError("enrollment code was used concurrently")
    tx.execute("INSERT INTO devices (device_id, patient_id, enrolled_ms, acked_seq) VALUES (?, ?, ?, ?)",
               (device_id, patient_id, now, base_seq))
    tx.execute("INSERT INTO device_keys (device_key_id, device_id, public_key, created_ms) VALUES (?, ?, ?, ?)",
               (key_id, device_id, device_public_key_raw, now))
    return device_id, patient_id


def device_verification_key(tx: Any, device_id: str, device_key_id_: str) -> tuple[Ed25519PublicKey, str]:
    """The active public key ``device_key_id_`` of a non-revoked device and the device's patient id."""
    device = tx.one("SELECT patient_id, revoked_ms FROM devices WHERE device_id = ?", (device_id,))
    if device is None:
        raise UnknownDevice(f"device {device_id!r} is not enrolled")
    if device[1] is not None:
        raise DeviceRevoked(f"device {device_id} was revoked")
    key = tx.one("SELECT public_key, retired_ms FROM device_keys WHERE device_key_id = ? AND device_id = ?",
                 (device_key_id_, device_id))
    if key is None or key[1] is not None:
        raise UnknownDeviceKey(f"key {device_key_id_!r} is not an active key of device {device_id}")
    return Ed25519PublicKey.from_public_bytes(key[0]), device[0]


def rotate_device_key(tx: Any, device_id: str, old_device_key_id: str, new_public_key_raw: bytes,
                      old_signature: bytes, new_signature: bytes) -> str:
    """Replace the device's active key; both keys must sign the rotation. Returns the new key id."""
    old_public, _ = device_verification_key(tx, device_id, old_device_key_id)
    new_public = _ed25519(new_public_key_raw)
    message = rotate_message(device_id, old_device_key_id, new_public_key_raw)
    for public, signature in ((old_public, old_signature), (new_public, new_signature)):
        try:
            public.verify(signature, message)
        except InvalidSignature as exc:
            raise BadSignature("key rotation must be signed by the old and the new device key") from exc
    new_id = device_key_id(new_public_key_raw)
    if tx.one("SELECT 1 FROM device_keys WHERE device_key_id = ?", (new_id,)) is not None:
        raise EnrollmentError("this device key is already registered")
    now = _now_ms()
    tx.execute("UPDATE device_keys SET retired_ms = ? WHERE device_id = ? AND retired_ms IS NULL", (now, device_id))
    tx.execute("INSERT INTO device_keys (device_key_id, device_id, public_key, created_ms) VALUES (?, ?, ?, ?)",
               (new_id, device_id, new_public_key_raw, now))
    return new_id


def revoke_device(tx: Any, device_id: str) -> str:
    """Revoke a device (lost or stolen hub); returns its patient id. Idempotent."""
    row = tx.one("SELECT patient_id FROM devices WHERE device_id = ?", (device_id,))
    if row is None:
        raise UnknownDevice(f"device {device_id!r} is not enrolled")
    tx.execute("UPDATE devices SET revoked_ms = ? WHERE device_id = ? AND revoked_ms IS NULL", (_now_ms(), device_id))
    tx.execute("UPDATE device_keys SET retired_ms = ? WHERE device_id = ? AND retired_ms IS NULL", (_now_ms(), device_id))
    return row[0]
