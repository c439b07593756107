"""FastAPI application factory for the cloud twin service.

    from cloud_sync.service.app import ServiceConfig, create_app
    app = create_app(ServiceConfig(db_path="cloud.db", master_key_path="master.key"))

Adding routes (clinician pages, FHIR export, Nightscout API): write an ``APIRouter`` and pass it in
``ServiceConfig(extra_routers=[router])`` (or call ``app.include_router`` on the returned app). Inside a route:

    @router.get("/v1/patients/{patient_id}/agp")
    def agp(access: PatientAccess = Depends(patient_access)):
        rows = access.service.records.read(access.patient_id, ["glucose"], start_ms, end_ms)

``patient_access`` authenticates the bearer token, enforces consent (clinician) or self (patient), and appends
an audit entry naming the route. Derived data kept elsewhere (caches, aggregates) must be encrypted with
``service.vault.encrypt_record`` or registered in ``service.erasure_hooks`` so that erasure reaches it. ``get_service(request)`` gives the ``Service`` (db, vault, keyring, records,
ingest) for routes that authenticate differently (e.g. Nightscout's API-SECRET). Errors: raise a
``cloud_sync.errors.CloudSyncError`` subclass; the app answers ``{"error": {"code", "message", ...}}`` with
its status.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path as PathParam, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from cloud_sync import keys as keymod
from cloud_sync.envelope import MAX_SEQ, RECORD_TYPES, b64d
from cloud_sync.errors import BadRequest, CloudSyncError, Forbidden, NotFound
from cloud_sync.service import accounts, audit
from cloud_sync.service.accounts import Principal
from cloud_sync.service.at_rest import KeyVault, load_or_create_master_key
from cloud_sync.service.ingest import MAX_BATCH, IngestService
from cloud_sync.service.records import RecordStore
from cloud_sync.service.storage import Database, Tx

__all__ = ["ServiceConfig", "Service", "create_app", "get_service", "current_principal", "patient_access",
           "PatientAccess"]


@dataclass
class ServiceConfig:
    """``db_path`` (SQLite, the default) or ``postgres_dsn``; ``master_key`` bytes or ``master_key_path``
    (created 0600 if missing; defaults to ``<db_path>.master-key``)."""

    db_path: str | Path | None = None
    postgres_dsn: str | None = None
    master_key: bytes | None = None
    master_key_path: str | Path | None = None
    postgres_pool_size: int = 8
    max_batch: int = MAX_BATCH
    extra_routers: Sequence[APIRouter] = field(default_factory=tuple)


class Service:
    """Everything a route needs; also usable without HTTP (CLI admin commands, tests, benchmarks)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        if config.postgres_dsn:
            self.db = Database.postgres(config.postgres_dsn, config.postgres_pool_size)
        else:
            self.db = Database.sqlite(config.db_path or "glucotwin-cloud.db")
        self.db.create_schema()
        master = config.master_key
        if master is None:
            path = config.master_key_path or (Path(str(config.db_path or "glucotwin-cloud.db")) .with_suffix(".master-key"))
            master = load_or_create_master_key(path)
        self.vault = KeyVault(master)
        self.keyring = keymod.IngestKeyRing(self.db, self.vault)
        self.keyring.current()  # make sure an active ingest key exists
        self.records = RecordStore(self.db, self.vault)
        fingerprint_key = hmac.new(master, b"glucotwin/ingest-fingerprint/v1", hashlib.sha256).digest()
        self.ingest = IngestService(self.db, self.keyring, self.records, fingerprint_key, config.max_batch)
        # Modules that keep derived data (AGP caches, FHIR bundles...) register ``hook(tx, patient_id)`` here;
        # erasure calls them inside its transaction so derived copies go with the rows.
        self.erasure_hooks: list[Callable[[Tx, str], None]] = []

    def erase_patient(self, principal: Principal, patient_id: str) -> dict[str, int]:
        """Erasure: crypto-shred, delete rows, run the erasure hooks; audited; all in one transaction."""
        with self.audited(principal, "erase_patient", patient_id) as tx:
            counts = accounts.erase_patient(tx, self.vault, patient_id)
            for hook in self.erasure_hooks:
                hook(tx, patient_id)
        return counts

    @contextmanager
    def audited(self, principal: Principal, action: str, patient_id: str | None = None,
                detail: dict[str, Any] | None = None) -> Iterator[Tx]:
        """A transaction that ends with an audit entry for this access (rolled back together on error)."""
        with self.db.transaction() as tx:
            yield tx
            audit.append(tx, principal.actor, action, patient_id, detail)

    def audit_denied(self, actor: str, action: str, patient_id: str | None, error: CloudSyncError) -> None:
        with self.db.transaction() as tx:
            audit.append(tx, actor, "denied:" + action, patient_id, {"code": error.code})

    def close(self) -> None:
        self.db.close()


# Ids in URLs: what the service issues (letters, digits, '-', '_', '.', ':'); anything else is a 422.
PathId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
# Free text in bodies: no NUL (PostgreSQL text cannot hold it).
NO_NUL = r"^[^\x00]*$"


# --- dependencies --------------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="Clinician token from POST /v1/auth/token, patient token "
                                                   "from enrollment, or an admin token from the CLI.")


def get_service(request: Request) -> Service:
    return request.app.state.service


def current_principal(request: Request,
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    service = get_service(request)
    with service.db.transaction() as tx:
        return accounts.authenticate(tx, credentials.credentials if credentials else None)


def _route_action(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


@dataclass(frozen=True)
class PatientAccess:
    service: Service
    principal: Principal
    patient_id: str


def patient_access(request: Request, patient_id: PathId,
                   principal: Annotated[Principal, Depends(current_principal)]) -> PatientAccess:
    """Authorise ``principal`` for ``patient_id`` and audit the access (denials are audited too)."""
    service = get_service(request)
    action = _route_action(request)
    try:
        query = {k[:64].replace("\x00", ""): v[:200].replace("\x00", "") for k, v in list(request.query_params.items())[:10]}
        with service.audited(principal, action, patient_id, query) as tx:
            accounts.require_patient_access(tx, principal, patient_id)
    except CloudSyncError as error:
        service.audit_denied(principal.actor, action, patient_id, error)
        raise
    return PatientAccess(service, principal, patient_id)


def require_role(*roles: str):  # noqa: ANN201 - a FastAPI dependency factory
    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
        return principal
    return dependency


ServiceDep = Annotated[Service, Depends(get_service)]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
ClinicianDep = Annotated[Principal, Depends(require_role("clinician"))]
PatientDep = Annotated[Principal, Depends(require_role("patient"))]
AccessDep = Annotated[PatientAccess, Depends(patient_access)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


# --- request and response models -----------------------------------------------------------------------------
Id = Annotated[str, Field(min_length=1, max_length=128)]
B64 = Annotated[str, Field(min_length=1, max_length=8_000_000, pattern=r"^[A-Za-z0-9_\-]+={0,2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HeaderModel(_Strict):
    device_id: Id
    device_key_id: Id
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    key_id: Id
    schema_version: Annotated[int, Field(ge=0, le=2**31)]
    payload_type: Annotated[str, Field(min_length=1, max_length=32)]
    suite: Annotated[str, Field(min_length=1, max_length=64)]


class EnvelopeModel(_Strict):
    header: HeaderModel
    ciphertext: B64
    signature: B64


class IngestRequest(_Strict):
    envelopes: Annotated[list[EnvelopeModel], Field(min_length=1, max_length=MAX_BATCH)]


class IngestResponse(BaseModel):
    device_id: str
    acknowledged_seq: int
    stored: list[int]
    duplicates: list[int]


class IngestKeyModel(BaseModel):
    key_id: str
    public_key: str
    suite: str


class EnrollRequest(_Strict):
    code: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
    device_public_key: B64
    signature: B64
    base_seq: Annotated[int, Field(ge=0, le=MAX_SEQ)] = 0


class EnrollResponse(BaseModel):
    device_id: str
    patient_id: str
    device_key_id: str
    acknowledged_seq: int
    ingest_key: IngestKeyModel
    patient_token: str


class RotateRequest(_Strict):
    old_device_key_id: Id
    new_public_key: B64
    old_signature: B64
    new_signature: B64


class TokenRequest(_Strict):
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=NO_NUL)]
    password: Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_NUL)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"


class NameRequest(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class ClinicianRequest(_Strict):
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=NO_NUL)]
    password: Annotated[str, Field(min_length=12, max_length=1024, pattern=NO_NUL)]


class PatientRequest(_Strict):
    display_name: Annotated[str | None, Field(max_length=200, pattern=NO_NUL)] = None


class RecordModel(BaseModel):
    record_type: str
    time_ms: int
    device_id: str
    seq: int
    idx: int
    data: dict[str, Any]


class RecordsResponse(BaseModel):
    patient_id: str
    records: list[RecordModel]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 410, 413, 422)}


# --- the app -------------------------------------------------------------------------------------------------
def create_app(config: ServiceConfig, service: Service | None = None) -> FastAPI:
    """Build the app (opens/creates the database and keys now; ``app.state.service.close()`` releases them)."""
    app = FastAPI(title="GlucoTwin cloud twin", version="1.0.0",
                  description="Encrypted, loss-free ingest from GlucoTwin hubs; clinician access with consent "
                              "and audit.", responses=_ERRORS)
    app.state.service = service or Service(config)

    @app.exception_handler(CloudSyncError)
    async def _typed_error(_request: Request, error: CloudSyncError) -> JSONResponse:
        return JSONResponse(error.to_json(), status_code=error.http_status)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # --- hub-facing --------------------------------------------------------------------------------------
    @app.get("/v1/ingest-key", tags=["hub"], response_model=IngestKeyModel)
    def ingest_key(service: ServiceDep) -> dict[str, str]:
        """The active ingest public key hubs seal envelopes to."""
        return service.keyring.current().to_json()

    @app.post("/v1/enroll", tags=["hub"], response_model=EnrollResponse)
    def enroll(body: EnrollRequest, service: ServiceDep) -> dict[str, Any]:
        """Register a hub's Ed25519 key with a one-time enrollment code (the signature proves possession)."""
        public_raw = b64d(body.device_public_key, "device_public_key")
        signature = b64d(body.signature, "signature")
        with service.db.transaction() as tx:
            device_id, patient_id = keymod.redeem_enrollment(tx, body.code, public_raw, signature, body.base_seq)
            token = accounts.issue_token(tx, "patient", patient_id, patient_id=patient_id,
                                         ttl_s=accounts.PATIENT_TOKEN_TTL_S)
            audit.append(tx, f"device:{device_id}", "enroll", patient_id, {"base_seq": body.base_seq})
        return {"device_id": device_id, "patient_id": patient_id, "device_key_id": keymod.device_key_id(public_raw),
                "acknowledged_seq": body.base_seq, "ingest_key": service.keyring.current().to_json(),
                "patient_token": token}

    @app.post("/v1/devices/{device_id}/keys", tags=["hub"])
    def rotate_device_key(device_id: PathId, body: RotateRequest, service: ServiceDep) -> dict[str, str]:
        """Rotate the hub's signing key: the new key signed by the old (active) and the new key."""
        with service.db.transaction() as tx:
            new_id = keymod.rotate_device_key(tx, device_id, body.old_device_key_id,
                                              b64d(body.new_public_key, "new_public_key"),
                                              b64d(body.old_signature, "old_signature"),
                                              b64d(body.new_signature, "new_signature"))
            audit.append(tx, f"device:{device_id}", "rotate_device_key", None, {"new_device_key_id": new_id})
        return {"device_id": device_id, "device_key_id": new_id}

    @app.post("/v1/ingest/{device_id}", tags=["hub"], response_model=IngestResponse)
    def ingest(device_id: PathId, body: IngestRequest, service: ServiceDep,
               idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
        """Store a batch of envelopes (in sequence order). Duplicates are answered 200; the answer's
        ``acknowledged_seq`` is the contiguous high-water mark the hub may mark as sent."""
        envelopes = [e.model_dump() for e in body.envelopes]
        return service.ingest.ingest(device_id, envelopes, idempotency_key).to_json()

    # --- accounts ----------------------------------------------------------------------------------------
    @app.post("/v1/auth/token", tags=["accounts"], response_model=TokenResponse)
    def token(body: TokenRequest, service: ServiceDep) -> dict[str, str]:
        with service.db.transaction() as tx:
            access_token, principal = accounts.login(tx, body.email, body.password)
            audit.append(tx, principal.actor, "login")
        return {"access_token": access_token, "token_type": "bearer"}

    @app.post("/v1/clinics", tags=["admin"])
    def create_clinic(body: NameRequest, principal: AdminDep, service: ServiceDep) -> dict[str, str]:
        with service.audited(principal, "create_clinic") as tx:
            return {"clinic_id": accounts.create_clinic(tx, body.name)}

    @app.post("/v1/clinics/{clinic_id}/clinicians", tags=["admin"])
    def create_clinician(clinic_id: PathId, body: ClinicianRequest, principal: AdminDep,
                         service: ServiceDep) -> dict[str, str]:
        with service.audited(principal, "create_clinician", None, {"clinic_id": clinic_id}) as tx:
            return {"clinician_id": accounts.create_clinician(tx, clinic_id, body.email, body.password)}

    @app.get("/v1/audit/verify", tags=["admin"])
    def verify_audit(principal: AdminDep, service: ServiceDep) -> dict[str, Any]:
        return {"ok": True, "entries": audit.verify(service.db)}

    @app.post("/v1/ingest-keys/rotate", tags=["admin"], response_model=IngestKeyModel)
    def rotate_ingest_key(principal: AdminDep, service: ServiceDep) -> dict[str, str]:
        key = service.keyring.rotate()
        with service.audited(principal, "rotate_ingest_key", None, {"key_id": key.key_id}):
            pass
        return key.to_json()

    # --- clinicians --------------------------------------------------------------------------------------
    @app.post("/v1/patients", tags=["clinician"])
    def create_patient(body: PatientRequest, principal: ClinicianDep, service: ServiceDep) -> dict[str, str]:
        """Register a patient at the clinician's clinic (consent for that clinic recorded in person)."""
        with service.db.transaction() as tx:
            patient_id = accounts.create_patient(tx, principal.clinic_id or "", body.display_name)
            audit.append(tx, principal.actor, "create_patient", patient_id)
        return {"patient_id": patient_id}

    @app.get("/v1/patients", tags=["clinician"])
    def list_patients(principal: ClinicianDep, service: ServiceDep) -> dict[str, Any]:
        with service.audited(principal, "list_patients") as tx:
            rows = accounts.consented_patients(tx, principal.clinic_id or "")
        return {"patients": [{"patient_id": p, "display_name": n} for p, n in rows]}

    @app.post("/v1/patients/{patient_id}/enrollment-codes", tags=["clinician"])
    def enrollment_code(access: AccessDep) -> dict[str, Any]:
        """A one-time code the patient types into the hub (valid 7 days)."""
        if access.principal.role != "clinician":
            raise Forbidden("enrollment codes are issued by the clinic")
        with access.service.db.transaction() as tx:
            code = keymod.create_enrollment_code(tx, access.patient_id, access.principal.clinic_id or "")
        return {"code": code, "expires_in_s": keymod.ENROLLMENT_TTL_S}

    @app.get("/v1/patients/{patient_id}/records", tags=["clinician"], response_model=RecordsResponse)
    def patient_records(access: AccessDep,
                        record_type: Annotated[list[str] | None, Query(max_length=len(RECORD_TYPES))] = None,
                        start_ms: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                        end_ms: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> dict[str, Any]:
        """Decrypted records of one patient, by type (repeatable) and time range [start_ms, end_ms)."""
        unknown = set(record_type or ()) - set(RECORD_TYPES)
        if unknown:
            raise BadRequest(f"unknown record types; known: {list(RECORD_TYPES)}")
        rows = access.service.records.read(access.patient_id, record_type, start_ms, end_ms, limit)
        return {"patient_id": access.patient_id, "records": [r.to_json() for r in rows]}

    @app.post("/v1/devices/{device_id}/revoke", tags=["clinician"])
    def revoke_device(device_id: PathId, request: Request, principal: PrincipalDep,
                      service: ServiceDep) -> dict[str, Any]:
        """Revoke a hub (lost or stolen): by the patient or a clinician with consent."""
        with service.db.transaction() as tx:
            row = tx.one("SELECT patient_id FROM devices WHERE device_id = ?", (device_id,))
        if row is None:
            raise NotFound(f"device {device_id!r} is not enrolled")
        try:
            with service.audited(principal, "revoke_device", row[0], {"device_id": device_id}) as tx:
                accounts.require_patient_access(tx, principal, row[0])
                keymod.revoke_device(tx, device_id)
        except CloudSyncError as error:
            service.audit_denied(principal.actor, "revoke_device", row[0], error)
            raise
        return {"device_id": device_id, "revoked": True}

    # --- patients ----------------------------------------------------------------------------------------
    @app.put("/v1/patients/{patient_id}/consents/{clinic_id}", tags=["patient"])
    def grant_consent(patient_id: PathId, clinic_id: PathId, principal: PatientDep, service: ServiceDep) -> dict[str, Any]:
        _own(principal, patient_id)
        with service.audited(principal, "grant_consent", patient_id, {"clinic_id": clinic_id}) as tx:
            accounts.grant_consent(tx, patient_id, clinic_id)
        return {"patient_id": patient_id, "clinic_id": clinic_id, "consent": True}

    @app.delete("/v1/patients/{patient_id}/consents/{clinic_id}", tags=["patient"])
    def revoke_consent(patient_id: PathId, clinic_id: PathId, principal: PatientDep, service: ServiceDep) -> dict[str, Any]:
        _own(principal, patient_id)
        with service.audited(principal, "revoke_consent", patient_id, {"clinic_id": clinic_id}) as tx:
            accounts.revoke_consent(tx, patient_id, clinic_id)
        return {"patient_id": patient_id, "clinic_id": clinic_id, "consent": False}

    @app.delete("/v1/patients/{patient_id}", tags=["patient"])
    def erase(patient_id: PathId, principal: PatientDep, service: ServiceDep) -> dict[str, Any]:
        """Erasure (GDPR art. 17): crypto-shred the patient's data key and delete the rows."""
        _own(principal, patient_id)
        counts = service.erase_patient(principal, patient_id)
        return {"patient_id": patient_id, "erased": True, "deleted": counts}

    for router in config.extra_routers:
        app.include_router(router)
    return app


def _own(principal: Principal, patient_id: str) -> None:
    if principal.patient_id != patient_id:
        raise Forbidden("a patient token acts for that patient only")
