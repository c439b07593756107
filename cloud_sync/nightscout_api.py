"""A read-only, Nightscout-compatible API (v1) over one patient's cloud data.

Lets Nightscout clients (Home Assistant's Nightscout integration, watch faces, xDrip+ followers, Nightscout
reporters) read a patient's GlucoTwin data with a per-patient READ-ONLY secret:

    GET /api/v1/entries[.json]?count=10&find[date][$gte]=<epoch ms>     newest first, type "sgv"
    GET /api/v1/entries/sgv[.json]                                       same
    GET /api/v1/treatments[.json]?count=10&find[created_at][$gte]=<ISO or epoch ms>
    GET /api/v1/devicestatus[.json]?count=10
    GET /api/v1/status[.json]

Authentication, as Nightscout: header ``api-secret: <SHA-1 hex of the secret>`` or query ``?token=<secret>``
(or header ``api-secret: token=<secret>``, as py-nightscout sends a token).
The secret itself decides the patient (a Nightscout site serves one person), so the paths are Nightscout's.
Secrets are 32 random bytes; the service stores only their SHA-1 (a preimage search on 256 random bits is
infeasible, and SHA-1 is what the header carries). Issue and revoke them with

    POST   /v1/patients/{patient_id}/nightscout-tokens            (the patient, or a clinician with consent)
    DELETE /v1/patients/{patient_id}/nightscout-tokens/{token_id}

Every read is written to the audit log (actor ``nightscout:<token_id>``, never the secret); refusals too.
Only GET exists: writes answer 405.

Formatting (pure, :func:`format_entries`, :func:`format_treatments`, :func:`format_devicestatus`):
``delta`` is the change in mg/dL from the previous reading when that reading is at most 15 min older, else 0
with ``direction`` "NONE" (Home Assistant's client fails on entries without ``delta``). ``direction`` comes
from the rate delta/minutes with Dexcom's bands (mg/dL/min): >= 3 DoubleUp, >= 2 SingleUp, >= 1 FortyFiveUp,
> -1 Flat, > -2 FortyFiveDown, > -3 SingleDown, else DoubleDown. ``noise`` is 1 (the CGM Service does not
report a noise level). Boluses with carbs within 15 min are "Meal Bolus", other boluses "Correction Bolus",
carbs alone "Carb Correction", basal deliveries with a duration "Temp Basal" (``absolute`` = U/h).
``devicestatus`` is Loop-shaped: ``loop.iob``, ``loop.cob`` from the twin's estimates, and
``loop.predicted`` when the twin snapshot carries ``forecast_<minutes>_min_mg_dl`` values.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from cloud_sync.envelope import TIME_MS_MAX
from cloud_sync.errors import CloudSyncError, Forbidden, NotFound, Unauthenticated
from cloud_sync.service.app import AccessDep, Service, get_service
from cloud_sync.service.records import PatientRecord
from cloud_sync.service.storage import Database, Tx

__all__ = [
    "router", "ensure_schema", "issue_read_token", "revoke_read_token", "resolve_secret", "secret_sha1",
    "erase_patient_tokens",
    "direction_for_rate", "format_entries", "format_treatments", "format_devicestatus", "status_json",
    "DIRECTIONS", "NightscoutToken",
]

SERVER_NAME = "GlucoTwin"
VERSION = "15.0.0-glucotwin"  # Nightscout clients compare major versions; 15 is the current API v1 line
MAX_DELTA_GAP_MS = 15 * 60_000
MEAL_BOLUS_WINDOW_MS = 15 * 60_000
DEFAULT_COUNT = 10
MAX_COUNT = 10_000
DIRECTIONS = ("DoubleUp", "SingleUp", "FortyFiveUp", "Flat", "FortyFiveDown", "SingleDown", "DoubleDown")
TREND_NUMBER = {name: i + 1 for i, name in enumerate(DIRECTIONS)} | {"NONE": 0}
_SCHEMA = ("""CREATE TABLE IF NOT EXISTS nightscout_tokens (
    token_id TEXT PRIMARY KEY, secret_sha1 TEXT NOT NULL UNIQUE, patient_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL, revoked_ms BIGINT)""",)


# --- tokens --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NightscoutToken:
    token_id: str
    patient_id: str


def ensure_schema(db: Database) -> None:
    """Create this module's own table (idempotent; SQLite and PostgreSQL)."""
    with db.transaction() as tx:
        for statement in _SCHEMA:
            tx.execute(statement)


def secret_sha1(secret: str) -> str:
    return hashlib.sha1(secret.encode()).hexdigest()


def issue_read_token(tx: Tx, patient_id: str) -> tuple[str, str]:
    """(token_id, secret). The secret is shown once; only its SHA-1 is stored."""
    token_id = "ns-" + secrets.token_hex(6)
    secret = "readable-" + secrets.token_hex(32)
    tx.execute("INSERT INTO nightscout_tokens (token_id, secret_sha1, patient_id, created_ms) VALUES (?, ?, ?, ?)",
               (token_id, secret_sha1(secret), patient_id, int(time.time() * 1000)))
    return token_id, secret


def revoke_read_token(tx: Tx, patient_id: str, token_id: str) -> None:
    changed = tx.execute("UPDATE nightscout_tokens SET revoked_ms = ? WHERE token_id = ? AND patient_id = ? "
                         "AND revoked_ms IS NULL", (int(time.time() * 1000), token_id, patient_id))
    if not changed:
        raise NotFound(f"no active Nightscout token {token_id!r} for this patient")


def erase_patient_tokens(tx: Tx, patient_id: str) -> None:
    """Erasure hook (``Service.erasure_hooks``): the patient's Nightscout secrets go with the patient."""
    tx.execute("DELETE FROM nightscout_tokens WHERE patient_id = ?", (patient_id,))


def resolve_secret(tx: Tx, api_secret_sha1: str | None, token: str | None) -> NightscoutToken:
    """The token behind ``api-secret`` (SHA-1 hex) or ``token`` (the secret); ``Unauthenticated`` otherwise.

    ``api-secret: token=<secret>`` is accepted too (what py-nightscout, Home Assistant's client, sends when
    configured with a token instead of an API secret).
    """
    if api_secret_sha1 and api_secret_sha1.startswith("token=") and not token:
        token, api_secret_sha1 = api_secret_sha1[len("token="):], None
    if api_secret_sha1 and re.fullmatch(r"[0-9a-fA-F]{40}", api_secret_sha1.strip()):
        digest = api_secret_sha1.strip().lower()
    elif token and len(token) <= 200:
        digest = secret_sha1(token)
    else:
        raise Unauthenticated("Nightscout API: send header api-secret (SHA-1 of the secret) or ?token=<secret>")
    row = tx.one("SELECT t.token_id, t.patient_id, t.secret_sha1, p.erased_ms FROM nightscout_tokens t "
                 "JOIN patients p ON p.patient_id = t.patient_id WHERE t.secret_sha1 = ? AND t.revoked_ms IS NULL",
                 (digest,))
    if row is None or not hmac.compare_digest(row[2], digest) or row[3] is not None:
        raise Unauthenticated("Nightscout API: unknown or revoked secret")
    return NightscoutToken(row[0], row[1])


# --- pure formatting -----------------------------------------------------------------------------------------
def _iso(time_ms: int) -> str:
    stamp = datetime.fromtimestamp(time_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _object_id(*parts: object) -> str:
    """A stable 24-hex id (Mongo ObjectId-shaped) so clients can deduplicate."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def direction_for_rate(rate_mg_dl_per_min: float) -> str:
    r = rate_mg_dl_per_min
    if r >= 3:
        return "DoubleUp"
    if r >= 2:
        return "SingleUp"
    if r >= 1:
        return "FortyFiveUp"
    if r > -1:
        return "Flat"
    if r > -2:
        return "FortyFiveDown"
    if r > -3:
        return "SingleDown"
    return "DoubleDown"


def format_entries(readings: Sequence[tuple[int, float, str]], previous: tuple[int, float] | None = None
                   ) -> list[dict[str, Any]]:
    """Nightscout ``sgv`` entries, NEWEST FIRST, from (time_ms, mg/dL, device_id) in ascending time.

    ``previous`` is the reading just before the first one (so the oldest entry gets a delta too).
    """
    out = []
    prev = previous
    for time_ms, glucose, device_id in readings:
        sgv = int(round(glucose))
        if prev is not None and 0 < time_ms - prev[0] <= MAX_DELTA_GAP_MS:
            delta = float(sgv - int(round(prev[1])))
            direction = direction_for_rate(delta / ((time_ms - prev[0]) / 60_000))
        else:
            delta, direction = 0.0, "NONE"
        out.append({"_id": _object_id("sgv", device_id, time_ms), "type": "sgv", "sgv": sgv, "date": time_ms,
                    "dateString": _iso(time_ms), "sysTime": _iso(time_ms), "direction": direction,
                    "trend": TREND_NUMBER[direction], "delta": delta, "device": f"glucotwin://hub/{device_id}",
                    "noise": 1, "utcOffset": 0})
        prev = (time_ms, glucose)
    out.reverse()
    return out


def format_treatments(insulin: Iterable[PatientRecord], carbs: Iterable[PatientRecord]) -> list[dict[str, Any]]:
    """Nightscout treatments, newest first."""
    carb_list = sorted(carbs, key=lambda r: r.time_ms)
    used: set[int] = set()
    out: list[dict[str, Any]] = []

    def base(rec: PatientRecord, event: str) -> dict[str, Any]:
        return {"_id": _object_id("treatment", rec.device_id, rec.seq, rec.idx), "eventType": event,
                "created_at": _iso(rec.time_ms), "date": rec.time_ms, "mills": rec.time_ms,
                "enteredBy": "glucotwin", "device": f"glucotwin://hub/{rec.device_id}", "utcOffset": 0}

    for rec in sorted(insulin, key=lambda r: r.time_ms):
        units = float(rec.data.get("insulin_u", 0.0))
        kind = rec.data.get("kind")
        duration_min = float(rec.data.get("duration_min", 0.0) or 0.0)
        if kind == "basal":
            if duration_min <= 0:
                continue  # a basal delivery without a duration has no Nightscout shape (not a temp basal)
            doc = base(rec, "Temp Basal")
            rate_u_per_h = round(units / (duration_min / 60.0), 4)
            doc.update({"duration": duration_min, "absolute": rate_u_per_h, "rate": rate_u_per_h})
            out.append(doc)
            continue
        match = next((i for i, c in enumerate(carb_list) if i not in used
                      and abs(c.time_ms - rec.time_ms) <= MEAL_BOLUS_WINDOW_MS), None)
        if match is not None:
            used.add(match)
            doc = base(rec, "Meal Bolus")
            doc.update({"insulin": units, "carbs": float(carb_list[match].data.get("carbs_g", 0.0))})
        else:
            doc = base(rec, "Correction Bolus")
            doc["insulin"] = units
        out.append(doc)
    for i, rec in enumerate(carb_list):
        if i not in used:
            doc = base(rec, "Carb Correction")
            doc["carbs"] = float(rec.data.get("carbs_g", 0.0))
            out.append(doc)
    out.sort(key=lambda d: d["date"], reverse=True)
    return out


_FORECAST = re.compile(r"^forecast_(\d+)_min_mg_dl$")


def format_devicestatus(snapshots: Iterable[PatientRecord]) -> list[dict[str, Any]]:
    """Loop-shaped device status documents from twin-parameter snapshots, newest first."""
    out = []
    for rec in sorted(snapshots, key=lambda r: r.time_ms, reverse=True):
        params: Mapping[str, float] = rec.data.get("parameters", {})
        stamp = _iso(rec.time_ms)
        loop: dict[str, Any] = {"name": "GlucoTwin", "timestamp": stamp}
        if "insulin_on_board_u" in params:
            loop["iob"] = {"timestamp": stamp, "iob": round(float(params["insulin_on_board_u"]), 3)}
        if "carbs_on_board_g" in params:
            loop["cob"] = {"timestamp": stamp, "cob": round(float(params["carbs_on_board_g"]), 1)}
        horizon = sorted((int(m.group(1)), float(v)) for k, v in params.items() if (m := _FORECAST.match(k)))
        if horizon:
            loop["predicted"] = {"startDate": stamp, "values": [int(round(v)) for _, v in horizon],
                                 "minutes": [m for m, _ in horizon]}
        out.append({"_id": _object_id("devicestatus", rec.device_id, rec.seq, rec.idx),
                    "device": f"glucotwin://hub/{rec.device_id}", "created_at": stamp, "mills": rec.time_ms,
                    "loop": loop})
    return out


def status_json(now_ms: int) -> dict[str, Any]:
    return {
        "status": "ok", "name": SERVER_NAME, "version": VERSION, "serverTime": _iso(now_ms),
        "serverTimeEpoch": now_ms, "apiEnabled": True, "careportalEnabled": False, "boluscalcEnabled": False,
        "head": "glucotwin", "settings": {
            "units": "mg/dl", "timeFormat": 24, "customTitle": SERVER_NAME, "theme": "default",
            "thresholds": {"bgHigh": 250, "bgTargetTop": 180, "bgTargetBottom": 70, "bgLow": 54},
            "enable": ["iob", "cob", "loop"], "authDefaultRoles": ""},
        "extendedSettings": {}, "authorized": {"role": ["readable"], "scope": ["api:*:read"]},
        "runtimeState": "loaded",
    }


# --- query parameters ----------------------------------------------------------------------------------------
def _count(request: Request) -> int:
    raw = request.query_params.get("count", str(DEFAULT_COUNT))
    try:
        count = int(raw)
    except ValueError:
        raise BadQuery(f"count must be an integer, got {raw!r}") from None
    if not 1 <= count <= MAX_COUNT:
        raise BadQuery(f"count must be between 1 and {MAX_COUNT}")
    return count


def _time_bound(raw: str) -> int:
    """Epoch ms, or an ISO 8601 date/time (Nightscout clients send both)."""
    raw = raw.strip()
    if re.fullmatch(r"-?\d{1,30}(\.\d{1,30})?", raw):
        return min(max(int(float(raw)), 0), TIME_MS_MAX)  # clamp: any real query fits, no integer overflow
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return min(max(int(parsed.timestamp() * 1000), 0), TIME_MS_MAX)
    except (ValueError, OverflowError):
        raise BadQuery(f"not a time: {raw[:40]!r} (epoch ms or ISO 8601)") from None


def _range(request: Request, field: str) -> tuple[int | None, int | None]:
    """[start, end) from find[field][$gte|$gt|$lte|$lt]."""
    start = end = None
    q = request.query_params
    if (v := q.get(f"find[{field}][$gte]")) is not None:
        start = _time_bound(v)
    if (v := q.get(f"find[{field}][$gt]")) is not None:
        start = _time_bound(v) + 1
    if (v := q.get(f"find[{field}][$lte]")) is not None:
        end = _time_bound(v) + 1
    if (v := q.get(f"find[{field}][$lt]")) is not None:
        end = _time_bound(v)
    return start, end


class BadQuery(CloudSyncError):
    code = "bad_query"
    http_status = 400


# --- routes --------------------------------------------------------------------------------------------------
router = APIRouter(tags=["nightscout"])


def nightscout_reader(request: Request, token: str | None = None,
                      api_secret: Annotated[str | None, Header(alias="api-secret")] = None,
                      ) -> tuple[Service, NightscoutToken]:
    """Authenticate a Nightscout client and audit the read (refusals are audited too)."""
    service = get_service(request)
    route = request.scope.get("route")
    action = f"{request.method} {getattr(route, 'path', request.url.path)}"
    detail = {k: v for k, v in request.query_params.items() if k not in ("token", "secret")}
    try:
        with service.db.transaction() as tx:
            reader = resolve_secret(tx, api_secret, token)
            from cloud_sync.service import audit  # local: keeps this module importable for pure use
            audit.append(tx, f"nightscout:{reader.token_id}", action, reader.patient_id, detail)
    except CloudSyncError as error:
        service.audit_denied("nightscout:unknown", action, None, error)
        raise
    return service, reader


ReaderDep = Annotated[tuple[Service, NightscoutToken], Depends(nightscout_reader)]


def _latest_start(service: Service, patient_id: str, record_types: Sequence[str], count: int,
                  end_ms: int | None) -> int | None:
    """Time of the ``count``-th newest record (row metadata is in clear for range queries)."""
    marks = ", ".join("?" for _ in record_types)
    sql = f"SELECT time_ms FROM records WHERE patient_id = ? AND record_type IN ({marks})"
    params: list[Any] = [patient_id, *record_types]
    if end_ms is not None:
        sql += " AND time_ms < ?"
        params.append(end_ms)
    sql += " ORDER BY time_ms DESC LIMIT 1 OFFSET ?"
    params.append(count - 1)
    with service.db.transaction() as tx:
        row = tx.one(sql, params)
    return None if row is None else int(row[0])


def _read_window(service: Service, patient_id: str, record_types: Sequence[str], request: Request,
                 field: str) -> tuple[list[PatientRecord], int]:
    count = _count(request)
    start, end = _range(request, field)
    # only the newest ``count`` records are answered: never decrypt more than those
    newest = _latest_start(service, patient_id, record_types, count, end)
    start = max(start or 0, newest or 0)
    rows = service.records.read(patient_id, list(record_types), start, end)
    return rows, count


@router.get("/api/v1/entries")
@router.get("/api/v1/entries.json")
@router.get("/api/v1/entries/sgv")
@router.get("/api/v1/entries/sgv.json")
def entries(request: Request, reader: ReaderDep) -> JSONResponse:
    """CGM readings as Nightscout ``sgv`` entries, newest first."""
    service, who = reader
    rows, count = _read_window(service, who.patient_id, ["glucose"], request, "date")
    rows = rows[-count:]
    previous = None
    if rows:
        before = service.records.read(who.patient_id, ["glucose"], max(0, rows[0].time_ms - MAX_DELTA_GAP_MS),
                                      rows[0].time_ms)
        if before:
            previous = (before[-1].time_ms, float(before[-1].data["glucose_mg_dl"]))
    readings = [(r.time_ms, float(r.data["glucose_mg_dl"]), r.device_id) for r in rows]
    return JSONResponse(format_entries(readings, previous))


@router.get("/api/v1/treatments")
@router.get("/api/v1/treatments.json")
def treatments(request: Request, reader: ReaderDep) -> JSONResponse:
    """Boluses, carbs and temp basals, newest first. A meal bolus merges two records (insulin + carbs), so
    up to ``2 * count`` records are read, plus 15 min before them so that a bolus at the window's edge still
    finds its carbs; documents before the window are dropped."""
    service, who = reader
    count = _count(request)
    start, end = _range(request, "created_at")
    newest = _latest_start(service, who.patient_id, ["insulin", "carbs"], 2 * count, end)
    window_start = max(start or 0, newest or 0)
    rows = service.records.read(who.patient_id, ["insulin", "carbs"], max(0, window_start - MEAL_BOLUS_WINDOW_MS),
                                end)
    docs = format_treatments([r for r in rows if r.record_type == "insulin"],
                             [r for r in rows if r.record_type == "carbs"])
    return JSONResponse([d for d in docs if d["date"] >= window_start][:count])


@router.get("/api/v1/devicestatus")
@router.get("/api/v1/devicestatus.json")
def devicestatus(request: Request, reader: ReaderDep) -> JSONResponse:
    service, who = reader
    rows, count = _read_window(service, who.patient_id, ["twin_parameters"], request, "created_at")
    return JSONResponse(format_devicestatus(rows)[:count])


@router.get("/api/v1/status")
@router.get("/api/v1/status.json")
def status(reader: ReaderDep) -> JSONResponse:
    return JSONResponse(status_json(int(time.time() * 1000)))


# --- token management (behind the service's own auth, consent and audit) ------------------------------------
@router.post("/v1/patients/{patient_id}/nightscout-tokens", tags=["patient"])
def create_token(access: AccessDep) -> dict[str, str]:
    """A read-only Nightscout secret for this patient (shown once). Give the client the service URL and
    either the secret (``?token=``) or its SHA-1 as ``api-secret``."""
    if access.principal.role not in ("patient", "clinician"):
        raise Forbidden("Nightscout tokens are issued by the patient or a consented clinician")
    with access.service.audited(access.principal, "create_nightscout_token", access.patient_id) as tx:
        token_id, secret = issue_read_token(tx, access.patient_id)
    return {"token_id": token_id, "secret": secret, "api_secret_sha1": secret_sha1(secret)}


@router.delete("/v1/patients/{patient_id}/nightscout-tokens/{token_id}", tags=["patient"])
def delete_token(token_id: str, access: AccessDep) -> dict[str, Any]:
    with access.service.audited(access.principal, "revoke_nightscout_token", access.patient_id,
                                {"token_id": token_id}) as tx:
        revoke_read_token(tx, access.patient_id, token_id)
    return {"token_id": token_id, "revoked": True}
