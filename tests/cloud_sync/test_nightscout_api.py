"""Read-only Nightscout-compatible API: pure formatting (delta, direction, treatments, devicestatus) and the
live API over loopback HTTP (both auth modes, refusals, count/find, read-only, audit)."""

from __future__ import annotations

import hashlib
import random
import time

import pytest
import requests

from cloud_sync.nightscout_api import (
    DIRECTIONS,
    direction_for_rate,
    format_devicestatus,
    format_entries,
    format_treatments,
)
from cloud_sync.service.records import PatientRecord
from tests.cloud_sync.reports_support import DAY_MS, day_payload, daily_wave, live_service, make_clinic, new_hub

T0 = 1_767_225_600_000
MIN = 60_000


# --- pure formatting -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate,expected", [
    (3.0, "DoubleUp"), (2.99, "SingleUp"), (2.0, "SingleUp"), (1.0, "FortyFiveUp"), (0.99, "Flat"),
    (0.0, "Flat"), (-0.99, "Flat"), (-1.0, "FortyFiveDown"), (-2.0, "SingleDown"), (-2.99, "SingleDown"),
    (-3.0, "DoubleDown"), (-10.0, "DoubleDown"),
])
def test_direction_bands(rate: float, expected: str) -> None:
    assert direction_for_rate(rate) == expected


def test_entries_have_delta_direction_and_dates_newest_first() -> None:
    readings = [(T0, 100.0, "hub"), (T0 + 5 * MIN, 110.0, "hub"), (T0 + 10 * MIN, 130.0, "hub"),
                (T0 + 60 * MIN, 90.0, "hub")]
    entries = format_entries(readings, previous=(T0 - 5 * MIN, 104.0))
    assert [e["date"] for e in entries] == [T0 + 60 * MIN, T0 + 10 * MIN, T0 + 5 * MIN, T0]
    newest, third, second, first = entries
    assert first["delta"] == -4.0 and first["direction"] == "Flat"  # -4 over 5 min = -0.8/min
    assert second["delta"] == 10.0 and second["direction"] == "SingleUp"  # 2/min
    assert third["delta"] == 20.0 and third["direction"] == "DoubleUp"  # 4/min
    assert newest["delta"] == 0.0 and newest["direction"] == "NONE"  # 50 min gap: no trend
    for e in entries:
        assert e["type"] == "sgv" and isinstance(e["sgv"], int) and e["noise"] == 1
        assert e["dateString"].endswith("Z") and e["device"] == "glucotwin://hub/hub"
    assert first["dateString"] == "2026-01-01T00:00:00.000Z"
    assert format_entries(readings)[-1]["direction"] == "NONE"  # no previous reading known


def _rec(kind: str, t: int, data: dict, idx: int = 0) -> PatientRecord:
    return PatientRecord("pt", kind, t, "hub", 1, idx, data)


def test_treatments_classify_boluses_carbs_and_temp_basals() -> None:
    insulin = [_rec("insulin", T0, {"insulin_u": 4.0, "kind": "bolus"}, 0),
               _rec("insulin", T0 + 3_600_000, {"insulin_u": 1.5, "kind": "bolus"}, 1),
               _rec("insulin", T0 + 7_200_000, {"insulin_u": 0.5, "kind": "basal", "duration_min": 30.0}, 2)]
    carbs = [_rec("carbs", T0 + 5 * MIN, {"carbs_g": 40.0}, 3), _rec("carbs", T0 + 5 * 3_600_000, {"carbs_g": 15.0}, 4)]
    docs = format_treatments(insulin, carbs)
    by_type = {d["eventType"]: d for d in docs}
    assert [d["date"] for d in docs] == sorted((d["date"] for d in docs), reverse=True)
    assert by_type["Meal Bolus"]["insulin"] == 4.0 and by_type["Meal Bolus"]["carbs"] == 40.0
    assert by_type["Correction Bolus"]["insulin"] == 1.5 and "carbs" not in by_type["Correction Bolus"]
    assert by_type["Carb Correction"]["carbs"] == 15.0
    assert by_type["Temp Basal"]["absolute"] == 1.0 and by_type["Temp Basal"]["duration"] == 30.0  # 0.5 U / 0.5 h
    assert all(d["enteredBy"] == "glucotwin" and d["created_at"].endswith("Z") for d in docs)
    assert len({d["_id"] for d in docs}) == len(docs)


def test_devicestatus_is_loop_shaped() -> None:
    snap = _rec("twin_parameters", T0, {"parameters": {"insulin_on_board_u": 2.345, "carbs_on_board_g": 20.0,
                                                       "forecast_30_min_mg_dl": 140.2, "forecast_60_min_mg_dl": 155.0}})
    (doc,) = format_devicestatus([snap])
    assert doc["loop"]["iob"]["iob"] == 2.345 and doc["loop"]["cob"]["cob"] == 20.0
    assert doc["loop"]["predicted"]["values"] == [140, 155] and doc["loop"]["predicted"]["minutes"] == [30, 60]
    (bare,) = format_devicestatus([_rec("twin_parameters", T0, {"parameters": {"sensitivity_ratio": 1.0}})])
    assert "predicted" not in bare["loop"] and "iob" not in bare["loop"]


# --- the live API --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ns(tmp_path_factory):
    with live_service(tmp_path_factory.mktemp("ns")) as (service, url):
        clinic, other_clinic = make_clinic(service), make_clinic(service, "Other")
        hub, other_hub = new_hub(url, clinic), new_hub(url, other_clinic)
        day0 = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS
        hub.push([day_payload(day0, daily_wave, random.Random(3))])
        other_hub.push([day_payload(day0, lambda t: 300.0, random.Random(4))])
        auth = {"Authorization": f"Bearer {clinic.clinician_token}"}
        token = requests.post(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens", headers=auth, timeout=30)
        assert token.status_code == 200, token.text
        yield {"service": service, "url": url, "hub": hub, "clinic": clinic, "other_clinic": other_clinic,
               "other_hub": other_hub, "day0": day0, **token.json()}


def test_both_auth_modes_work_and_agree(ns) -> None:
    url, secret = ns["url"], ns["secret"]
    by_token = requests.get(f"{url}/api/v1/entries.json", params={"token": secret, "count": 5}, timeout=30)
    by_header = requests.get(f"{url}/api/v1/entries", params={"count": 5},
                             headers={"api-secret": hashlib.sha1(secret.encode()).hexdigest().upper()}, timeout=30)
    assert by_token.status_code == by_header.status_code == 200
    assert by_token.json() == by_header.json()
    entries = by_token.json()
    assert len(entries) == 5
    assert entries[0]["date"] == ns["day0"] + DAY_MS - 5 * MIN  # the newest reading
    for e in entries:
        assert {"type", "sgv", "date", "dateString", "direction", "delta", "device", "noise"} <= set(e)
        assert e["direction"] in DIRECTIONS  # 5-min readings: always a trend


@pytest.mark.parametrize("how", ["wrong-token", "wrong-sha1", "secret-as-header", "nothing", "sha1-as-token"])
def test_wrong_credentials_are_refused(ns, how) -> None:
    url, secret = ns["url"], ns["secret"]
    kwargs = {
        "wrong-token": {"params": {"token": secret[:-1] + ("0" if secret[-1] != "0" else "1")}},
        "wrong-sha1": {"headers": {"api-secret": hashlib.sha1(b"guess").hexdigest()}},
        "secret-as-header": {"headers": {"api-secret": secret}},
        "nothing": {},
        "sha1-as-token": {"params": {"token": ns["api_secret_sha1"]}},
    }[how]
    response = requests.get(f"{url}/api/v1/entries.json", timeout=30, **kwargs)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_count_and_find_date(ns) -> None:
    url, secret, day0 = ns["url"], ns["secret"], ns["day0"]
    since = day0 + DAY_MS - 60 * MIN
    response = requests.get(f"{url}/api/v1/entries.json",
                            params={"token": secret, "find[date][$gte]": since, "count": 1000}, timeout=30)
    dates = [e["date"] for e in response.json()]
    assert len(dates) == 12 and min(dates) == since and dates == sorted(dates, reverse=True)
    iso = requests.get(f"{url}/api/v1/entries/sgv.json", timeout=30, params={
        "token": secret, "find[date][$gte]": "1970-01-01T00:00:00Z", "find[date][$lt]": day0 + 30 * MIN,
        "count": 100})
    assert [e["date"] for e in iso.json()] == [day0 + k * 5 * MIN for k in range(5, -1, -1)]
    assert iso.json()[-1]["direction"] == "NONE"  # first reading ever: nothing before it
    bad = requests.get(f"{url}/api/v1/entries.json", params={"token": secret, "count": "many"}, timeout=30)
    assert bad.status_code == 400
    for value in ("1" + "0" * 29, "-99999999999999999999", "9999-12-31T23:59:59Z"):  # clamped, no overflow
        huge = requests.get(f"{url}/api/v1/entries.json", params={"token": secret, "find[date][$lte]": value},
                            timeout=30)
        assert huge.status_code == 200, (value, huge.text)
    assert requests.get(f"{url}/api/v1/entries.json", params={"token": secret, "find[date][$gte]": "soon"},
                        timeout=30).status_code == 400


def test_treatments_devicestatus_status(ns) -> None:
    url, secret = ns["url"], ns["secret"]
    treatments = requests.get(f"{url}/api/v1/treatments.json", params={"token": secret, "count": 50}, timeout=30).json()
    kinds = {t["eventType"] for t in treatments}
    assert {"Meal Bolus", "Carb Correction", "Temp Basal"} <= kinds
    since = requests.get(f"{url}/api/v1/treatments", timeout=30, params={
        "token": secret, "find[created_at][$gte]": ns["day0"] + 12 * 3_600_000}).json()
    assert since and all(t["date"] >= ns["day0"] + 12 * 3_600_000 for t in since)
    status = requests.get(f"{url}/api/v1/devicestatus.json", params={"token": secret, "count": 2}, timeout=30).json()
    assert len(status) == 2 and status[0]["loop"]["iob"]["iob"] == 1.5 and status[0]["loop"]["cob"]["cob"] == 12.0
    server = requests.get(f"{url}/api/v1/status.json", params={"token": secret}, timeout=30).json()
    assert server["status"] == "ok" and server["apiEnabled"] is True and server["settings"]["units"] == "mg/dl"


def test_a_token_only_reads_its_own_patient(ns) -> None:
    entries = requests.get(f"{ns['url']}/api/v1/entries.json", params={"token": ns["secret"], "count": 300},
                           timeout=30).json()
    assert all(e["sgv"] < 290 for e in entries)  # the other patient sits at 300 mg/dL


def test_read_only_and_token_lifecycle(ns) -> None:
    url, hub = ns["url"], ns["hub"]
    assert requests.post(f"{url}/api/v1/entries", json=[{"sgv": 100}], params={"token": ns["secret"]},
                         timeout=30).status_code == 405
    assert requests.delete(f"{url}/api/v1/treatments", params={"token": ns["secret"]}, timeout=30).status_code == 405
    other = {"Authorization": f"Bearer {ns['other_clinic'].clinician_token}"}
    refused = requests.post(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens", headers=other, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "no_consent"
    # the patient's own (hub) token can issue and revoke
    patient = {"Authorization": f"Bearer {hub.creds.patient_token}"}
    made = requests.post(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens", headers=patient, timeout=30).json()
    assert requests.get(f"{url}/api/v1/status", params={"token": made["secret"]}, timeout=30).status_code == 200
    gone = requests.delete(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens/{made['token_id']}",
                           headers=patient, timeout=30)
    assert gone.status_code == 200
    assert requests.get(f"{url}/api/v1/status", params={"token": made["secret"]}, timeout=30).status_code == 401


def test_reads_are_audited_without_the_secret(ns) -> None:
    requests.get(f"{ns['url']}/api/v1/entries.json", params={"token": ns["secret"], "count": 1}, timeout=30)
    requests.get(f"{ns['url']}/api/v1/entries.json", params={"token": "nope"}, timeout=30)
    with ns["service"].db.transaction() as tx:
        rows = tx.all("SELECT actor, action, patient_id, detail FROM audit_log ORDER BY entry_id")
    reads = [r for r in rows if r[0] == f"nightscout:{ns['token_id']}" and r[1] == "GET /api/v1/entries.json"]
    assert reads and reads[-1][2] == ns["hub"].patient_id
    assert any(r[0] == "nightscout:unknown" and r[1] == "denied:GET /api/v1/entries.json" for r in rows)
    assert not any(ns["secret"] in r[3] or ns["api_secret_sha1"] in r[3] for r in rows)


def test_erasure_deletes_the_patients_secrets(tmp_path) -> None:
    with live_service(tmp_path) as (service, url):
        hub = new_hub(url, make_clinic(service))
        patient = {"Authorization": f"Bearer {hub.creds.patient_token}"}
        made = requests.post(f"{url}/v1/patients/{hub.patient_id}/nightscout-tokens", headers=patient,
                             timeout=30).json()
        assert requests.get(f"{url}/api/v1/status", params={"token": made["secret"]}, timeout=30).status_code == 200
        erased = requests.delete(f"{url}/v1/patients/{hub.patient_id}", headers=patient, timeout=30)
        assert erased.status_code == 200, erased.text
        with service.db.transaction() as tx:
            assert tx.one("SELECT COUNT(*) FROM nightscout_tokens WHERE patient_id = ?", (hub.patient_id,)) == (0,)
        assert requests.get(f"{url}/api/v1/status", params={"token": made["secret"]}, timeout=30).status_code == 401


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7])
def test_treatment_count_is_exact_and_edge_boluses_keep_their_carbs(ns, count) -> None:
    treatments = requests.get(f"{ns['url']}/api/v1/treatments", params={"token": ns["secret"], "count": count},
                              timeout=30).json()
    assert len(treatments) == min(count, 4)  # the day holds 2 meal boluses, 1 carb correction, 1 temp basal
    # the synthetic day: carbs then the bolus 1 min later for the followed meals -> never a correction bolus
    assert all(t["eventType"] != "Correction Bolus" for t in treatments), treatments


def test_home_assistants_client_library_reads_the_api(ns) -> None:
    """py-nightscout (the library Home Assistant's Nightscout integration uses) against the live API."""
    py_nightscout = pytest.importorskip("py_nightscout", reason="pip install py-nightscout to run the client check")
    import asyncio

    async def read(secret: str) -> tuple:
        api = py_nightscout.Api(ns["url"], api_secret=secret)
        return (await api.get_server_status(), await api.get_sgvs(), await api.get_treatments(),
                await api.get_devices_status())

    for credential in (ns["secret"], "token=" + ns["secret"]):  # API-secret style (SHA-1) and token style
        status, sgvs, treatments, device_status = asyncio.run(read(credential))
        assert status.status == "ok" and status.apiEnabled is True
        assert sgvs and sgvs[0].delta is not None and sgvs[0].direction in DIRECTIONS
        assert sgvs[0].sgv_mmol == round(sgvs[0].sgv / 18, 1) and sgvs[0].date.tzinfo is not None
        assert {t.eventType for t in treatments} >= {"Meal Bolus"}
        assert device_status and device_status[0].created_at is not None

    async def refused() -> int:
        api = py_nightscout.Api(ns["url"], api_secret="not-the-secret")
        try:
            await api.get_sgvs()
        except Exception as error:  # aiohttp.ClientResponseError
            return getattr(error, "status", 0)
        return 200

    assert asyncio.run(refused()) == 401
