"""Envelope format: round trips, header binding, signatures and typed errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.envelope import (
    AlertEvent,
    BadSignature,
    CarbEntry,
    Envelope,
    EnvelopeHeader,
    InsulinDose,
    InvalidPayload,
    MalformedEnvelope,
    ReadingSeries,
    RecommendationOutcome,
    SummaryPayload,
    TamperedEnvelope,
    TwinEstimate,
    UnsupportedSchema,
    b64e,
    open_envelope,
    seal,
    verify_signature,
)

INGEST = X25519PrivateKey.generate()
DEVICE = Ed25519PrivateKey.generate()
T0 = 1_767_225_600_000

times = st.integers(min_value=T0, max_value=T0 + 30 * 86_400_000)
finite = lambda lo, hi: st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)  # noqa: E731
text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20)

readings = st.lists(st.tuples(st.integers(0, 86_400), st.integers(1, 1500)), min_size=1, max_size=50).map(
    lambda xs: ReadingSeries(T0, tuple(o for o, _ in xs), tuple(g for _, g in xs)))
payloads = st.builds(
    lambda start, r, ins, carbs, twin, recs, alerts: SummaryPayload(start, start + 3_600_000, r, tuple(ins),
                                                                    tuple(carbs), tuple(twin), tuple(recs),
                                                                    tuple(alerts)),
    times,
    st.none() | readings,
    st.lists(st.builds(InsulinDose, times, finite(0, 100), st.sampled_from(["bolus", "basal"]), finite(0, 1440)),
             max_size=5),
    st.lists(st.builds(CarbEntry, times, finite(0, 500)), max_size=5),
    st.lists(st.builds(TwinEstimate, times, st.dictionaries(st.text(min_size=1, max_size=10).filter(
        lambda s: "\x00" not in s), finite(-1e6, 1e6), max_size=4)), max_size=3),
    st.lists(st.builds(RecommendationOutcome, times, text, finite(0, 100), st.none() | st.booleans(),
                       st.text(max_size=50)), max_size=3),
    st.lists(st.builds(AlertEvent, times, text, st.sampled_from(["info", "warning", "urgent"]), st.text(max_size=30)),
             max_size=3),
)
headers = st.builds(EnvelopeHeader, st.text("abcdef0123456789-", min_size=1, max_size=40),
                    st.text("abcdef0123456789-", min_size=1, max_size=40), st.integers(1, 2**63 - 1),
                    st.text("abcdef0123456789-", min_size=1, max_size=20))


@settings(max_examples=60, deadline=None)
@given(payloads, headers)
def test_round_trip_through_json_wire_form(payload: SummaryPayload, header: EnvelopeHeader) -> None:
    envelope = seal(payload.to_bytes(), header, INGEST.public_key(), DEVICE)
    wire = json.loads(json.dumps(envelope.to_json()))
    received = Envelope.from_json(wire)
    verify_signature(received, DEVICE.public_key())
    decoded = SummaryPayload.from_bytes(open_envelope(received, INGEST))
    assert decoded.to_json() == payload.to_json()
    assert decoded.records() == payload.records()


@settings(max_examples=60, deadline=None)
@given(payloads, st.data())
def test_any_flipped_ciphertext_bit_is_detected(payload: SummaryPayload, data: st.DataObject) -> None:
    header = EnvelopeHeader("dev-1", "dk-1", 7, "ik-1")
    envelope = seal(payload.to_bytes(), header, INGEST.public_key(), DEVICE)
    position = data.draw(st.integers(0, len(envelope.ciphertext) * 8 - 1))
    flipped = bytearray(envelope.ciphertext)
    flipped[position // 8] ^= 1 << (position % 8)
    tampered = dataclasses.replace(envelope, ciphertext=bytes(flipped))
    with pytest.raises(BadSignature):
        verify_signature(tampered, DEVICE.public_key())
    with pytest.raises(TamperedEnvelope):
        open_envelope(tampered, INGEST)


@pytest.mark.parametrize("change", [{"seq": 8}, {"device_id": "dev-2"}, {"key_id": "ik-2"}, {"device_key_id": "dk-2"}])
def test_header_is_bound_into_encryption_and_signature(change: dict) -> None:
    payload = SummaryPayload(T0, T0 + 1, ReadingSeries(T0, (0,), (100,)))
    envelope = seal(payload.to_bytes(), EnvelopeHeader("dev-1", "dk-1", 7, "ik-1"), INGEST.public_key(), DEVICE)
    moved = dataclasses.replace(envelope, header=dataclasses.replace(envelope.header, **change))
    with pytest.raises(BadSignature):
        verify_signature(moved, DEVICE.public_key())
    # even an attacker holding the device key cannot re-sign a ciphertext under another header
    resigned = seal(b"x", moved.header, INGEST.public_key(), DEVICE)
    forged = dataclasses.replace(resigned, ciphertext=envelope.ciphertext)
    forged = dataclasses.replace(forged, signature=DEVICE.sign(
        b"glucotwin/envelope-signature/v1" + len(moved.header.canonical_bytes()).to_bytes(4, "big")
        + moved.header.canonical_bytes() + envelope.ciphertext))
    verify_signature(forged, DEVICE.public_key())
    with pytest.raises(TamperedEnvelope):
        open_envelope(forged, INGEST)


def test_wrong_keys_are_refused() -> None:
    envelope = seal(b'{"x":1}', EnvelopeHeader("d", "k", 1, "ik"), INGEST.public_key(), DEVICE)
    with pytest.raises(BadSignature):
        verify_signature(envelope, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(TamperedEnvelope):
        open_envelope(envelope, X25519PrivateKey.generate())


@pytest.mark.parametrize("mutate, error", [
    (lambda w: w["header"].update(schema_version=2), UnsupportedSchema),
    (lambda w: w["header"].update(payload_type="firmware"), UnsupportedSchema),
    (lambda w: w["header"].update(suite="P256-AES"), UnsupportedSchema),
    (lambda w: w["header"].update(seq=0), MalformedEnvelope),
    (lambda w: w["header"].update(seq=True), MalformedEnvelope),
    (lambda w: w["header"].update(seq="5"), MalformedEnvelope),
    (lambda w: w["header"].update(extra=1), MalformedEnvelope),
    (lambda w: w["header"].pop("key_id"), MalformedEnvelope),
    (lambda w: w.update(ciphertext="!!notbase64"), MalformedEnvelope),
    (lambda w: w.update(ciphertext=b64e(b"short")), MalformedEnvelope),
    (lambda w: w.update(signature=b64e(b"\x00" * 10)), BadSignature),
])
def test_malformed_wire_forms_raise_typed_errors(mutate, error) -> None:
    wire = seal(b'{"x":1}', EnvelopeHeader("d", "k", 1, "ik"), INGEST.public_key(), DEVICE).to_json()
    mutate(wire)
    with pytest.raises(error):
        Envelope.from_json(wire)


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"schema_version": 9, "period_start_ms": 0, "period_end_ms": 1}',
    b'{"schema_version": 1, "period_start_ms": 5, "period_end_ms": 1}',
    b'{"schema_version": 1, "period_start_ms": 0, "period_end_ms": 1, "readings": {"start_ms": 0, '
    b'"offsets_s": [0, 1], "glucose_mg_dl": [100]}}',
    b'{"schema_version": 1, "period_start_ms": 0, "period_end_ms": 1, "readings": {"start_ms": 0, '
    b'"offsets_s": [0], "glucose_mg_dl": [0]}}',
    b'{"schema_version": 1, "period_start_ms": 0, "period_end_ms": 1, "insulin": [{"time_ms": 0, '
    b'"insulin_u": -1, "kind": "bolus"}]}',
    b'{"schema_version": 1, "period_start_ms": 0, "period_end_ms": 1, "insulin": [{"time_ms": 0, '
    b'"insulin_u": 1, "kind": "inhaled"}]}',
    b'{"schema_version": 1, "period_start_ms": 0, "period_end_ms": 1, "recommendations": [{"time_ms": 0, '
    b'"recommendation_id": "r", "insulin_u": 1, "followed": "yes"}]}',
])
def test_invalid_payloads_raise_typed_errors(body: bytes) -> None:
    with pytest.raises((InvalidPayload, UnsupportedSchema)):
        SummaryPayload.from_bytes(body)
