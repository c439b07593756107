"""Clinician pages over loopback HTTP: the flagged patient list, the one-page AGP, twin and advice pages,
consent and login rules, audit; plus a real headless Chromium rendering the AGP page (skipped when
/usr/bin/chromium is absent)."""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests

from cloud_sync.reports.agp import build_agp
from cloud_sync.reports.clinical import advice_log, compute_flags, hypo_events
from tests.cloud_sync.reports_support import DAY_MS, day_payload, daily_wave, live_service, make_clinic, new_hub

MIN = 60_000
CHROMIUM = "/usr/bin/chromium"


# --- pure flag rules -----------------------------------------------------------------------------------------
def test_hypo_events_need_15_minutes_below_70() -> None:
    t = [k * 5 * MIN for k in range(12)]
    assert hypo_events(list(zip(t, [100, 65, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100]))) == []  # 5 min
    assert hypo_events(list(zip(t, [100, 65, 60, 100, 100, 100, 100, 100, 100, 100, 100, 100]))) == []  # 10 min
    three = list(zip(t, [100, 65, 60, 50, 100, 100, 100, 100, 100, 100, 100, 100]))
    assert hypo_events(three) == [(t[1], t[4])]  # 15 min: an event
    gap = [(0, 60.0), (5 * MIN, 60.0), (60 * MIN, 60.0), (65 * MIN, 60.0)]  # a gap splits the runs
    assert hypo_events(gap) == []
    assert hypo_events([(k * 5 * MIN, 60.0) for k in range(4)]) == [(0, 15 * MIN)]  # runs to the trace's end


def test_flags_rules() -> None:
    now = 30 * DAY_MS
    start = now - 14 * DAY_MS
    good = [(start + k * 5 * MIN, 120.0) for k in range(14 * 288)]
    report = build_agp(good, start, now)
    clean = compute_flags(report.summary, good, last_sync_ms=now - 3_600_000, now_ms=now)
    assert not clean.any and clean.reasons == ()
    stale = compute_flags(report.summary, good, last_sync_ms=now - 25 * 3_600_000, now_ms=now)
    assert stale.stale and not stale.hypo and stale.labelled == (("stale", "last sync 25 h ago"),)
    assert compute_flags(report.summary, good, None, now).stale
    # 2 % of the time below 54, long ago (more than 7 days): the percentage alone flags it
    low = [(t, 50.0 if i % 50 == 0 else g) for i, (t, g) in enumerate(good)]
    low_report = build_agp(low, start, now)
    flags = compute_flags(low_report.summary, low, now - 1000, now)
    assert flags.hypo and not flags.low_tir
    # one 20-min episode at 65 mg/dL yesterday: below 1 % but an event in the last 7 days
    episode = [(t, 65.0 if now - DAY_MS <= t < now - DAY_MS + 20 * MIN else g) for t, g in good]
    flags = compute_flags(build_agp(episode, start, now).summary, episode, now - 1000, now)
    assert flags.hypo and any("event" in r for r in flags.reasons) and flags.kinds == ("hypo",)
    alert = compute_flags(report.summary, good, now - 1000, now,
                          alerts=[{"time_ms": now - DAY_MS, "kind": "urgent_low", "severity": "urgent"}])
    assert alert.hypo
    high = [(t, 200.0 if i % 2 else 120.0) for i, (t, _) in enumerate(good)]
    assert compute_flags(build_agp(high, start, now).summary, high, now - 1000, now).low_tir


def test_advice_log_pairs_advice_with_boluses() -> None:
    recs = [{"time_ms": 0, "recommendation_id": "a", "insulin_u": 4.0, "followed": None, "reason": "meal"},
            {"time_ms": 0, "recommendation_id": "a", "insulin_u": 4.0, "followed": True, "reason": "meal"},
            {"time_ms": 3_600_000, "recommendation_id": "b", "insulin_u": 2.0, "followed": False, "reason": "high"}]
    rows = advice_log(recs, [(60_000, 3.5), (3_600_000 + 40 * MIN, 1.0)])
    assert [r.recommendation_id for r in rows] == ["b", "a"]  # newest first, one row per recommendation
    assert rows[1].followed is True and rows[1].delivered_u == 3.5
    assert rows[0].followed is False and rows[0].delivered_u is None  # the 1 U came 40 min later


# --- the live pages ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clinic_env(tmp_path_factory):
    with live_service(tmp_path_factory.mktemp("pages")) as (service, url):
        clinic, other = make_clinic(service), make_clinic(service, "Clinic B")
        today = int(time.time() * 1000) // DAY_MS * DAY_MS
        alice, bob, carol = (new_hub(url, clinic, name) for name in ("Alice Good", "Bob Hypo", "Carol Stale"))
        alice.push([day_payload(today - d * DAY_MS, daily_wave, random.Random(d)) for d in range(14, 0, -1)])
        bob.push([day_payload(today - d * DAY_MS, lambda t: daily_wave(t) + 60, random.Random(d),
                              hypo_at_min=120 if d in (2, 9) else None) for d in range(14, 0, -1)])
        # Carol's hub stopped syncing: pretend her data arrived 3 days ago
        carol.push([day_payload(today - d * DAY_MS, daily_wave, random.Random(d)) for d in range(14, 3, -1)])
        with service.db.transaction() as tx:
            tx.execute("UPDATE envelopes SET received_ms = ? WHERE patient_id = ?",
                       (today - 3 * DAY_MS, carol.patient_id))
        yield {"service": service, "url": url, "clinic": clinic, "other": other, "alice": alice, "bob": bob,
               "carol": carol, "auth": {"Authorization": f"Bearer {clinic.clinician_token}"}}


def rows_by_patient(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr class="patient-row" data-patient="([^"]+)">(.*?)</tr>', html, re.S))


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", html, re.S)]


def test_patient_list_shows_flags(clinic_env) -> None:
    response = requests.get(f"{clinic_env['url']}/clinic/patients", headers=clinic_env["auth"], timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    rows = rows_by_patient(response.text)
    alice, bob, carol = (rows[clinic_env[n].patient_id] for n in ("alice", "bob", "carol"))
    assert "flag-" not in alice
    assert "flag-hypo" in bob and "flag-low_tir" in bob and "flag-stale" not in bob
    assert "flag-stale" in carol and "flag-hypo" not in carol
    order = list(rows)
    assert order.index(clinic_env["alice"].patient_id) == 2  # flagged patients first
    other = {"Authorization": f"Bearer {clinic_env['other'].clinician_token}"}
    assert rows_by_patient(requests.get(f"{clinic_env['url']}/clinic/patients", headers=other, timeout=30).text) == {}


def test_agp_page_renders_the_report(clinic_env) -> None:
    pid = clinic_env["bob"].patient_id
    response = requests.get(f"{clinic_env['url']}/clinic/patients/{pid}?days=14&tz=Europe/Paris",
                            headers=clinic_env["auth"], timeout=60)
    assert response.status_code == 200
    html = response.text
    assert "Bob Hypo" in html and "Europe/Paris" in html
    assert '<span class="flag flag-hypo">' in html and '<span class="flag flag-low_tir">time in range' in html
    charts = svgs(html)
    classes = [c.get("class") for c in charts]
    assert classes == ["tir-bar", "agp-modal-day", "agp-daily-profiles"]
    ns = "{http://www.w3.org/2000/svg}"
    modal = charts[1]
    assert [e for e in modal.iter(f"{ns}polygon") if e.get("class") == "agp-band-5-95"]
    assert [e for e in modal.iter(f"{ns}polyline") if e.get("class") == "agp-median"]
    assert len([g for g in charts[2].iter(f"{ns}g") if g.get("class") == "agp-day"]) == 15  # 14 d + today's part
    assert 'data-goal="tir"' in html and "goal &gt; 70%" in html


def test_svg_endpoints_twin_and_advice(clinic_env) -> None:
    url, pid, auth = clinic_env["url"], clinic_env["alice"].patient_id, clinic_env["auth"]
    for name in ("agp-modal.svg", "agp-tir.svg", "agp-daily.svg"):
        response = requests.get(f"{url}/clinic/patients/{pid}/{name}", headers=auth, timeout=60)
        assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
        ET.fromstring(response.text)
    twin = requests.get(f"{url}/clinic/patients/{pid}/twin", headers=auth, timeout=60)
    assert twin.status_code == 200
    assert 'data-parameter="insulin_sensitivity_factor_mg_dl_per_u"' in twin.text
    assert 'data-parameter="insulin_sensitivity_factor_sd"' not in twin.text  # folded into the band
    assert "class='twin-band'" in twin.text
    # 16 days: the seeded 14 days end "now", so a 14-day window can cut one recommendation at the edge
    advice = requests.get(f"{url}/clinic/patients/{pid}/advice?days=16", headers=auth, timeout=60)
    assert advice.status_code == 200
    assert "42 recommendations: 28 followed, 14 declined, 0 not answered" in advice.text  # 3 a day for 14 days
    assert advice.text.count('data-followed="no"') == 14


def test_pages_refused_without_consent_and_audited(clinic_env) -> None:
    url, service = clinic_env["url"], clinic_env["service"]
    carol = clinic_env["carol"]
    other = {"Authorization": f"Bearer {clinic_env['other'].clinician_token}"}
    refused = requests.get(f"{url}/clinic/patients/{carol.patient_id}", headers=other, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "no_consent"
    # the patient withdraws consent: her own clinic loses access too
    patient = {"Authorization": f"Bearer {carol.creds.patient_token}"}
    revoke = requests.delete(f"{url}/v1/patients/{carol.patient_id}/consents/{clinic_env['clinic'].clinic_id}",
                             headers=patient, timeout=30)
    assert revoke.status_code == 200
    for path in ("", "/twin", "/advice", "/agp-modal.svg"):
        gone = requests.get(f"{url}/clinic/patients/{carol.patient_id}{path}", headers=clinic_env["auth"], timeout=30)
        assert gone.status_code == 403, path
    listed = requests.get(f"{url}/clinic/patients", headers=clinic_env["auth"], timeout=60).text
    assert carol.patient_id not in rows_by_patient(listed)
    with service.db.transaction() as tx:
        actions = {r[0] for r in tx.all("SELECT action FROM audit_log WHERE patient_id = ?", (carol.patient_id,))}
    assert "denied:GET /clinic/patients/{patient_id}" in actions
    assert "denied:GET /clinic/patients/{patient_id}/twin" in actions


def test_login_redirects_cookie_and_tickets(clinic_env) -> None:
    url, pid = clinic_env["url"], clinic_env["alice"].patient_id
    api = requests.get(f"{url}/clinic/patients/{pid}", timeout=30)
    assert api.status_code == 401 and api.json()["error"]["code"] == "login_required"
    browser = requests.get(f"{url}/clinic/patients/{pid}?days=7", headers={"Accept": "text/html"},
                           allow_redirects=False, timeout=30)
    assert browser.status_code == 303 and browser.headers["location"].startswith("/clinic/login?next=")
    assert requests.get(url + browser.headers["location"], timeout=30).status_code == 200

    email = f"dr@{clinic_env['clinic'].clinic_id}.example"
    session = requests.Session()
    wrong = session.post(f"{url}/clinic/login", data={"email": email, "password": "nope", "next": "/clinic/patients"},
                         timeout=30)
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    form = {"email": email, "password": "correct horse battery", "next": f"/clinic/patients/{pid}"}
    ok = session.post(f"{url}/clinic/login", data=form, allow_redirects=False, timeout=30)
    assert ok.status_code == 303 and ok.headers["location"] == f"/clinic/patients/{pid}"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert session.get(f"{url}/clinic/patients/{pid}", timeout=60).status_code == 200
    session.post(f"{url}/clinic/logout", timeout=30)
    assert session.get(f"{url}/clinic/patients/{pid}", timeout=30).status_code == 401

    ticket = requests.post(f"{url}/clinic/session-tickets", params={"next": f"/clinic/patients/{pid}"},
                           headers=clinic_env["auth"], timeout=30).json()
    opened = requests.Session()
    assert opened.get(url + ticket["url"], timeout=60).status_code == 200
    again = requests.get(url + ticket["url"], timeout=30)
    assert again.status_code == 401  # one-time
    evil = requests.post(f"{url}/clinic/session-tickets", params={"next": "https://evil.example/"},
                         headers=clinic_env["auth"], timeout=30).json()
    assert evil["url"].endswith("next=/clinic/patients")  # no open redirect
    for bad in ("/clinic/x\r\nSet-Cookie: a=b", "//evil.example/clinic/", "/clinic/\\evil"):
        login = requests.post(f"{url}/clinic/login", allow_redirects=False, timeout=30, data={
            "email": email, "password": "correct horse battery", "next": bad})
        assert login.status_code == 303 and login.headers["location"] == "/clinic/patients"


def test_bad_query_is_a_clear_error(clinic_env) -> None:
    url, pid, auth = clinic_env["url"], clinic_env["alice"].patient_id, clinic_env["auth"]
    bad_tz = requests.get(f"{url}/clinic/patients/{pid}?tz=Mars/Olympus", headers=auth, timeout=30)
    assert bad_tz.status_code == 400 and bad_tz.json()["error"]["code"] == "bad_report_query"
    for query in ("days=400", "days=0", "end=99999999999999999999", "end=0", "end=yesterday", "end=9999-12-31",
                  "tz=", "tz=../../etc/passwd"):
        response = requests.get(f"{url}/clinic/patients/{pid}?{query}", headers=auth, timeout=30)
        assert response.status_code in (400, 422), (query, response.status_code)
    dated = requests.get(f"{url}/clinic/patients/{pid}?end=2026-01-15&days=7&tz=America/New_York", headers=auth,
                         timeout=30)
    assert dated.status_code == 200 and "2026-01-08 00:00 to 2026-01-15 00:00" in dated.text


# --- a real headless browser ---------------------------------------------------------------------------------
def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


def test_headless_chromium_renders_the_agp_page(clinic_env, tmp_path) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (install Debian's chromium to run the browser check)")
    url, pid = clinic_env["url"], clinic_env["bob"].patient_id

    def ticket_url() -> str:
        body = requests.post(f"{url}/clinic/session-tickets", params={"next": f"/clinic/patients/{pid}"},
                             headers=clinic_env["auth"], timeout=30).json()
        return url + body["url"]

    dom = _chromium(["--dump-dom", ticket_url()], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "AGP Report" in html and "Bob Hypo" in html
    for part in ("tir-bar", "agp-modal-day", "agp-daily-profiles", "agp-band-5-95", "agp-band-25-75", "agp-median",
                 "agp-target-band", "tir-segment"):
        assert part in html, part

    shot = tmp_path / "agp.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", ticket_url()],
                       tmp_path / "profile-shot")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 1600)
    assert len(data) > 30_000  # a blank or error page compresses to a few KB
    print(f"\nAGP screenshot: {shot}")

    pdf = tmp_path / "agp.pdf"  # the printable report fits one A4 page (print CSS hides navigation)
    printed = _chromium([f"--print-to-pdf={pdf}", "--no-pdf-header-footer", ticket_url()], tmp_path / "profile-pdf")
    assert printed.returncode == 0, printed.stderr[-2000:]
    pages = re.findall(rb"/Type\s*/Page(?![a-z])", pdf.read_bytes())
    assert len(pages) == 1, f"{len(pages)} pages"
    print(f"AGP PDF: {pdf}")


def test_a_spent_link_sends_the_browser_to_login_then_to_its_page(clinic_env) -> None:
    url, pid = clinic_env["url"], clinic_env["alice"].patient_id
    ticket = requests.post(f"{url}/clinic/session-tickets", params={"next": f"/clinic/patients/{pid}/advice"},
                           headers=clinic_env["auth"], timeout=30).json()
    requests.get(url + ticket["url"], timeout=60)  # spends it
    again = requests.get(url + ticket["url"], headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)
    assert again.status_code == 303
    assert again.headers["location"] == f"/clinic/login?next=/clinic/patients/{pid}/advice"
