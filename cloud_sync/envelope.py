"""The envelope a hub sends to the cloud: versioned payload, HPKE-sealed, Ed25519-signed.

Wire form (JSON, one envelope)::

    {"header": {"device_id": "...", "device_key_id": "...", "seq": 17, "key_id": "ik-...",
                "schema_version": 1, "payload_type": "summary", "suite": "X25519-HKDFSHA256-ChaCha20Poly1305"},
     "ciphertext": "<base64url, HPKE enc || AEAD ciphertext>",
     "signature": "<base64url, Ed25519>"}

Cryptography (RFC 9180 HPKE, base mode, via ``cryptography.hazmat.primitives.hpke.Suite``):

* The payload is sealed to the service's ingest public key named by ``key_id`` (X25519 KEM, HKDF-SHA256,
  ChaCha20-Poly1305: fast on a Raspberry Pi without AES instructions).
* Header binding: the installed API has no public AAD argument, so the canonical header bytes are passed as
  HPKE ``info`` (prefixed by ``INFO_LABEL``). ``info`` enters the key schedule, so any change to the header
  (device, seq, key id, schema, type) derives different keys and the AEAD tag fails: a ciphertext cannot be
  moved under another header.
* HPKE base mode does not authenticate the sender, so the hub signs ``SIGNATURE_LABEL || len(header) ||
  header || ciphertext`` with its Ed25519 device key (``device_key_id`` names which key).
* Replay protection is not here: the service keeps (device, seq) unique and a per-device high-water mark.

The canonical header is ``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``
after strict type checks, so the JSON form on the wire and the signed bytes cannot disagree.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cloud_sync.errors import (
    BadSignature,
    InvalidPayload,
    MalformedEnvelope,
    ReplayedSequence,
    TamperedEnvelope,
    UnknownKey,
    UnsupportedSchema,
)

__all__ = [
    "SCHEMA_VERSION",
    "PAYLOAD_TYPE_SUMMARY",
    "SUITE_NAME",
    "MAX_SEQ",
    "EnvelopeHeader",
    "Envelope",
    "ReadingSeries",
    "InsulinDose",
    "CarbEntry",
    "TwinEstimate",
    "RecommendationOutcome",
    "AlertEvent",
    "SummaryPayload",
    "PatientRecordData",
    "seal",
    "verify_signature",
    "open_envelope",
    "canonical_json",
    "b64e",
    "b64d",
    # re-exported typed errors
    "TamperedEnvelope",
    "BadSignature",
    "UnknownKey",
    "ReplayedSequence",
    "MalformedEnvelope",
    "UnsupportedSchema",
    "InvalidPayload",
]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
PAYLOAD_TYPE_SUMMARY = "summary"
PAYLOAD_TYPES = frozenset({PAYLOAD_TYPE_SUMMARY})
SUITE_NAME = "X25519-HKDFSHA256-ChaCha20Poly1305"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
INFO_LABEL = b"glucotwin/envelope/v1 header="
SIGNATURE_LABEL = b"glucotwin/envelope-signature/v1"
MAX_SEQ = 2**63 - 1  # fits a signed 64-bit column in SQLite and PostgreSQL
MAX_ID_LEN = 128
MAX_CIPHERTEXT_BYTES = 4 * 1024 * 1024


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces, ASCII, no NaN)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str, what: str = "value") -> bytes:
    if not isinstance(text, str) or len(text) > 2 * MAX_CIPHERTEXT_BYTES:
        raise MalformedEnvelope(f"{what} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise MalformedEnvelope(f"{what} is not valid base64url") from exc


# --- small strict validators ---------------------------------------------------------------------------------
def _require(obj: Mapping[str, Any], key: str, error: type[Exception], where: str) -> Any:
    if key not in obj:
        raise error(f"{where}: missing field {key!r}")
    return obj[key]


def _int(value: Any, name: str, lo: int, hi: int, error: type[Exception] = InvalidPayload) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise error(f"{name} must be an integer in [{lo}, {hi}]")
    return value


def _num(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidPayload(f"{name} must be a finite number")
    if not lo <= value <= hi:
        raise InvalidPayload(f"{name} must be in [{lo}, {hi}]")
    return float(value)


def _str(value: Any, name: str, max_len: int, error: type[Exception] = InvalidPayload) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len or "\x00" in value:
        raise error(f"{name} must be a non-empty string of at most {max_len} characters without NUL")
    return value


def _list(value: Any, name: str, max_len: int = 100_000) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_len:
        raise InvalidPayload(f"{name} must be a list of at most {max_len} items")
    return value


def _obj(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(f"{name} must be an object")
    return value


TIME_MS_MAX = 32503680000000  # year 3000: rejects garbage, accepts any real clock
# A physiological, not clinical, bound: CGMs report 40-400 mg/dL; anything outside 1-1500 is a unit error.
GLUCOSE_MG_DL_MAX = 1500


# --- payload schema v1 ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientRecordData:
    """One record as the service stores it: type, time, and a JSON-able body."""

    record_type: str
    time_ms: int
    data: dict[str, Any]


@dataclass(frozen=True)
class ReadingSeries:
    """CGM readings in compact form: a start time, second offsets and integer mg/dL values (same length)."""

    start_ms: int
    offsets_s: tuple[int, ...]
    glucose_mg_dl: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "offsets_s": list(self.offsets_s), "glucose_mg_dl": list(self.glucose_mg_dl)}

    @classmethod
    def from_json(cls, obj: Any) -> ReadingSeries:
        obj = _obj(obj, "readings")
        start = _int(_require(obj, "start_ms", InvalidPayload, "readings"), "readings.start_ms", 0, TIME_MS_MAX)
        offsets = _list(_require(obj, "offsets_s", InvalidPayload, "readings"), "readings.offsets_s")
        values = _list(_require(obj, "glucose_mg_dl", InvalidPayload, "readings"), "readings.glucose_mg_dl")
        if len(offsets) != len(values):
            raise InvalidPayload("readings.offsets_s and readings.glucose_mg_dl differ in length")
        return cls(
            start,
            tuple(_int(o, "readings.offsets_s[]", 0, 366 * 86400) for o in offsets),
            tuple(_int(v, "readings.glucose_mg_dl[]", 1, GLUCOSE_MG_DL_MAX) for v in values),
        )

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, int]]) -> ReadingSeries:
        """Build from (time_ms, glucose_mg_dl) pairs; times are rounded down to whole seconds after the first."""
        if not pairs:
            raise InvalidPayload("no readings")
        start = pairs[0][0]
        return cls(start, tuple((t - start) // 1000 for t, _ in pairs), tuple(int(g) for _, g in pairs))

    def records(self) -> list[PatientRecordData]:
        return [
            PatientRecordData("glucose", self.start_ms + 1000 * off, {"glucose_mg_dl": value})
            for off, value in zip(self.offsets_s, self.glucose_mg_dl)
        ]


@dataclass(frozen=True)
class InsulinDose:
    time_ms: int
    insulin_u: float
    kind: str  # "bolus" | "basal"
    duration_min: float = 0.0

    KINDS = frozenset({"bolus", "basal"})

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "insulin_u": self.insulin_u, "kind": self.kind, "duration_min": self.duration_min}

    @classmethod
    def from_json(cls, obj: Any) -> InsulinDose:
        obj = _obj(obj, "insulin[]")
        kind = _str(_require(obj, "kind", InvalidPayload, "insulin[]"), "insulin[].kind", 16)
        if kind not in cls.KINDS:
            raise InvalidPayload(f"insulin[].kind must be one of {sorted(cls.KINDS)}")
        return cls(
            _int(_require(obj, "time_ms", InvalidPayload, "insulin[]"), "insulin[].time_ms", 0, TIME_MS_MAX),
            _num(_require(obj, "insulin_u", InvalidPayload, "insulin[]"), "insulin[].insulin_u", 0.0, 100.0),
            kind,
            _num(obj.get("duration_min", 0.0), "insulin[].duration_min", 0.0, 24 * 60.0),
        )

    def record(self) -> PatientRecordData:
        return PatientRecordData("insulin", self.time_ms, {"insulin_u": self.insulin_u, "kind": self.kind, "duration_min": self.duration_min})


@dataclass(frozen=True)
class CarbEntry:
    time_ms: int
    carbs_g: float

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "carbs_g": self.carbs_g}

    @classmethod
    def from_json(cls, obj: Any) -> CarbEntry:
        obj = _obj(obj, "carbs[]")
        return cls(
            _int(_require(obj, "time_ms", InvalidPayload, "carbs[]"), "carbs[].time_ms", 0, TIME_MS_MAX),
            _num(_require(obj, "carbs_g", InvalidPayload, "carbs[]"), "carbs[].carbs_g", 0.0, 500.0),
        )

    def record(self) -> PatientRecordData:
        return PatientRecordData("carbs", self.time_ms, {"carbs_g": self.carbs_g})


@dataclass(frozen=True)
class TwinEstimate:
    """Twin parameter estimates at a time (e.g. insulin sensitivity, carb ratio), names -> values."""

    time_ms: int
    parameters: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "parameters": dict(self.parameters)}

    @classmethod
    def from_json(cls, obj: Any) -> TwinEstimate:
        obj = _obj(obj, "twin_parameters[]")
        params = _obj(_require(obj, "parameters", InvalidPayload, "twin_parameters[]"), "twin_parameters[].parameters")
        if len(params) > 256:
            raise InvalidPayload("twin_parameters[].parameters has too many entries")
        return cls(
            _int(_require(obj, "time_ms", InvalidPayload, "twin_parameters[]"), "twin_parameters[].time_ms", 0, TIME_MS_MAX),
            {_str(k, "parameter name", 64): _num(v, f"parameter {k}", -1e12, 1e12) for k, v in params.items()},
        )

    def record(self) -> PatientRecordData:
        return PatientRecordData("twin_parameters", self.time_ms, {"parameters": dict(self.parameters)})


@dataclass(frozen=True)
class RecommendationOutcome:
    """A dose recommendation the hub gave and whether the person followed it (None: not known yet)."""

    time_ms: int
    recommendation_id: str
    insulin_u: float
    followed: bool | None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "recommendation_id": self.recommendation_id, "insulin_u": self.insulin_u,
                "followed": self.followed, "reason": self.reason}

    @classmethod
    def from_json(cls, obj: Any) -> RecommendationOutcome:
        obj = _obj(obj, "recommendations[]")
        followed = obj.get("followed")
        if followed is not None and not isinstance(followed, bool):
            raise InvalidPayload("recommendations[].followed must be true, false or null")
        reason = obj.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 2000:
            raise InvalidPayload("recommendations[].reason must be a string of at most 2000 characters")
        return cls(
            _int(_require(obj, "time_ms", InvalidPayload, "recommendations[]"), "recommendations[].time_ms", 0, TIME_MS_MAX),
            _str(_require(obj, "recommendation_id", InvalidPayload, "recommendations[]"), "recommendations[].recommendation_id", 128),
            _num(_require(obj, "insulin_u", InvalidPayload, "recommendations[]"), "recommendations[].insulin_u", 0.0, 100.0),
            followed,
            reason,
        )

    def record(self) -> PatientRecordData:
        return PatientRecordData("recommendation", self.time_ms, {
            "recommendation_id": self.recommendation_id, "insulin_u": self.insulin_u,
            "followed": self.followed, "reason": self.reason})


@dataclass(frozen=True)
class AlertEvent:
    time_ms: int
    kind: str  # e.g. "urgent_low", "high", "sensor_lost"
    severity: str  # "info" | "warning" | "urgent"
    message: str = ""

    SEVERITIES = frozenset({"info", "warning", "urgent"})

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "kind": self.kind, "severity": self.severity, "message": self.message}

    @classmethod
    def from_json(cls, obj: Any) -> AlertEvent:
        obj = _obj(obj, "alerts[]")
        severity = _str(_require(obj, "severity", InvalidPayload, "alerts[]"), "alerts[].severity", 16)
        if severity not in cls.SEVERITIES:
            raise InvalidPayload(f"alerts[].severity must be one of {sorted(cls.SEVERITIES)}")
        message = obj.get("message", "")
        if not isinstance(message, str) or len(message) > 2000:
            raise InvalidPayload("alerts[].message must be a string of at most 2000 characters")
        return cls(
            _int(_require(obj, "time_ms", InvalidPayload, "alerts[]"), "alerts[].time_ms", 0, TIME_MS_MAX),
            _str(_require(obj, "kind", InvalidPayload, "alerts[]"), "alerts[].kind", 64),
            severity,
            message,
        )

    def record(self) -> PatientRecordData:
        return PatientRecordData("alert", self.time_ms, {"kind": self.kind, "severity": self.severity, "message": self.message})


RECORD_TYPES = ("glucose", "insulin", "carbs", "twin_parameters", "recommendation", "alert")


@dataclass(frozen=True)
class SummaryPayload:
    """Payload schema v1, ``payload_type == "summary"``: what the hub learned over a period.

    JSON: ``{"schema_version": 1, "period_start_ms", "period_end_ms", "readings": ReadingSeries|null,
    "insulin": [...], "carbs": [...], "twin_parameters": [...], "recommendations": [...], "alerts": [...]}``.
    """

    period_start_ms: int
    period_end_ms: int
    readings: ReadingSeries | None = None
    insulin: tuple[InsulinDose, ...] = ()
    carbs: tuple[CarbEntry, ...] = ()
    twin_parameters: tuple[TwinEstimate, ...] = ()
    recommendations: tuple[RecommendationOutcome, ...] = ()
    alerts: tuple[AlertEvent, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "period_start_ms": self.period_start_ms,
            "period_end_ms": self.period_end_ms,
            "readings": None if self.readings is None else self.readings.to_json(),
            "insulin": [d.to_json() for d in self.insulin],
            "carbs": [c.to_json() for c in self.carbs],
            "twin_parameters": [t.to_json() for t in self.twin_parameters],
            "recommendations": [r.to_json() for r in self.recommendations],
            "alerts": [a.to_json() for a in self.alerts],
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> SummaryPayload:
        obj = _obj(obj, "payload")
        version = _int(_require(obj, "schema_version", InvalidPayload, "payload"), "schema_version", 0, 2**31)
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise UnsupportedSchema(f"payload schema_version {version} is not supported")
        start = _int(_require(obj, "period_start_ms", InvalidPayload, "payload"), "period_start_ms", 0, TIME_MS_MAX)
        end = _int(_require(obj, "period_end_ms", InvalidPayload, "payload"), "period_end_ms", 0, TIME_MS_MAX)
        if end < start:
            raise InvalidPayload("period_end_ms is before period_start_ms")
        readings = obj.get("readings")
        return cls(
            start,
            end,
            None if readings is None else ReadingSeries.from_json(readings),
            tuple(InsulinDose.from_json(x) for x in _list(obj.get("insulin", []), "insulin")),
            tuple(CarbEntry.from_json(x) for x in _list(obj.get("carbs", []), "carbs")),
            tuple(TwinEstimate.from_json(x) for x in _list(obj.get("twin_parameters", []), "twin_parameters")),
            tuple(RecommendationOutcome.from_json(x) for x in _list(obj.get("recommendations", []), "recommendations")),
            tuple(AlertEvent.from_json(x) for x in _list(obj.get("alerts", []), "alerts")),
            version,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SummaryPayload:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidPayload("payload is not JSON") from exc
        return cls.from_json(obj)

    def records(self) -> list[PatientRecordData]:
        """Explode into stored records, in a deterministic order (their index is the position in this list)."""
        out: list[PatientRecordData] = []
        if self.readings is not None:
            out.extend(self.readings.records())
        for group in (self.insulin, self.carbs, self.twin_parameters, self.recommendations, self.alerts):
            out.extend(item.record() for item in group)
        return out


# --- header and envelope -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvelopeHeader:
    device_id: str
    device_key_id: str
    seq: int
    key_id: str
    schema_version: int = SCHEMA_VERSION
    payload_type: str = PAYLOAD_TYPE_SUMMARY
    suite: str = SUITE_NAME

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "device_key_id": self.device_key_id,
            "seq": self.seq,
            "key_id": self.key_id,
            "schema_version": self.schema_version,
            "payload_type": self.payload_type,
            "suite": self.suite,
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> EnvelopeHeader:
        if not isinstance(obj, dict):
            raise MalformedEnvelope("header must be an object")
        unknown = set(obj) - {"device_id", "device_key_id", "seq", "key_id", "schema_version", "payload_type", "suite"}
        if unknown:
            raise MalformedEnvelope(f"header has unknown fields {sorted(unknown)}")
        req = lambda k: _require(obj, k, MalformedEnvelope, "header")  # noqa: E731
        header = cls(
            device_id=_str(req("device_id"), "header.device_id", MAX_ID_LEN, MalformedEnvelope),
            device_key_id=_str(req("device_key_id"), "header.device_key_id", MAX_ID_LEN, MalformedEnvelope),
            seq=_int(req("seq"), "header.seq", 1, MAX_SEQ, MalformedEnvelope),
            key_id=_str(req("key_id"), "header.key_id", MAX_ID_LEN, MalformedEnvelope),
            schema_version=_int(req("schema_version"), "header.schema_version", 0, 2**31, MalformedEnvelope),
            payload_type=_str(req("payload_type"), "header.payload_type", 32, MalformedEnvelope),
            suite=_str(req("suite"), "header.suite", 64, MalformedEnvelope),
        )
        if header.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
            raise UnsupportedSchema(f"schema_version {header.schema_version} is not supported", seq=header.seq)
        if header.payload_type not in PAYLOAD_TYPES:
            raise UnsupportedSchema(f"payload_type {header.payload_type!r} is not supported", seq=header.seq)
        if header.suite != SUITE_NAME:
            raise UnsupportedSchema(f"suite {header.suite!r} is not supported", seq=header.seq)
        return header


def _signed_bytes(header_bytes: bytes, ciphertext: bytes) -> bytes:
    return SIGNATURE_LABEL + struct.pack(">I", len(header_bytes)) + header_bytes + ciphertext


@dataclass(frozen=True)
class Envelope:
    header: EnvelopeHeader
    ciphertext: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"header": self.header.to_json(), "ciphertext": b64e(self.ciphertext), "signature": b64e(self.signature)}

    @classmethod
    def from_json(cls, obj: Any) -> Envelope:
        if not isinstance(obj, dict):
            raise MalformedEnvelope("envelope must be an object")
        header = EnvelopeHeader.from_json(_require(obj, "header", MalformedEnvelope, "envelope"))
        ciphertext = b64d(_require(obj, "ciphertext", MalformedEnvelope, "envelope"), "ciphertext")
        signature = b64d(_require(obj, "signature", MalformedEnvelope, "envelope"), "signature")
        if len(signature) != 64:
            raise BadSignature("signature must be 64 bytes", seq=header.seq)
        if len(ciphertext) < hpke.KEM.X25519.enc_length() + 16 or len(ciphertext) > MAX_CIPHERTEXT_BYTES:
            raise MalformedEnvelope("ciphertext has an impossible length", seq=header.seq)
        return cls(header, ciphertext, signature)


def seal(payload: bytes, header: EnvelopeHeader, ingest_public_key: X25519PublicKey,
         device_private_key: Ed25519PrivateKey) -> Envelope:
    """Encrypt ``payload`` to the ingest key with the header as HPKE info, then sign header + ciphertext."""
    header_bytes = header.canonical_bytes()
    ciphertext = SUITE.encrypt(payload, ingest_public_key, info=INFO_LABEL + header_bytes)
    signature = device_private_key.sign(_signed_bytes(header_bytes, ciphertext))
    return Envelope(header, ciphertext, signature)


def verify_signature(envelope: Envelope, device_public_key: Ed25519PublicKey) -> None:
    """Raise ``BadSignature`` unless the device key signed this header and ciphertext."""
    try:
        device_public_key.verify(envelope.signature, _signed_bytes(envelope.header.canonical_bytes(), envelope.ciphertext))
    except InvalidSignature as exc:
        raise BadSignature("envelope signature does not verify", seq=envelope.header.seq) from exc


def open_envelope(envelope: Envelope, ingest_private_key: X25519PrivateKey) -> bytes:
    """Decrypt the payload bytes; ``TamperedEnvelope`` if the ciphertext or its bound header was changed."""
    try:
        return SUITE.decrypt(envelope.ciphertext, ingest_private_key, info=INFO_LABEL + envelope.header.canonical_bytes())
    except (InvalidTag, ValueError) as exc:
        raise TamperedEnvelope("envelope does not decrypt: ciphertext or header changed, or wrong key",
                               seq=envelope.header.seq) from exc
