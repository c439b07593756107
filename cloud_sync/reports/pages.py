"""Clinician pages, server-rendered with Jinja2 and inline SVG (no JavaScript), plus the FHIR export route.

Routes (``router``; mount with :func:`cloud_sync.reports.routes.register_routes`):

    GET  /clinic/login, POST /clinic/login, POST /clinic/logout     session cookie for browsers
    POST /clinic/session-tickets                                    one-time link that opens a page logged in
    GET  /clinic/session?ticket=...&next=/clinic/...                (redeems the link, sets the cookie)
    GET  /clinic/patients                                           consented patients with flags
    GET  /clinic/patients/{id}                                      one-page AGP report (printable)
    GET  /clinic/patients/{id}/agp-modal.svg | agp-tir.svg | agp-daily.svg
    GET  /clinic/patients/{id}/twin                                 twin parameters over time
    GET  /clinic/patients/{id}/advice                               recommendations and whether followed
    GET  /api/patients/{id}/fhir, GET /fhir/Patient/{id}/$cgm-bundle   FHIR R4 CGM transaction Bundle

Authentication: the service's bearer token (``Authorization: Bearer``) or the ``glucotwin_session`` cookie
(HttpOnly, SameSite=Lax, Secure over https) holding a clinician token from the login form or a ticket.
Authorisation is the service's: :func:`cloud_sync.service.accounts.require_patient_access` (clinicians need
the patient's standing consent; patients see themselves; admins see no health data). Every access and
every refusal is appended to the hash-chained audit log.

Query parameters of the report pages: ``days`` (1-90, default 14), ``end`` (ISO date/time or epoch ms,
default now) and ``tz`` (IANA zone for the modal day and daily strips, default UTC).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cloud_sync.envelope import TIME_MS_MAX
from cloud_sync.errors import CloudSyncError, Forbidden, NotFound, Unauthenticated
from cloud_sync.fhir_export import CgmExportInput, bundle_json
from cloud_sync.reports import svg
from cloud_sync.reports.agp import AgpReport, build_agp
from cloud_sync.reports.clinical import PARAMETER_UNITS, PatientFlags, advice_log, compute_flags, parameter_series
from cloud_sync.service import accounts, audit
from cloud_sync.service.accounts import Principal
from cloud_sync.service.app import PathId, Service, get_service
from cloud_sync.service.records import PatientRecord
from cloud_sync.service.storage import Database

__all__ = ["router", "ensure_schema", "LoginRequired", "BadReportQuery", "PatientData", "load_patient_data",
           "render", "SESSION_COOKIE", "issue_ticket", "templates"]

SESSION_COOKIE = "glucotwin_session"
TICKET_TTL_MS = 120_000
DAY_MS = 86_400_000
TEMPLATES_DIR = Path(__file__).with_name("templates")
templates = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
_SCHEMA = ("""CREATE TABLE IF NOT EXISTS page_tickets (
    ticket_hash TEXT PRIMARY KEY, clinician_id TEXT NOT NULL, clinic_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, used_ms BIGINT)""",)


class LoginRequired(Unauthenticated):
    """No valid session: browsers are redirected to the login page, API clients get 401 JSON."""

    code = "login_required"


class BadReportQuery(CloudSyncError):
    code = "bad_report_query"
    http_status = 400


def ensure_schema(db: Database) -> None:
    with db.transaction() as tx:
        for statement in _SCHEMA:
            tx.execute(statement)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fmt_time(time_ms: int | None, tz: Any = timezone.utc) -> str:
    if time_ms is None:
        return "never"
    return datetime.fromtimestamp(time_ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


def _fmt(value: float, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


templates.filters["fmt"] = _fmt
templates.globals["fmt_time"] = _fmt_time


def render(name: str, **context: Any) -> str:
    return templates.get_template(name).render(**context)


# --- authentication for pages --------------------------------------------------------------------------------
def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def page_principal(request: Request) -> Principal:
    service = get_service(request)
    try:
        with service.db.transaction() as tx:
            return accounts.authenticate(tx, _token_from(request))
    except Unauthenticated as error:
        raise LoginRequired(error.message) from None


PagePrincipal = Annotated[Principal, Depends(page_principal)]


@dataclass(frozen=True)
class PageAccess:
    service: Service
    principal: Principal
    patient_id: str


def page_access(request: Request, patient_id: PathId, principal: PagePrincipal) -> PageAccess:
    """Consent check + audit entry for this route (the same rules as the service's ``patient_access``)."""
    service = get_service(request)
    route = request.scope.get("route")
    action = f"{request.method} {getattr(route, 'path', request.url.path)}"
    try:
        with service.audited(principal, action, patient_id, dict(request.query_params)) as tx:
            accounts.require_patient_access(tx, principal, patient_id)
    except CloudSyncError as error:
        service.audit_denied(principal.actor, action, patient_id, error)
        raise
    return PageAccess(service, principal, patient_id)


PageAccessDep = Annotated[PageAccess, Depends(page_access)]


# --- report window -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int
    days: int
    tz: Any

    @property
    def tz_name(self) -> str:
        return str(getattr(self.tz, "key", "UTC"))


def report_window(days: int = 14, end: str | None = None, tz: str = "UTC") -> Window:
    if not 1 <= days <= 90:
        raise BadReportQuery("days must be between 1 and 90")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadReportQuery(f"unknown time zone {tz!r} (use an IANA name such as Europe/Paris)") from None
    if end is None:
        end_ms = _now_ms()
    elif end.strip().isdigit() and len(end.strip()) <= 15:
        end_ms = int(end)
    else:
        try:
            parsed = datetime.fromisoformat(end.strip().replace("Z", "+00:00"))
            end_ms = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).timestamp() * 1000)
        except (ValueError, OverflowError):
            raise BadReportQuery(f"end must be an ISO date/time or epoch ms, got {end[:40]!r}") from None
    if not 90 * DAY_MS <= end_ms <= TIME_MS_MAX:
        raise BadReportQuery("end must be between 1970-04-01 and the year 3000")
    return Window(end_ms - days * DAY_MS, end_ms, days, zone)


WindowDep = Annotated[Window, Depends(report_window)]


# --- data ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientData:
    patient_id: str
    display_name: str | None
    window: Window
    records: list[PatientRecord]
    last_sync_ms: int | None

    def of(self, record_type: str) -> list[PatientRecord]:
        return [r for r in self.records if r.record_type == record_type]

    @property
    def readings(self) -> list[tuple[int, float]]:
        return [(r.time_ms, float(r.data["glucose_mg_dl"])) for r in self.of("glucose")]

    def agp(self) -> AgpReport:
        return build_agp(self.readings, self.window.start_ms, self.window.end_ms, self.window.tz)

    def flags(self, report: AgpReport | None = None, now_ms: int | None = None) -> PatientFlags:
        report = report or self.agp()
        alerts = [{"time_ms": r.time_ms, **r.data} for r in self.of("alert")]
        return compute_flags(report.summary, self.readings, self.last_sync_ms,
                             now_ms if now_ms is not None else self.window.end_ms, alerts)


def load_patient_data(service: Service, patient_id: str, window: Window,
                      record_types: Iterable[str] | None = None) -> PatientData:
    """Decrypted records of the window plus the name and the last time anything synced."""
    with service.db.transaction() as tx:
        row = tx.one("SELECT display_name FROM patients WHERE patient_id = ?", (patient_id,))
        sync = tx.one("SELECT MAX(received_ms) FROM envelopes WHERE patient_id = ?", (patient_id,))
    if row is None:
        raise NotFound(f"patient {patient_id!r} does not exist")
    records = service.records.read(patient_id, list(record_types) if record_types is not None else None,
                                   window.start_ms, window.end_ms)
    return PatientData(patient_id, row[0], window, records, None if sync is None or sync[0] is None else int(sync[0]))


# --- routes --------------------------------------------------------------------------------------------------
router = APIRouter(tags=["clinician pages"])


def _html(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status_code, headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def _svg(text: str) -> Response:
    return Response(text, media_type="image/svg+xml", headers={"Cache-Control": "no-store",
                                                               "X-Content-Type-Options": "nosniff"})


def safe_next(next_path: str | None) -> str:
    """Only local clinic pages (no open redirect, no header injection)."""
    if next_path and next_path.startswith("/clinic/") and "//" not in next_path and "\\" not in next_path \
            and next_path.isprintable() and len(next_path) <= 500:
        return next_path
    return "/clinic/patients"


def _set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=accounts.CLINICIAN_TOKEN_TTL_S, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")


@router.get("/clinic/login", response_class=HTMLResponse)
def login_form(next: str | None = None) -> HTMLResponse:  # noqa: A002
    return _html(render("login.html", next=safe_next(next), error=None))


@router.post("/clinic/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    email = (form.get("email") or [""])[0]
    password = (form.get("password") or [""])[0]
    target = safe_next((form.get("next") or [None])[0])
    service = get_service(request)
    try:
        with service.db.transaction() as tx:
            token, principal = accounts.login(tx, email, password)
            audit.append(tx, principal.actor, "login:page")
    except Unauthenticated:
        service.audit_denied("anonymous", "login:page", None, Unauthenticated("wrong email or password"))
        return _html(render("login.html", next=target, error="Wrong email or password."), status_code=401)
    response = RedirectResponse(target, status_code=303)
    _set_session(response, request, token)
    return response


@router.post("/clinic/logout")
def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service = get_service(request)
        with service.db.transaction() as tx:
            tx.execute("UPDATE tokens SET revoked_ms = ? WHERE token_hash = ? AND revoked_ms IS NULL",
                       (_now_ms(), hashlib.sha256(token.encode()).hexdigest()))
    response = RedirectResponse("/clinic/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def issue_ticket(service: Service, principal: Principal) -> str:
    """A one-time ticket (valid 2 min) that opens a browser session for this clinician."""
    if principal.role != "clinician" or principal.clinic_id is None:
        raise Forbidden("session tickets are for clinicians")
    ticket = secrets.token_urlsafe(32)
    now = _now_ms()
    with service.audited(principal, "create_session_ticket") as tx:
        tx.execute("INSERT INTO page_tickets (ticket_hash, clinician_id, clinic_id, created_ms, expires_ms) "
                   "VALUES (?, ?, ?, ?, ?)", (hashlib.sha256(ticket.encode()).hexdigest(), principal.subject_id,
                                              principal.clinic_id, now, now + TICKET_TTL_MS))
    return ticket


@router.post("/clinic/session-tickets")
def create_ticket(request: Request, principal: PagePrincipal, next: str | None = None) -> dict[str, Any]:  # noqa: A002
    """For CLIs and EHR links: a URL that logs a browser in once and opens ``next``."""
    ticket = issue_ticket(get_service(request), principal)
    target = safe_next(next)
    return {"ticket": ticket, "expires_in_s": TICKET_TTL_MS // 1000,
            "url": f"/clinic/session?ticket={ticket}&next={quote(target, safe='/')}"}


@router.get("/clinic/session")
def redeem_ticket(request: Request, ticket: str = "", next: str | None = None) -> Response:  # noqa: A002
    service = get_service(request)
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    now = _now_ms()
    with service.db.transaction() as tx:
        row = tx.one(f"SELECT clinician_id, clinic_id, expires_ms, used_ms FROM page_tickets WHERE ticket_hash = ?"
                     f"{tx.for_update}", (digest,))
        valid = row is not None and row[3] is None and row[2] >= now
        if valid:
            tx.execute("UPDATE page_tickets SET used_ms = ? WHERE ticket_hash = ?", (now, digest))
            token = accounts.issue_token(tx, "clinician", row[0], clinic_id=row[1])
            audit.append(tx, f"clinician:{row[0]}", "login:ticket")
    if not valid:
        service.audit_denied("anonymous", "login:ticket", None, Unauthenticated("ticket unknown, used or expired"))
        raise LoginRequired("this link is unknown, already used or expired")
    response = RedirectResponse(safe_next(next), status_code=303)
    _set_session(response, request, token)
    return response


@router.get("/clinic/patients", response_class=HTMLResponse)
def patient_list(request: Request, principal: PagePrincipal, window: WindowDep) -> HTMLResponse:
    if principal.role != "clinician":
        raise Forbidden("the patient list is for clinicians")
    service = get_service(request)
    with service.db.transaction() as tx:
        patients = accounts.consented_patients(tx, principal.clinic_id or "")
    with service.audited(principal, "GET /clinic/patients", None,
                         {"days": window.days, "patients": [p for p, _ in patients]}):
        pass
    rows = []
    now = _now_ms()
    for patient_id, _name in patients:
        data = load_patient_data(service, patient_id, window, ["glucose", "alert"])
        report = data.agp()
        rows.append({"patient_id": patient_id, "name": data.display_name or patient_id, "summary": report.summary,
                     "flags": data.flags(report, now_ms=now), "last_sync_ms": data.last_sync_ms})
    rows.sort(key=lambda r: (not r["flags"].any, -len(r["flags"].reasons), r["name"]))
    return _html(render("patients.html", rows=rows, window=window, principal=principal))


@router.get("/clinic/patients/{patient_id}", response_class=HTMLResponse)
def agp_page(access: PageAccessDep, window: WindowDep) -> HTMLResponse:
    data = load_patient_data(access.service, access.patient_id, window, ["glucose", "alert"])
    report = data.agp()
    return _html(render(
        "agp.html", data=data, report=report, window=window, flags=data.flags(report, now_ms=_now_ms()),
        tir_svg=svg.tir_bar_svg(report.range_bar), modal_svg=svg.modal_day_svg(report.modal_day),
        daily_svg=svg.daily_profiles_svg(report.days), query=_query(window)))


def _query(window: Window) -> str:
    return f"days={window.days}&end={window.end_ms}&tz={quote(window.tz_name)}"


def _agp_for(access: PageAccess, window: Window) -> AgpReport:
    return load_patient_data(access.service, access.patient_id, window, ["glucose"]).agp()


@router.get("/clinic/patients/{patient_id}/agp-modal.svg")
def agp_modal_svg(access: PageAccessDep, window: WindowDep) -> Response:
    return _svg(svg.modal_day_svg(_agp_for(access, window).modal_day))


@router.get("/clinic/patients/{patient_id}/agp-tir.svg")
def agp_tir_svg(access: PageAccessDep, window: WindowDep) -> Response:
    return _svg(svg.tir_bar_svg(_agp_for(access, window).range_bar))


@router.get("/clinic/patients/{patient_id}/agp-daily.svg")
def agp_daily_svg(access: PageAccessDep, window: WindowDep) -> Response:
    return _svg(svg.daily_profiles_svg(_agp_for(access, window).days))


@router.get("/clinic/patients/{patient_id}/twin", response_class=HTMLResponse)
def twin_page(access: PageAccessDep, window: WindowDep) -> HTMLResponse:
    data = load_patient_data(access.service, access.patient_id, window, ["twin_parameters"])
    series = parameter_series((r.time_ms, r.data.get("parameters", {})) for r in data.records)
    charts = []
    known = list(PARAMETER_UNITS)  # the clinically central ones (insulin sensitivity) first
    def rank(name: str) -> tuple[int, str]:
        return (known.index(name) if name in known else len(known), name)

    for name, points in sorted(series.items(), key=lambda kv: rank(kv[0])):
        label, unit = PARAMETER_UNITS.get(name, (name.replace("_", " "), ""))
        latest = points[-1]
        charts.append({"name": name, "label": label, "unit": unit, "latest": latest, "count": len(points),
                       "svg": svg.parameter_series_svg(points, label, unit)})
    return _html(render("twin.html", data=data, window=window, charts=charts, query=_query(window)))


@router.get("/clinic/patients/{patient_id}/advice", response_class=HTMLResponse)
def advice_page(access: PageAccessDep, window: WindowDep) -> HTMLResponse:
    data = load_patient_data(access.service, access.patient_id, window, ["recommendation", "insulin"])
    recs = [{"time_ms": r.time_ms, **r.data} for r in data.of("recommendation")]
    doses = [(r.time_ms, float(r.data.get("insulin_u", 0.0))) for r in data.of("insulin")
             if r.data.get("kind") == "bolus"]
    rows = advice_log(recs, doses)
    counts = {"followed": sum(r.followed is True for r in rows), "declined": sum(r.followed is False for r in rows),
              "unknown": sum(r.followed is None for r in rows)}
    return _html(render("advice.html", data=data, window=window, rows=rows, counts=counts, query=_query(window)))


def _fhir(access: PageAccess, window: Window, readings: bool) -> Response:
    """The Bundle as built (the tests parse the same builder's output with fhir.resources and check the
    profiles; re-validating thousands of readings per request would cost seconds on a Pi-class server)."""
    data = load_patient_data(access.service, access.patient_id, window, ["glucose"])
    glucose = data.of("glucose")
    export = CgmExportInput(access.patient_id, window.start_ms, window.end_ms,
                            [(r.time_ms, float(r.data["glucose_mg_dl"])) for r in glucose],
                            device_ids=tuple(dict.fromkeys(r.device_id for r in glucose)),
                            reading_device_ids=[r.device_id for r in glucose], include_readings=readings)
    body = json.dumps(bundle_json(export), default=_json_decimal, separators=(",", ":"))
    return Response(body, media_type="application/fhir+json", headers={"Cache-Control": "no-store"})


def _json_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # quantised already: 33.33 stays 33.33
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@router.get("/api/patients/{patient_id}/fhir", tags=["fhir"])
def fhir_bundle(access: PageAccessDep, window: WindowDep, readings: bool = True) -> Response:
    """The period as a FHIR R4 transaction Bundle (HL7 CGM IG 1.0.0), ready for ``$submit-cgm-bundle``."""
    return _fhir(access, window, readings)


@router.get("/fhir/Patient/{patient_id}/$cgm-bundle", tags=["fhir"])
def fhir_bundle_operation(access: PageAccessDep, window: WindowDep, readings: bool = True) -> Response:
    return _fhir(access, window, readings)
