"""FHIR R4 export of a CGM period following the HL7 CGM IG (hl7.fhir.uv.cgm 1.0.0, STU1).

    bundle = build_cgm_bundle(CgmExportInput(patient_id, start_ms, end_ms, readings, device_ids=("hub-1",)))
    json_text = bundle.model_dump_json(exclude_none=True)      # a transaction Bundle ($submit-cgm-bundle)

Built with ``fhir.resources`` 8.3.0's R4B models (wire-compatible with R4 for Observation, Device, Patient
and Bundle). ``fhir.resources`` checks structure and types only; the IG's profile rules (codes, units,
required elements, component slices) are checked by :func:`profile_problems` and the tests.

Contents (one transaction Bundle, ``timestamp`` = export time):

* ``Patient`` - pseudonymous: only ``identifier`` (system :data:`PATIENT_SYSTEM`, the service's patient id).
* ``Device`` per hub (``deviceName``, ``identifier``, ``serialNumber``): the hub that relayed the CGM.
* ``cgm-summary`` Observation (LOINC 107931-8) with ``effectivePeriod`` and ``hasMember`` -> the six below.
* mean glucose 97507-8 (mg/dL), times in ranges 106793-3 (five components 104642-4 <54, 104641-6 54-69,
  97510-2 70-180, 104640-8 181-250, 104639-0 >250, UCUM ``%``, rounded to two decimals), GMI 97506-0 (%),
  CV 104638-2 (%), days of wear 104636-6 (``d``), sensor active 104637-4 (%).
* optionally one sensor reading Observation 99504-3 per reading (``effectiveDateTime``, ``device``).

Deduplication as in the IG: every resource has a deterministic ``identifier`` (``urn:uuid:`` + UUIDv5 of
patient, period and code, or patient, time and code for a reading), the same value is its ``fullUrl`` and
``entry.request.ifNoneExist`` is ``identifier=<system>|<value>``, so re-submitting the same export creates
nothing twice. A metric that cannot be computed (no readings) carries ``dataAbsentReason`` instead of a value.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from cloud_sync.reports.agp import build_agp
from models.glycemic_metrics import GlycemicSummary

__all__ = [
    "CgmExportInput", "build_cgm_bundle", "bundle_json", "profile_problems", "LOINC", "UCUM", "CGM_IG",
    "TIR_COMPONENTS", "SUMMARY_MEMBERS", "PROFILES", "PATIENT_SYSTEM", "DEVICE_SYSTEM", "ID_SYSTEM",
    "deterministic_uuid",
]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CGM_IG = "http://hl7.org/fhir/uv/cgm"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
ID_SYSTEM = "urn:ietf:rfc:3986"
PATIENT_SYSTEM = "urn:glucotwin:patient-id"
DEVICE_SYSTEM = "urn:glucotwin:device-id"
_NAMESPACE = uuid.UUID("6f1c9a52-3b0e-5d3c-9a4e-8c2f0b7d1e64")  # fixed namespace of GlucoTwin FHIR ids

SUMMARY_CODE = "107931-8"
READING_CODE = "99504-3"
PROFILES = {
    "summary": f"{CGM_IG}/StructureDefinition/cgm-summary",
    "97507-8": f"{CGM_IG}/StructureDefinition/cgm-summary-mean-glucose-mass-per-volume",
    "106793-3": f"{CGM_IG}/StructureDefinition/cgm-summary-times-in-ranges",
    "97506-0": f"{CGM_IG}/StructureDefinition/cgm-summary-gmi",
    "104638-2": f"{CGM_IG}/StructureDefinition/cgm-summary-coefficient-of-variation",
    "104636-6": f"{CGM_IG}/StructureDefinition/cgm-summary-days-of-wear",
    "104637-4": f"{CGM_IG}/StructureDefinition/cgm-summary-sensor-active-percentage",
    "reading": f"{CGM_IG}/StructureDefinition/cgm-sensor-reading-mass-per-volume",
    "device": f"{CGM_IG}/StructureDefinition/cgm-device",
    "bundle": f"{CGM_IG}/StructureDefinition/cgm-data-submission-bundle",
}
# (component LOINC, display, GlycemicSummary field) bottom to top, as in the IG's times-in-ranges slices.
TIR_COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("104642-4", "Time in very low range (<54 mg/dL)", "time_below_54_pct"),
    ("104641-6", "Time in low range (54-69 mg/dL)", "time_54_69_pct"),
    ("97510-2", "Time in target range (70-180 mg/dL)", "time_in_range_70_180_pct"),
    ("104640-8", "Time in high range (181-250 mg/dL)", "time_181_250_pct"),
    ("104639-0", "Time in very high range (>250 mg/dL)", "time_above_250_pct"),
)
# (LOINC, display, field, UCUM code, unit text, decimals) of the single-valued summary members.
SUMMARY_MEMBERS: tuple[tuple[str, str, str, str, str, int], ...] = (
    ("97507-8", "Mean glucose [Mass/volume] in Interstitial fluid", "mean_glucose_mg_dl", "mg/dL", "mg/dl", 1),
    ("97506-0", "Glucose management indicator", "gmi_pct", "%", "%", 2),
    ("104638-2", "Glucose coefficient of variation", "cv_pct", "%", "%", 2),
    ("104636-6", "Days of wear", "days_of_wear_d", "d", "days", 2),
    ("104637-4", "Sensor active percentage", "sensor_active_pct", "%", "%", 2),
)


@dataclass(frozen=True)
class CgmExportInput:
    """What one export covers: a patient, a period ``[start_ms, end_ms)`` and its readings (time_ms, mg/dL)."""

    patient_id: str
    period_start_ms: int
    period_end_ms: int
    readings: Sequence[tuple[int, float]]
    device_ids: Sequence[str] = field(default_factory=tuple)
    reading_device_ids: Sequence[str] | None = None  # per reading, parallel to ``readings`` (None: first device)
    include_readings: bool = True
    sample_interval_min: float = 5.0


def deterministic_uuid(*parts: object) -> str:
    """``urn:uuid:`` + UUIDv5 over the parts joined by ``|`` (same inputs, same id, in any process)."""
    return "urn:uuid:" + str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


def _iso(time_ms: int) -> str:
    stamp = datetime.fromtimestamp(time_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _decimal(value: float, decimals: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


def _coding(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _quantity(value: float, ucum: str, unit: str, decimals: int) -> dict[str, Any]:
    return {"value": _decimal(value, decimals), "unit": unit, "system": UCUM, "code": ucum}


def _absent() -> dict[str, Any]:
    return {"coding": [{"system": DATA_ABSENT, "code": "not-performed", "display": "Not Performed"}],
            "text": "no CGM readings in the period"}


def _entry(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": f"identifier={ID_SYSTEM}|{full_url}"}}


def _observation(full_url: str, profile: str, code: str, display: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"profile": [profile]},
        "identifier": [{"system": ID_SYSTEM, "value": full_url}],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": _coding(code, display),
        "subject": {"reference": subject},
    }


def build_cgm_bundle(export: CgmExportInput, now_ms: int | None = None) -> Bundle:
    """The transaction Bundle for ``export`` (see the module docstring); parsed by ``fhir.resources``."""
    return Bundle.model_validate(bundle_json(export, now_ms))


def bundle_json(export: CgmExportInput, now_ms: int | None = None) -> dict[str, Any]:
    """The same Bundle as a plain dict (before ``fhir.resources`` parses it)."""
    pid, start, end = export.patient_id, export.period_start_ms, export.period_end_ms
    agp = build_agp(export.readings, start, end, sample_interval_min=export.sample_interval_min)
    summary: GlycemicSummary = agp.summary
    period = {"start": _iso(start), "end": _iso(end)}
    entries: list[dict[str, Any]] = []

    patient_url = deterministic_uuid("Patient", pid)
    entries.append({"fullUrl": patient_url,
                    "resource": {"resourceType": "Patient", "identifier": [{"system": PATIENT_SYSTEM, "value": pid}]},
                    "request": {"method": "POST", "url": "Patient",
                                "ifNoneExist": f"identifier={PATIENT_SYSTEM}|{pid}"}})
    device_urls: dict[str, str] = {}
    for device_id in dict.fromkeys(export.device_ids or (export.reading_device_ids or ())):
        url = deterministic_uuid("Device", device_id)
        device_urls[device_id] = url
        entries.append({"fullUrl": url, "resource": {
            "resourceType": "Device", "meta": {"profile": [PROFILES["device"]]},
            "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
            "deviceName": [{"name": f"GlucoTwin hub {device_id} (CGM relayed over BLE CGMS)",
                            "type": "user-friendly-name"}],
            "serialNumber": device_id,
            "patient": {"reference": patient_url}},
            "request": {"method": "POST", "url": "Device", "ifNoneExist": f"identifier={DEVICE_SYSTEM}|{device_id}"}})

    member_entries: list[dict[str, Any]] = []
    for code, display, name, ucum, unit, decimals in SUMMARY_MEMBERS:
        url = deterministic_uuid(pid, start, end, code)
        obs = _observation(url, PROFILES[code], code, display, patient_url)
        obs["effectivePeriod"] = period
        value = getattr(summary, name)
        if math.isnan(value):
            obs["dataAbsentReason"] = _absent()
        else:
            obs["valueQuantity"] = _quantity(value, ucum, unit, decimals)
        member_entries.append(_entry(obs, url))

    tir_url = deterministic_uuid(pid, start, end, "106793-3")
    tir = _observation(tir_url, PROFILES["106793-3"], "106793-3", "Glucose time in ranges", patient_url)
    tir["effectivePeriod"] = period
    tir["component"] = []
    for code, display, name in TIR_COMPONENTS:
        value = getattr(summary, name)
        component: dict[str, Any] = {"code": _coding(code, display)}
        if math.isnan(value):
            component["dataAbsentReason"] = _absent()
        else:
            component["valueQuantity"] = _quantity(value, "%", "%", 2)
        tir["component"].append(component)
    member_entries.insert(1, _entry(tir, tir_url))  # mean glucose, times in ranges, GMI, CV, wear, active

    summary_url = deterministic_uuid(pid, start, end, SUMMARY_CODE)
    root = _observation(summary_url, PROFILES["summary"], SUMMARY_CODE,
                        "Continuous glucose monitoring summary panel - Reporting Period", patient_url)
    root["effectivePeriod"] = period
    root["hasMember"] = [{"reference": e["fullUrl"]} for e in member_entries]
    entries.append(_entry(root, summary_url))
    entries.extend(member_entries)

    if export.include_readings:
        first_device = next(iter(device_urls.values()), None)
        per_reading = export.reading_device_ids
        for i, (time_ms, glucose) in enumerate(export.readings):
            if not start <= time_ms < end:
                continue
            url = deterministic_uuid(pid, time_ms, READING_CODE)
            obs = _observation(url, PROFILES["reading"], READING_CODE,
                               "Glucose [Mass/volume] in Interstitial fluid", patient_url)
            obs["effectiveDateTime"] = _iso(time_ms)
            obs["valueQuantity"] = _quantity(glucose, "mg/dL", "mg/dl", 0)
            device_url = device_urls.get(per_reading[i]) if per_reading is not None else first_device
            if device_url:
                obs["device"] = {"reference": device_url}
            entries.append(_entry(obs, url))

    ts = now_ms if now_ms is not None else int(datetime.now(timezone.utc).timestamp() * 1000)
    return {"resourceType": "Bundle", "meta": {"profile": [PROFILES["bundle"]]},
            "identifier": {"system": ID_SYSTEM, "value": deterministic_uuid("Bundle", pid, start, end)},
            "type": "transaction", "timestamp": _iso(ts), "entry": entries}


# --- profile checks (fhir.resources does not check profiles) -------------------------------------------------
def _codes(concept: Any) -> set[tuple[str, str]]:
    return {(c.system, c.code) for c in (concept.coding or [])} if concept is not None else set()


def profile_problems(bundle: Bundle) -> list[str]:
    """Every way ``bundle`` departs from the CGM IG rules this exporter promises (empty list: conforms).

    Checked: transaction type and timestamp; every entry has fullUrl, POST request and ifNoneExist matching
    an identifier; Observations final, laboratory category, subject; one summary (107931-8) with
    effectivePeriod and hasMember resolving to exactly the six summary members; each member's LOINC, UCUM
    unit and value (or dataAbsentReason) with two-decimal precision for percentages; times in ranges with
    exactly the five components in order, each ``%``, summing to 100 +/- 0.05; sensor readings with
    effectiveDateTime, mg/dL and a device that is in the bundle.
    """
    problems: list[str] = []
    if bundle.type != "transaction":
        problems.append(f"Bundle.type is {bundle.type!r}, not 'transaction'")
    if bundle.timestamp is None:
        problems.append("Bundle.timestamp is missing")
    by_url: dict[str, Any] = {}
    for n, entry in enumerate(bundle.entry or []):
        res = entry.resource
        where = f"entry[{n}] {res.__resource_type__ if res is not None else '?'}"
        if not entry.fullUrl:
            problems.append(f"{where}: fullUrl missing")
        by_url[entry.fullUrl] = res
        req = entry.request
        if req is None or req.method != "POST" or not req.ifNoneExist:
            problems.append(f"{where}: request must be POST with ifNoneExist")
            continue
        idents = res.identifier if isinstance(res.identifier, list) else [res.identifier]
        if not any(i is not None and req.ifNoneExist == f"identifier={i.system}|{i.value}" for i in idents):
            problems.append(f"{where}: ifNoneExist does not name the resource's identifier")
    observations = [r for r in by_url.values() if r is not None and r.__resource_type__ == "Observation"]
    devices = {u for u, r in by_url.items() if r is not None and r.__resource_type__ == "Device"}
    for u in devices:
        d = by_url[u]
        if not d.deviceName or not d.identifier or not d.serialNumber:
            problems.append(f"Device {u}: deviceName, identifier and serialNumber are required")
    summaries = [o for o in observations if (LOINC, SUMMARY_CODE) in _codes(o.code)]
    if len(summaries) != 1:
        problems.append(f"expected one cgm-summary Observation (107931-8), found {len(summaries)}")
    for o in observations:
        where = f"Observation {o.identifier[0].value if o.identifier else '?'}"
        if o.status != "final":
            problems.append(f"{where}: status must be final")
        if not any((OBSERVATION_CATEGORY, "laboratory") in _codes(c) for c in (o.category or [])):
            problems.append(f"{where}: category laboratory missing")
        if o.subject is None or not o.subject.reference:
            problems.append(f"{where}: subject missing")
    if summaries:
        root = summaries[0]
        if root.effectivePeriod is None or root.effectivePeriod.start is None or root.effectivePeriod.end is None:
            problems.append("cgm-summary: effectivePeriod start and end are required")
        member_codes: list[str] = []
        for ref in root.hasMember or []:
            member = by_url.get(ref.reference)
            if member is None:
                problems.append(f"cgm-summary: hasMember {ref.reference} is not in the bundle")
                continue
            member_codes.extend(code for system, code in _codes(member.code) if system == LOINC)
            if member.effectivePeriod is None or root.effectivePeriod is None or \
                    (member.effectivePeriod.start, member.effectivePeriod.end) != \
                    (root.effectivePeriod.start, root.effectivePeriod.end):
                problems.append(f"member {member_codes[-1] if member_codes else '?'}: effectivePeriod differs")
        expected = {code for code, *_ in SUMMARY_MEMBERS} | {"106793-3"}
        if sorted(member_codes) != sorted(expected):
            problems.append(f"cgm-summary: hasMember codes {sorted(member_codes)} != {sorted(expected)}")
    units = {code: (ucum, decimals) for code, _, _, ucum, _, decimals in SUMMARY_MEMBERS}
    for o in observations:
        codes = {code for system, code in _codes(o.code) if system == LOINC}
        for code in codes & set(units):
            problems.extend(_check_value(f"{code}", o, *units[code]))
        if "106793-3" in codes:
            comps = o.component or []
            got = [next(iter(_codes(c.code)), (None, None)) for c in comps]
            want = [(LOINC, code) for code, _, _ in TIR_COMPONENTS]
            if got != want:
                problems.append(f"106793-3: components {got} != {want}")
            values = []
            for c, (code, *_rest) in zip(comps, TIR_COMPONENTS):
                problems.extend(_check_value(f"106793-3/{code}", c, "%", 2))
                if c.valueQuantity is not None:
                    values.append(float(c.valueQuantity.value))
            if len(values) == 5 and abs(sum(values) - 100.0) > 0.05:
                problems.append(f"106793-3: components sum to {sum(values):.2f}, not 100")
        if READING_CODE in codes:
            if o.effectiveDateTime is None:
                problems.append("99504-3: effectiveDateTime missing")
            problems.extend(_check_value(READING_CODE, o, "mg/dL", 2))
            if o.device is not None and o.device.reference not in devices:
                problems.append(f"99504-3: device {o.device.reference} is not in the bundle")
    return problems


def _check_value(where: str, element: Any, ucum: str, decimals: int) -> list[str]:
    q = element.valueQuantity
    if q is None:
        return [] if element.dataAbsentReason is not None else [f"{where}: neither valueQuantity nor dataAbsentReason"]
    out = []
    if q.system != UCUM or q.code != ucum:
        out.append(f"{where}: unit must be UCUM {ucum!r}, got {q.system}|{q.code}")
    exponent = Decimal(str(q.value)).as_tuple().exponent
    if isinstance(exponent, int) and -exponent > decimals:
        out.append(f"{where}: value {q.value} has more than {decimals} decimals")
    return out
