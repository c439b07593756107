"""FHIR R4 CGM export (HL7 CGM IG 1.0.0): the Bundle parses back with fhir.resources and passes the profile
checks; the checks themselves catch broken bundles; identifiers are deterministic; the HTTP route obeys
consent."""

from __future__ import annotations

import copy
import json
import random
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from cloud_sync.fhir_export import (
    LOINC,
    SUMMARY_MEMBERS,
    TIR_COMPONENTS,
    UCUM,
    CgmExportInput,
    build_cgm_bundle,
    bundle_json,
    profile_problems,
)
from tests.cloud_sync.reports_support import DAY_MS, day_payload, daily_wave, live_service, make_clinic, new_hub

T0 = 1_767_225_600_000
MIN = 60_000


def thirds_export(**kw) -> CgmExportInput:
    # one day: 96 readings each at 100, 200 and 300 mg/dL -> 33.33 % target, high and very high
    readings = [(T0 + i * 5 * MIN, (100.0, 200.0, 300.0)[i // 96]) for i in range(288)]
    return CgmExportInput("pt-test", T0, T0 + DAY_MS, readings, device_ids=("hub-1",), **kw)


def resources(bundle: Bundle, code: str) -> list:
    return [e.resource for e in bundle.entry if e.resource.__resource_type__ == "Observation"
            and any(c.system == LOINC and c.code == code for c in e.resource.code.coding)]


def test_bundle_round_trips_and_conforms() -> None:
    bundle = build_cgm_bundle(thirds_export(), now_ms=T0 + DAY_MS)
    text = bundle.model_dump_json(exclude_none=True)
    parsed = Bundle.model_validate_json(text)
    assert profile_problems(parsed) == []
    assert parsed.type == "transaction"
    assert len(resources(parsed, "99504-3")) == 288
    assert len([e for e in parsed.entry if e.resource.__resource_type__ == "Device"]) == 1


def test_summary_and_members_hand_checked() -> None:
    bundle = build_cgm_bundle(thirds_export(include_readings=False))
    (summary,) = resources(bundle, "107931-8")
    assert summary.effectivePeriod.start == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert summary.effectivePeriod.end == datetime(2026, 1, 2, tzinfo=timezone.utc)
    by_url = {e.fullUrl: e.resource for e in bundle.entry}
    member_codes = [by_url[m.reference].code.coding[0].code for m in summary.hasMember]
    assert member_codes == ["97507-8", "106793-3", "97506-0", "104638-2", "104636-6", "104637-4"]

    (tir,) = resources(bundle, "106793-3")
    assert [c.code.coding[0].code for c in tir.component] == [code for code, _, _ in TIR_COMPONENTS]
    values = [c.valueQuantity.value for c in tir.component]
    assert values == [Decimal("0.00"), Decimal("0.00"), Decimal("33.33"), Decimal("33.33"), Decimal("33.33")]
    assert all(c.valueQuantity.system == UCUM and c.valueQuantity.code == "%" for c in tir.component)

    (mean,) = resources(bundle, "97507-8")
    assert mean.valueQuantity.value == Decimal("200.0") and mean.valueQuantity.code == "mg/dL"
    (gmi,) = resources(bundle, "97506-0")
    assert gmi.valueQuantity.value == Decimal("8.09")  # 3.31 + 0.02392 * 200 = 8.094
    (wear,) = resources(bundle, "104636-6")
    assert wear.valueQuantity.code == "d" and wear.valueQuantity.value == Decimal("1.00")
    (active,) = resources(bundle, "104637-4")
    assert active.valueQuantity.value == Decimal("100.00")
    (cv,) = resources(bundle, "104638-2")
    sd = (sum((g - 200) ** 2 for g in [100] * 96 + [200] * 96 + [300] * 96) / 287) ** 0.5
    assert float(cv.valueQuantity.value) == pytest.approx(100 * sd / 200, abs=0.005)


def test_readings_have_time_value_and_device() -> None:
    export = thirds_export()
    bundle = build_cgm_bundle(export)
    devices = {e.fullUrl: e.resource for e in bundle.entry if e.resource.__resource_type__ == "Device"}
    (device,) = devices.values()
    assert device.serialNumber == "hub-1" and device.deviceName[0].name and device.identifier[0].value == "hub-1"
    readings = resources(bundle, "99504-3")
    first = readings[0]
    assert first.effectiveDateTime == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert first.valueQuantity.value == Decimal("100") and first.valueQuantity.code == "mg/dL"
    assert all(r.device.reference in devices for r in readings)


def test_identifiers_are_deterministic_and_used_for_conditional_create() -> None:
    a = bundle_json(thirds_export(), now_ms=1)
    b = bundle_json(thirds_export(), now_ms=2)
    assert a["timestamp"] != b["timestamp"]
    assert [e["fullUrl"] for e in a["entry"]] == [e["fullUrl"] for e in b["entry"]]
    assert len({e["fullUrl"] for e in a["entry"]}) == len(a["entry"])  # unique
    for entry in a["entry"]:
        request = entry["request"]
        assert request["method"] == "POST" and request["url"] == entry["resource"]["resourceType"]
        ident = entry["resource"]["identifier"][0]
        assert request["ifNoneExist"] == f"identifier={ident['system']}|{ident['value']}"
    other = bundle_json(CgmExportInput("pt-other", T0, T0 + DAY_MS, thirds_export().readings, ("hub-1",)))
    assert {e["fullUrl"] for e in other["entry"]}.isdisjoint(
        e["fullUrl"] for e in a["entry"] if e["resource"]["resourceType"] == "Observation")


def test_no_readings_gives_data_absent_reason_and_still_conforms() -> None:
    bundle = build_cgm_bundle(CgmExportInput("pt-empty", T0, T0 + DAY_MS, []))
    assert profile_problems(bundle) == []
    (mean,) = resources(bundle, "97507-8")
    assert mean.valueQuantity is None and mean.dataAbsentReason.coding[0].code == "not-performed"
    (active,) = resources(bundle, "104637-4")
    assert active.valueQuantity.value == Decimal("0.00")  # sensor active is known: 0 %


def small_export() -> CgmExportInput:
    """15 min, three readings (100, 200, 300): small enough to rebuild per case."""
    readings = [(T0 + i * 5 * MIN, (100.0, 200.0, 300.0)[i]) for i in range(3)]
    return CgmExportInput("pt-small", T0, T0 + 15 * MIN, readings, device_ids=("hub-1",))


def _mutated(change) -> Bundle:
    data = json.loads(build_cgm_bundle(small_export()).model_dump_json(exclude_none=True))
    assert profile_problems(Bundle.model_validate(data)) == []
    change(data)
    return Bundle.model_validate(data)


def _find(data: dict, code: str) -> dict:
    return next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"
                and e["resource"]["code"]["coding"][0]["code"] == code)


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.update(type="batch"), "transaction"),
    (lambda d: _find(d, "97507-8")["valueQuantity"].update(code="mmol/L"), "unit"),
    (lambda d: _find(d, "106793-3")["component"].pop(), "components"),
    (lambda d: _find(d, "106793-3")["component"][2]["valueQuantity"].update(value=33.333), "decimals"),
    (lambda d: _find(d, "106793-3")["component"][0]["valueQuantity"].update(value=5), "sum"),
    (lambda d: _find(d, "107931-8")["hasMember"].pop(), "hasMember"),
    (lambda d: _find(d, "107931-8").pop("effectivePeriod"), "effectivePeriod"),
    (lambda d: _find(d, "97506-0").pop("valueQuantity"), "neither"),
    (lambda d: _find(d, "99504-3").pop("effectiveDateTime"), "effectiveDateTime"),
    (lambda d: _find(d, "104636-6").update(category=[]), "laboratory"),
    (lambda d: d["entry"][3]["request"].update(ifNoneExist="identifier=x|y"), "ifNoneExist"),
    (lambda d: _find(d, "99504-3")["device"].update(reference="urn:uuid:00000000-0000-0000-0000-000000000000"),
     "device"),
])
def test_profile_checks_catch_broken_bundles(change, expected) -> None:
    problems = profile_problems(_mutated(change))
    assert problems and any(expected in p for p in problems), problems


def test_summary_members_table_matches_the_ig_units() -> None:
    units = {code: ucum for code, _, _, ucum, _, _ in SUMMARY_MEMBERS}
    assert units == {"97507-8": "mg/dL", "97506-0": "%", "104638-2": "%", "104636-6": "d", "104637-4": "%"}


def test_fhir_route_needs_consent_and_is_audited(tmp_path) -> None:
    with live_service(tmp_path) as (service, url):
        clinic, other = make_clinic(service), make_clinic(service, "Clinic B")
        hub = new_hub(url, clinic)
        day0 = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
        hub.push([day_payload(day0 + d * DAY_MS, daily_wave, random.Random(d)) for d in range(2)])
        path = f"{url}/api/patients/{hub.patient_id}/fhir?days=3"
        ok = requests.get(path, headers={"Authorization": f"Bearer {clinic.clinician_token}"}, timeout=30)
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/fhir+json")
        bundle = Bundle.model_validate_json(ok.text)
        assert profile_problems(bundle) == []
        assert len(resources(bundle, "99504-3")) == 2 * 288
        alias = requests.get(f"{url}/fhir/Patient/{hub.patient_id}/$cgm-bundle?days=3&readings=false",
                             headers={"Authorization": f"Bearer {clinic.clinician_token}"}, timeout=30)
        assert alias.status_code == 200 and not resources(Bundle.model_validate_json(alias.text), "99504-3")
        denied = requests.get(path, headers={"Authorization": f"Bearer {other.clinician_token}"}, timeout=30)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "no_consent"
        assert requests.get(path, timeout=30).status_code == 401
        with service.db.transaction() as tx:
            actions = [r[0] for r in tx.all("SELECT action FROM audit_log WHERE patient_id = ? ORDER BY entry_id",
                                            (hub.patient_id,))]
        assert "GET /api/patients/{patient_id}/fhir" in actions
        assert "denied:GET /api/patients/{patient_id}/fhir" in actions


def test_profile_problems_does_not_mutate() -> None:
    bundle = build_cgm_bundle(thirds_export(include_readings=False))
    before = copy.deepcopy(bundle.model_dump_json())
    profile_problems(bundle)
    assert bundle.model_dump_json() == before
