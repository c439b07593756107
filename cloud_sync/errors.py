"""Typed errors of the sync protocol and the cloud service.

Every error carries a stable machine-readable ``code`` and the HTTP status the service answers with, so the
hub can decide what to do (retry, refresh the ingest key, stop and report) without parsing messages.
"""

from __future__ import annotations

from typing import Any


class CloudSyncError(Exception):
    """Base class. ``code`` is stable and documented; ``http_status`` is what the service answers."""

    code = "cloud_sync_error"
    http_status = 400

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.detail}}


# --- envelope and ingest -------------------------------------------------------------------------------------
class MalformedEnvelope(CloudSyncError):
    """The envelope or its header cannot be parsed (bad base64, missing field, wrong type)."""

    code = "malformed_envelope"
    http_status = 400


class UnsupportedSchema(MalformedEnvelope):
    code = "unsupported_schema"


class InvalidPayload(CloudSyncError):
    """The payload decrypted fine but does not follow the payload schema."""

    code = "invalid_payload"
    http_status = 422


class TamperedEnvelope(CloudSyncError):
    """The ciphertext or the header bound into it was changed (AEAD authentication failed)."""

    code = "tampered_envelope"
    http_status = 400


class BadSignature(TamperedEnvelope):
    """The Ed25519 signature over header + ciphertext does not verify with the device's key."""

    code = "bad_signature"
    http_status = 401


class UnknownKey(CloudSyncError):
    """The header names an ingest key id the service does not hold (never issued or destroyed)."""

    code = "unknown_ingest_key"
    http_status = 400


class UnknownDevice(CloudSyncError):
    code = "unknown_device"
    http_status = 401


class UnknownDeviceKey(CloudSyncError):
    """The header's signing key id is not an active key of that device (rotated out or never registered)."""

    code = "unknown_device_key"
    http_status = 401


class DeviceRevoked(CloudSyncError):
    code = "device_revoked"
    http_status = 403


class ReplayedSequence(CloudSyncError):
    """A sequence number already stored for this device arrived with different content."""

    code = "replayed_sequence"
    http_status = 409


class IdempotencyKeyReused(CloudSyncError):
    """The same Idempotency-Key was sent with a different request payload."""

    code = "idempotency_key_reused"
    http_status = 422


class BatchTooLarge(CloudSyncError):
    code = "batch_too_large"
    http_status = 413


# --- enrollment and keys -------------------------------------------------------------------------------------
class EnrollmentError(CloudSyncError):
    """The enrollment code is unknown, used, expired, or the proof of possession is wrong."""

    code = "enrollment_refused"
    http_status = 403


class KeyDestroyed(CloudSyncError):
    """A patient's data key was destroyed (crypto-shredding): that patient's ciphertext is unreadable."""

    code = "key_destroyed"
    http_status = 410


# --- accounts and access -------------------------------------------------------------------------------------
class BadRequest(CloudSyncError):
    code = "bad_request"
    http_status = 400


class Unauthenticated(CloudSyncError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(CloudSyncError):
    code = "forbidden"
    http_status = 403


class NoConsent(Forbidden):
    code = "no_consent"


class NotFound(CloudSyncError):
    code = "not_found"
    http_status = 404


class Conflict(CloudSyncError):
    code = "conflict"
    http_status = 409


class AuditChainBroken(CloudSyncError):
    """The audit log's hash chain does not verify at ``entry_id``."""

    code = "audit_chain_broken"
    http_status = 500


# --- hub side ------------------------------------------------------------------------------------------------
class SyncError(CloudSyncError):
    """Base of the sync client's errors."""

    code = "sync_error"


class TransientSyncError(SyncError):
    """Worth retrying later (network down, 5xx after urllib3's retries, 429)."""

    code = "sync_transient"


class PermanentSyncError(SyncError):
    """The service refused a batch for a reason retrying cannot fix; nothing is dropped, sync stops."""

    code = "sync_refused"
