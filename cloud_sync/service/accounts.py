"""Clinics, clinician accounts (scrypt password hashes, bearer tokens), patients, consent and erasure.

Roles: ``admin`` (service operator; tokens from ``glucotwin cloud admin-token``), ``clinician`` (member of one
clinic; sees a patient only while that patient's consent for the clinic stands) and ``patient`` (a token issued
to the hub at enrollment, scoped to that patient: grant/revoke consent, request erasure).
Tokens are 256-bit random strings; only their SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from cloud_sync.errors import Conflict, Forbidden, NoConsent, NotFound, Unauthenticated
from cloud_sync.service.at_rest import KeyVault
from cloud_sync.service.storage import Tx

__all__ = [
    "Principal", "hash_password", "verify_password", "create_clinic", "create_clinician", "create_patient",
    "login", "issue_token", "authenticate", "require_patient_access", "grant_consent", "revoke_consent",
    "has_consent", "consented_patients", "erase_patient",
]

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
CLINICIAN_TOKEN_TTL_S = 12 * 3600
PATIENT_TOKEN_TTL_S = 5 * 365 * 86400
ROLES = frozenset({"admin", "clinician", "patient"})


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Principal:
    role: str
    subject_id: str
    clinic_id: str | None = None
    patient_id: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.subject_id}"


# --- passwords -----------------------------------------------------------------------------------------------
def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """``scrypt$N$r$p$salt$hash`` (RFC 7914 via hashlib.scrypt, 16-byte random salt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN)
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${enc(salt)}${enc(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# --- entities ------------------------------------------------------------------------------------------------
def create_clinic(tx: Tx, name: str) -> str:
    clinic_id = "clinic-" + secrets.token_hex(6)
    tx.execute("INSERT INTO clinics (clinic_id, name, created_ms) VALUES (?, ?, ?)", (clinic_id, name, _now_ms()))
    return clinic_id


def create_clinician(tx: Tx, clinic_id: str, email: str, password: str) -> str:
    if tx.one("SELECT 1 FROM clinics WHERE clinic_id = ?", (clinic_id,)) is None:
        raise NotFound(f"clinic {clinic_id!r} does not exist")
    email = email.strip().lower()
    if tx.one("SELECT 1 FROM clinicians WHERE email = ?", (email,)) is not None:
        raise Conflict("a clinician with this email exists")
    clinician_id = "clin-" + secrets.token_hex(6)
    tx.execute("INSERT INTO clinicians (clinician_id, clinic_id, email, password_hash, created_ms) "
               "VALUES (?, ?, ?, ?, ?)", (clinician_id, clinic_id, email, hash_password(password), _now_ms()))
    return clinician_id


def create_patient(tx: Tx, clinic_id: str, display_name: str | None = None) -> str:
    """Register a patient at a clinic with consent for that clinic (given in person when the code is made)."""
    if tx.one("SELECT 1 FROM clinics WHERE clinic_id = ?", (clinic_id,)) is None:
        raise NotFound(f"clinic {clinic_id!r} does not exist")
    patient_id = "pt-" + secrets.token_hex(8)
    tx.execute("INSERT INTO patients (patient_id, display_name, created_ms) VALUES (?, ?, ?)",
               (patient_id, display_name, _now_ms()))
    grant_consent(tx, patient_id, clinic_id)
    return patient_id


# --- tokens --------------------------------------------------------------------------------------------------
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(tx: Tx, role: str, subject_id: str, *, clinic_id: str | None = None,
                patient_id: str | None = None, ttl_s: int = CLINICIAN_TOKEN_TTL_S) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    token = secrets.token_urlsafe(32)
    now = _now_ms()
    tx.execute("INSERT INTO tokens (token_hash, role, subject_id, clinic_id, patient_id, created_ms, expires_ms) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               (_token_hash(token), role, subject_id, clinic_id, patient_id, now, now + ttl_s * 1000))
    return token


def login(tx: Tx, email: str, password: str) -> tuple[str, Principal]:
    row = tx.one("SELECT clinician_id, clinic_id, password_hash, disabled_ms FROM clinicians WHERE email = ?",
                 (email.strip().lower(),))
    if row is None or row[3] is not None or not verify_password(password, row[2]):
        raise Unauthenticated("wrong email or password")
    return issue_token(tx, "clinician", row[0], clinic_id=row[1]), Principal("clinician", row[0], clinic_id=row[1])


def authenticate(tx: Tx, token: str | None) -> Principal:
    if not token or len(token) > 200:
        raise Unauthenticated("a bearer token is required")
    row = tx.one("SELECT role, subject_id, clinic_id, patient_id, expires_ms, revoked_ms FROM tokens "
                 "WHERE token_hash = ?", (_token_hash(token),))
    if row is None or row[5] is not None or row[4] < _now_ms():
        raise Unauthenticated("token is unknown, expired or revoked")
    return Principal(row[0], row[1], row[2], row[3])


# --- consent and access --------------------------------------------------------------------------------------
def _patient_exists(tx: Tx, patient_id: str) -> bool:
    row = tx.one("SELECT erased_ms FROM patients WHERE patient_id = ?", (patient_id,))
    return row is not None and row[0] is None


def has_consent(tx: Tx, patient_id: str, clinic_id: str) -> bool:
    row = tx.one("SELECT revoked_ms FROM consents WHERE patient_id = ? AND clinic_id = ?", (patient_id, clinic_id))
    return row is not None and row[0] is None


def grant_consent(tx: Tx, patient_id: str, clinic_id: str) -> None:
    if not _patient_exists(tx, patient_id):
        raise NotFound(f"patient {patient_id!r} does not exist")
    if tx.one("SELECT 1 FROM clinics WHERE clinic_id = ?", (clinic_id,)) is None:
        raise NotFound(f"clinic {clinic_id!r} does not exist")
    tx.execute("INSERT INTO consents (patient_id, clinic_id, granted_ms) VALUES (?, ?, ?) "
               "ON CONFLICT (patient_id, clinic_id) DO UPDATE SET granted_ms = excluded.granted_ms, revoked_ms = NULL",
               (patient_id, clinic_id, _now_ms()))


def revoke_consent(tx: Tx, patient_id: str, clinic_id: str) -> None:
    if not has_consent(tx, patient_id, clinic_id):
        raise NotFound("no standing consent for that clinic")
    tx.execute("UPDATE consents SET revoked_ms = ? WHERE patient_id = ? AND clinic_id = ?",
               (_now_ms(), patient_id, clinic_id))


def consented_patients(tx: Tx, clinic_id: str) -> list[tuple[str, str | None]]:
    return [(r[0], r[1]) for r in tx.all(
        "SELECT p.patient_id, p.display_name FROM patients p JOIN consents c ON c.patient_id = p.patient_id "
        "WHERE c.clinic_id = ? AND c.revoked_ms IS NULL AND p.erased_ms IS NULL ORDER BY p.patient_id",
        (clinic_id,))]


def require_patient_access(tx: Tx, principal: Principal, patient_id: str) -> None:
    """Admins: never health data. Patients: only themselves. Clinicians: only with standing consent."""
    if principal.role == "patient":
        if principal.patient_id != patient_id:
            raise Forbidden("a patient token gives access to that patient only")
    elif principal.role == "clinician":
        if principal.clinic_id is None or not has_consent(tx, patient_id, principal.clinic_id):
            raise NoConsent("this patient has not consented to your clinic (or revoked consent)")
    else:
        raise Forbidden("this role has no access to patient data")
    if not _patient_exists(tx, patient_id):
        raise NotFound(f"patient {patient_id!r} does not exist")


def erase_patient(tx: Tx, vault: KeyVault, patient_id: str) -> dict[str, int]:
    """GDPR erasure: crypto-shred the data key, delete rows, consents and tokens, revoke devices, drop the name.

    The patient id stays (as an erased tombstone) so the audit chain's references remain meaningful.
    """
    row = tx.one("SELECT erased_ms FROM patients WHERE patient_id = ?", (patient_id,))
    if row is None or row[0] is not None:
        raise NotFound(f"patient {patient_id!r} does not exist")
    vault.destroy_patient_key(tx, patient_id)
    now = _now_ms()
    counts = {
        "records": tx.execute("DELETE FROM records WHERE patient_id = ?", (patient_id,)),
        "envelopes": tx.execute("DELETE FROM envelopes WHERE patient_id = ?", (patient_id,)),
    }
    tx.execute("UPDATE consents SET revoked_ms = ? WHERE patient_id = ? AND revoked_ms IS NULL", (now, patient_id))
    tx.execute("UPDATE tokens SET revoked_ms = ? WHERE patient_id = ? AND revoked_ms IS NULL", (now, patient_id))
    tx.execute("UPDATE enrollment_codes SET used_ms = ? WHERE patient_id = ? AND used_ms IS NULL", (now, patient_id))
    tx.execute("UPDATE devices SET revoked_ms = ? WHERE patient_id = ? AND revoked_ms IS NULL", (now, patient_id))
    tx.execute("UPDATE patients SET display_name = NULL, erased_ms = ? WHERE patient_id = ?", (now, patient_id))
    return counts
