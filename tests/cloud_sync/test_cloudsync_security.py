"""Security properties of the cloud service, over real HTTP on loopback: every bad request is refused with a
clear JSON error, nothing is stored twice, erasure shreds, and the audit chain detects edits."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cloud_sync.envelope import EnvelopeHeader, seal
from cloud_sync.errors import AuditChainBroken, KeyDestroyed, PermanentSyncError
from cloud_sync.keys import DeviceIdentity, IngestPublicKey, enroll_request
from cloud_sync.outbox import Outbox
from cloud_sync.service import audit
from cloud_sync.service.app import Service, ServiceConfig, create_app
from cloud_sync.service.at_rest import record_aad
from cloud_sync.sync_client import HubCredentials, SyncClient, SyncConfig, enroll
from tests.cloud_sync.cloudsync_support import Clinic, hour_summary, make_clinic, make_service, new_patient_code, \
    running_server


@pytest.fixture(scope="module")
def cloud(tmp_path_factory) -> Iterator[tuple[Service, str]]:
    service = make_service(tmp_path_factory.mktemp("cloud"))
    with running_server(create_app(service.config, service=service)) as url:
        yield service, url
    service.close()


@dataclasses.dataclass
class Hub:
    creds: HubCredentials
    patient_id: str
    clinic: Clinic
    url: str

    def envelope(self, seq: int, hour: int | None = None, *, key: IngestPublicKey | None = None,
                 identity: DeviceIdentity | None = None) -> dict:
        key = key or self.creds.ingest_key
        identity = identity or self.creds.identity
        payload = hour_summary(random.Random(hour if hour is not None else seq), hour if hour is not None else seq)
        header = EnvelopeHeader(self.creds.device_id, identity.key_id, seq, key.key_id)
        return seal(payload.to_bytes(), header, key.x25519(), identity.private_key).to_json()

    def post(self, envelopes: list[dict], idempotency_key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return requests.post(f"{self.url}/v1/ingest/{self.creds.device_id}", json={"envelopes": envelopes},
                             headers=headers, timeout=10)


def new_hub(cloud, clinic: Clinic | None = None) -> Hub:
    service, url = cloud
    clinic = clinic or make_clinic(service)
    patient_id, code = new_patient_code(clinic)
    return Hub(enroll(url, code), patient_id, clinic, url)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def stored_seqs(service: Service, hub: Hub) -> list[int]:
    with service.db.transaction() as tx:
        return [r[0] for r in tx.all("SELECT seq FROM envelopes WHERE device_id = ? ORDER BY seq",
                                     (hub.creds.device_id,))]


def test_batches_store_once_and_duplicates_answer_200(cloud) -> None:
    service, _ = cloud
    hub = new_hub(cloud)
    first = hub.post([hub.envelope(s) for s in (1, 2, 3)])
    assert first.status_code == 200 and first.json()["acknowledged_seq"] == 3
    n_records = service.records.count(hub.patient_id)
    again = hub.post([hub.envelope(s) for s in (1, 2, 3)])  # re-sealed: new ciphertext, same content
    assert again.status_code == 200
    assert again.json()["duplicates"] == [1, 2, 3] and again.json()["acknowledged_seq"] == 3
    assert service.records.count(hub.patient_id) == n_records
    gap = hub.post([hub.envelope(5)])
    assert gap.status_code == 200 and gap.json()["acknowledged_seq"] == 3  # contiguous mark waits for 4
    assert hub.post([hub.envelope(4)]).json()["acknowledged_seq"] == 5


def test_tampered_envelopes_are_refused_and_nothing_is_stored(cloud) -> None:
    service, _ = cloud
    hub = new_hub(cloud)
    good = hub.envelope(1)
    flipped = dict(good, ciphertext=good["ciphertext"][:-3] + ("A" if good["ciphertext"][-3] != "A" else "B")
                   + good["ciphertext"][-2:])
    response = hub.post([hub.envelope(2), flipped])
    assert response.status_code == 401 and error_code(response) == "bad_signature"
    moved = dict(good, header=dict(good["header"], seq=9))
    assert error_code(hub.post([moved])) == "bad_signature"
    # header changed and re-signed by the (compromised) device key: the HPKE info binding still refuses it
    forged = hub.envelope(1)
    other = hub.envelope(3)
    forged_env = dict(other, ciphertext=forged["ciphertext"])
    from cloud_sync.envelope import Envelope, _signed_bytes, b64e  # noqa: PLC0415 - test of the binding itself
    env = Envelope.from_json(forged_env)
    forged_env["signature"] = b64e(hub.creds.identity.sign(_signed_bytes(env.header.canonical_bytes(),
                                                                         env.ciphertext)))
    response = hub.post([forged_env])
    assert response.status_code == 400 and error_code(response) == "tampered_envelope"
    garbage = hub.post([dict(good, ciphertext="!!!")])
    assert garbage.status_code == 422  # schema validation of the request body
    assert stored_seqs(service, hub) == []


def test_replays_store_nothing_and_reused_sequence_with_other_content_is_409(cloud) -> None:
    service, _ = cloud
    hub = new_hub(cloud)
    original = hub.envelope(1, hour=1)
    assert hub.post([original]).status_code == 200
    before = service.records.count(hub.patient_id)
    replay = hub.post([original])  # byte-identical replay
    assert replay.status_code == 200 and replay.json()["stored"] == [] and replay.json()["duplicates"] == [1]
    conflicting = hub.post([hub.envelope(1, hour=99)])
    assert conflicting.status_code == 409 and error_code(conflicting) == "replayed_sequence"
    assert service.records.count(hub.patient_id) == before


def test_idempotency_key_reuse_with_a_different_request_is_422(cloud) -> None:
    hub = new_hub(cloud)
    assert hub.post([hub.envelope(1, hour=1)], "k-1").status_code == 200
    assert hub.post([hub.envelope(1, hour=1)], "k-1").status_code == 200  # same request again: fine
    response = hub.post([hub.envelope(1, hour=1), hub.envelope(2)], "k-1")
    assert response.status_code == 422 and error_code(response) == "idempotency_key_reused"


def test_unknown_and_wrong_ingest_keys_are_refused(cloud) -> None:
    service, _ = cloud
    hub = new_hub(cloud)
    stranger = X25519PrivateKey.generate().public_key()
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    raw = stranger.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    unknown = hub.post([hub.envelope(1, key=IngestPublicKey("ik-doesnotexist", raw))])
    assert unknown.status_code == 400 and error_code(unknown) == "unknown_ingest_key"
    wrong = hub.post([hub.envelope(1, key=IngestPublicKey(hub.creds.ingest_key.key_id, raw))])
    assert wrong.status_code == 400 and error_code(wrong) == "tampered_envelope"
    assert stored_seqs(service, hub) == []


def test_unknown_device_and_foreign_device_key_are_401(cloud) -> None:
    hub = new_hub(cloud)
    other = new_hub(cloud)
    response = hub.post([hub.envelope(1, identity=other.creds.identity)])
    assert response.status_code == 401 and error_code(response) == "unknown_device_key"
    ghost = dataclasses.replace(hub, creds=dataclasses.replace(hub.creds, device_id="dev-ghost"))
    response = ghost.post([ghost.envelope(1)])
    assert response.status_code == 401 and error_code(response) == "unknown_device"
    # a device may only post under its own URL
    response = requests.post(f"{hub.url}/v1/ingest/{other.creds.device_id}", json={"envelopes": [hub.envelope(1)]},
                             timeout=10)
    assert response.status_code == 400 and error_code(response) == "malformed_envelope"


def test_revoked_device_is_403(cloud) -> None:
    hub = new_hub(cloud)
    assert hub.post([hub.envelope(1)]).status_code == 200
    revoke = requests.post(f"{hub.url}/v1/devices/{hub.creds.device_id}/revoke",
                           headers=bearer(hub.creds.patient_token), timeout=10)
    assert revoke.status_code == 200
    response = hub.post([hub.envelope(2)])
    assert response.status_code == 403 and error_code(response) == "device_revoked"
    refusal = audit.entries(cloud[0].db, hub.patient_id, limit=5)[0]
    assert (refusal.action, refusal.detail["code"]) == ("denied:ingest", "device_revoked")


def test_device_key_rotation_retires_the_old_key(cloud, tmp_path: Path) -> None:
    hub = new_hub(cloud)
    old = hub.creds.identity
    client = SyncClient(Outbox.open(tmp_path / "hub.db"), hub.creds, SyncConfig(hub.url))
    client.rotate_device_key()
    assert hub.post([hub.envelope(1)]).status_code == 200  # signed with the new key
    response = hub.post([hub.envelope(2, identity=old)])
    assert response.status_code == 401 and error_code(response) == "unknown_device_key"


def test_ingest_key_rotation_keeps_old_backlogs_readable_until_destroyed(cloud, tmp_path: Path) -> None:
    service, _ = cloud
    hub = new_hub(cloud)
    stale_hub = new_hub(cloud)  # will still hold the old key when it is destroyed
    old_key = hub.creds.ingest_key
    assert stale_hub.creds.ingest_key == old_key
    backlog = [hub.envelope(1), hub.envelope(2)]  # sealed before the rotation
    service.keyring.rotate()
    assert hub.post(backlog).status_code == 200  # retired keys still decrypt old backlogs
    service.keyring.rotate()
    service.keyring.destroy(old_key.key_id)
    response = hub.post([hub.envelope(3)])
    assert response.status_code == 400 and error_code(response) == "unknown_ingest_key"
    # the sync client refreshes the ingest key on unknown_ingest_key and carries on
    outbox = Outbox.open(tmp_path / "hub.db")
    for hour in range(3):
        outbox.enqueue(hour_summary(random.Random(hour), hour).to_bytes())
    client = SyncClient(outbox, stale_hub.creds, SyncConfig(stale_hub.url, request_backoff_factor_s=0.01))
    assert client.sync_once().acknowledged_seq == 3
    assert client.credentials.ingest_key.key_id == service.keyring.current().key_id != old_key.key_id
    assert stored_seqs(service, stale_hub) == [1, 2, 3]


def test_clinicians_need_consent_and_patients_see_only_themselves(cloud) -> None:
    service, url = cloud
    hub = new_hub(cloud)
    hub.post([hub.envelope(1)])
    records_url = f"{url}/v1/patients/{hub.patient_id}/records"
    own = requests.get(records_url, headers=bearer(hub.clinic.clinician_token), timeout=10)
    assert own.status_code == 200 and own.json()["records"]
    other_clinic = make_clinic(service, "Clinic B")
    cross = requests.get(records_url, headers=bearer(other_clinic.clinician_token), timeout=10)
    assert cross.status_code == 403 and error_code(cross) == "no_consent"
    other_patient = new_hub(cloud)
    cross_patient = requests.get(records_url, headers=bearer(other_patient.creds.patient_token), timeout=10)
    assert cross_patient.status_code == 403
    assert requests.get(records_url, headers=bearer(hub.creds.patient_token), timeout=10).status_code == 200
    assert requests.get(records_url, timeout=10).status_code == 401
    assert requests.get(records_url, headers=bearer("not-a-token"), timeout=10).status_code == 401
    with service.db.transaction() as tx:
        from cloud_sync.service.accounts import issue_token  # noqa: PLC0415
        admin = issue_token(tx, "admin", "ops")
    assert requests.get(records_url, headers=bearer(admin), timeout=10).status_code == 403
    # patient revokes consent for the clinic: the clinician is refused from then on; re-granting restores it
    consent_url = f"{url}/v1/patients/{hub.patient_id}/consents/{hub.clinic.clinic_id}"
    assert requests.delete(consent_url, headers=bearer(hub.creds.patient_token), timeout=10).status_code == 200
    refused = requests.get(records_url, headers=bearer(hub.clinic.clinician_token), timeout=10)
    assert refused.status_code == 403 and error_code(refused) == "no_consent"
    listing = requests.get(f"{url}/v1/patients", headers=bearer(hub.clinic.clinician_token), timeout=10).json()
    assert hub.patient_id not in {p["patient_id"] for p in listing["patients"]}
    assert requests.delete(consent_url, headers=bearer(other_patient.creds.patient_token), timeout=10).status_code == 403
    assert requests.put(consent_url, headers=bearer(hub.creds.patient_token), timeout=10).status_code == 200
    assert requests.get(records_url, headers=bearer(hub.clinic.clinician_token), timeout=10).status_code == 200
    denied = [e for e in audit.entries(service.db, hub.patient_id, limit=1000) if e.action.startswith("denied:")]
    assert len(denied) >= 4


def test_enrollment_codes_are_one_time_and_need_proof_of_possession(cloud) -> None:
    service, url = cloud
    clinic = make_clinic(service)
    _, code = new_patient_code(clinic)
    identity = DeviceIdentity.generate()
    bad = enroll_request(identity, code)
    bad["signature"] = enroll_request(DeviceIdentity.generate(), code)["signature"]
    refused = requests.post(f"{url}/v1/enroll", json=bad, timeout=10)
    assert refused.status_code == 403 and error_code(refused) == "enrollment_refused"
    assert requests.post(f"{url}/v1/enroll", json=enroll_request(identity, code), timeout=10).status_code == 200
    again = requests.post(f"{url}/v1/enroll", json=enroll_request(DeviceIdentity.generate(), code), timeout=10)
    assert again.status_code == 403 and error_code(again) == "enrollment_refused"
    issued = requests.post(f"{url}/v1/patients/{new_patient_code(clinic)[0]}/enrollment-codes",
                           headers=bearer(clinic.clinician_token), timeout=10)
    assert issued.status_code == 200 and len(issued.json()["code"]) == 23


def test_login_with_scrypt_password(cloud) -> None:
    service, url = cloud
    clinic = make_clinic(service)
    email = f"dr@{clinic.clinic_id}.example"
    with service.db.transaction() as tx:
        stored = tx.one("SELECT password_hash FROM clinicians WHERE email = ?", (email,))[0]
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    ok = requests.post(f"{url}/v1/auth/token", json={"email": email, "password": "correct horse battery"}, timeout=10)
    assert ok.status_code == 200
    assert requests.get(f"{url}/v1/patients", headers=bearer(ok.json()["access_token"]), timeout=10).status_code == 200
    wrong = requests.post(f"{url}/v1/auth/token", json={"email": email, "password": "wrong horse battery"}, timeout=10)
    assert wrong.status_code == 401 and error_code(wrong) == "unauthenticated"


def test_erasure_crypto_shreds_even_copies_of_the_rows(cloud, tmp_path: Path) -> None:
    service, url = cloud
    hub = new_hub(cloud)
    assert hub.post([hub.envelope(s) for s in (1, 2)]).status_code == 200
    with service.db.transaction() as tx:  # an attacker's (or a backup's) copy of the rows taken before erasure
        copy = tx.all("SELECT record_type, time_ms, device_id, seq, idx, nonce, ciphertext FROM records "
                      "WHERE patient_id = ?", (hub.patient_id,))
    assert copy
    hooked: list[str] = []
    service.erasure_hooks.append(lambda tx, patient_id: hooked.append(patient_id))
    erase = requests.delete(f"{url}/v1/patients/{hub.patient_id}", headers=bearer(hub.creds.patient_token), timeout=10)
    service.erasure_hooks.clear()
    assert hooked == [hub.patient_id]
    assert erase.status_code == 200 and erase.json()["deleted"]["records"] == len(copy)
    assert service.records.count(hub.patient_id) == 0
    # a fresh process with the same master key cannot decrypt the copied rows either
    fresh = Service(ServiceConfig(db_path=service.config.db_path, master_key=service.config.master_key))
    for record_type, time_ms, device_id, seq, idx, nonce, ciphertext in copy:
        with fresh.db.transaction() as tx, pytest.raises(KeyDestroyed):
            fresh.vault.decrypt_record(tx, hub.patient_id, nonce, ciphertext,
                                       record_aad(hub.patient_id, device_id, seq, idx, record_type, time_ms))
    with fresh.db.transaction() as tx:
        assert tx.one("SELECT wrapped_key FROM patient_keys WHERE patient_id = ?", (hub.patient_id,))[0] is None
        assert tx.one("SELECT display_name FROM patients WHERE patient_id = ?", (hub.patient_id,))[0] is None
    fresh.close()
    assert requests.get(f"{url}/v1/patients/{hub.patient_id}/records", headers=bearer(hub.clinic.clinician_token),
                        timeout=10).status_code in (403, 404)
    assert requests.get(f"{url}/v1/patients/{hub.patient_id}/records", headers=bearer(hub.creds.patient_token),
                        timeout=10).status_code == 401  # its token was revoked
    assert error_code(hub.post([hub.envelope(3)])) == "device_revoked"


def test_audit_chain_verifies_and_detects_edits(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    clinic = make_clinic(service)
    for _ in range(3):
        new_patient_code(clinic)
    with service.db.transaction() as tx:
        for i in range(5):
            audit.append(tx, "clinician:x", "read", f"pt-{i}", {"n": i})
    total = audit.verify(service.db)
    assert total == 5
    with pytest.raises(Exception, match="append-only"), service.db.transaction() as tx:
        tx.execute("UPDATE audit_log SET actor = 'clinician:y' WHERE entry_id = 3")
    with pytest.raises(Exception, match="append-only"), service.db.transaction() as tx:
        tx.execute("DELETE FROM audit_log WHERE entry_id = 5")
    with service.db.transaction() as tx:  # an attacker with the raw file drops the guards: the chain still tells
        tx.execute("DROP TRIGGER audit_log_no_update")
        tx.execute("DROP TRIGGER audit_log_no_delete")
        tx.execute("UPDATE audit_log SET actor = 'clinician:y' WHERE entry_id = 3")
    with pytest.raises(AuditChainBroken) as broken:
        audit.verify(service.db)
    assert broken.value.detail["entry_id"] == 3
    with service.db.transaction() as tx:
        tx.execute("UPDATE audit_log SET actor = 'clinician:x' WHERE entry_id = 3")
    assert audit.verify(service.db) == 5
    with service.db.transaction() as tx:
        tx.execute("DELETE FROM audit_log WHERE entry_id = 5")  # truncating the newest entry
    with pytest.raises(AuditChainBroken):
        audit.verify(service.db)
    service.close()


def test_every_data_access_is_audited(cloud) -> None:
    service, url = cloud
    hub = new_hub(cloud)
    hub.post([hub.envelope(1)])
    before = len(audit.entries(service.db, hub.patient_id, limit=10_000))
    for _ in range(3):
        requests.get(f"{url}/v1/patients/{hub.patient_id}/records", headers=bearer(hub.clinic.clinician_token),
                     params={"record_type": "glucose"}, timeout=10)
    after = audit.entries(service.db, hub.patient_id, limit=10_000)
    assert len(after) == before + 3
    assert after[0].action == "GET /v1/patients/{patient_id}/records"
    assert after[0].actor == f"clinician:{hub.clinic.clinician_id}"
    audit.verify(service.db)


def test_device_key_rotation_survives_a_lost_answer(cloud, tmp_path: Path) -> None:
    """The service accepts a rotation but the hub crashes before seeing the answer: on restart the hub still
    holds the old (now retired) key and a pending new one; the first refusal makes it adopt the pending key."""
    service, url = cloud
    hub = new_hub(cloud)
    hub.creds.save(tmp_path / "creds")
    new_identity = DeviceIdentity.generate()
    hub.creds.pending_identity = new_identity
    hub.creds.save(tmp_path / "creds")  # what rotate_device_key persists before its request
    from cloud_sync.keys import rotate_request  # noqa: PLC0415
    body = rotate_request(hub.creds.device_id, hub.creds.identity, new_identity)
    assert requests.post(f"{url}/v1/devices/{hub.creds.device_id}/keys", json=body, timeout=10).status_code == 200
    # ...crash: the answer is lost. Restart from files.
    restarted = HubCredentials.load(tmp_path / "creds")
    assert restarted.identity.key_id != new_identity.key_id and restarted.pending_identity is not None
    outbox = Outbox.open(tmp_path / "hub.db")
    outbox.enqueue(hour_summary(random.Random(1), 1).to_bytes())
    client = SyncClient(outbox, restarted, SyncConfig(url), credentials_dir=tmp_path / "creds")
    assert client.sync_once().acknowledged_seq == 1
    assert HubCredentials.load(tmp_path / "creds").identity.key_id == new_identity.key_id
    assert not (tmp_path / "creds" / "device.key.next").exists()
    client.rotate_device_key()  # and a normal rotation persists the new key too
    assert HubCredentials.load(tmp_path / "creds").identity.key_id == client.credentials.identity.key_id


def test_hub_restored_from_an_old_backup_does_not_reuse_sequence_numbers(cloud, tmp_path: Path) -> None:
    """The SD card dies; the hub's database comes back from a backup older than what the service holds."""
    service, url = cloud
    hub = new_hub(cloud)
    outbox = Outbox.open(tmp_path / "hub.db")
    for hour in range(2):
        outbox.enqueue(hour_summary(random.Random(hour), hour).to_bytes())
    backup = tmp_path / "backup.db"
    outbox.db.conn.execute(f"VACUUM INTO '{backup}'")
    for hour in range(2, 6):
        outbox.enqueue(hour_summary(random.Random(hour), hour).to_bytes())
    assert SyncClient(outbox, hub.creds, SyncConfig(url)).sync_once().acknowledged_seq == 6
    outbox.close()
    restored = Outbox.open(backup)  # knows seqs 1..2 only, cursor 0
    client = SyncClient(restored, hub.creds, SyncConfig(url))
    client.sync_once()  # 1..2 are duplicates; the service says 6: the outbox skips ahead
    assert restored.last_seq() == 6 and restored.cursor("cloud") == 6
    new_seq = restored.enqueue(hour_summary(random.Random(100), 100).to_bytes())
    assert new_seq == 7
    assert client.sync_once().acknowledged_seq == 7
    # A record written after the restore but before the first contact takes a number the service already holds
    # with other content: refused loudly as a replay and kept in the outbox, never silently dropped or merged.
    other = Outbox.open(tmp_path / "second-restore.db")
    other.enqueue(hour_summary(random.Random(5), 5).to_bytes())
    with pytest.raises(PermanentSyncError) as refused:
        SyncClient(other, hub.creds, SyncConfig(url)).sync_once()
    assert refused.value.detail["error_code"] == "replayed_sequence" and other.pending_count("cloud") == 1
