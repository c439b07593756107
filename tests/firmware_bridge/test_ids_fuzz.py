"""Fuzz every IDS decoder: random octets, and valid values with random corruption, must give a decoded
message or a DecodeError subclass, never any other exception. Where a value decodes, re-encoding it must
decode to the same message, and encoding never refuses what was decoded (the decoder never returns something the encoder would not stand by)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.codec import ids
from firmware_bridge.codec.crc import append_crc
from firmware_bridge.errors import DecodeError

Decode = Callable[[bytes], Any]
Encode = Callable[[Any], bytes]

# (name, decoder, encoder for the decoded message or None when the variant has no canonical re-encoding)
CASES: list[tuple[str, Decode, Encode | None]] = [
    ("features", ids.decode_idd_features, None),
    ("status", ids.decode_idd_status, ids.encode_idd_status),
    ("status e2e auto-number", lambda d: ids.decode_idd_status(d, e2e=True, number_format="auto"), None),
    ("status changed", ids.decode_idd_status_changed, ids.encode_idd_status_changed),
    ("status changed e2e", lambda d: ids.decode_idd_status_changed(d, e2e=True), None),
    ("annunciation", lambda d: ids.decode_idd_annunciation_status(d, status_octets=1), ids.encode_idd_annunciation_status),
    ("annunciation auto", ids.decode_idd_annunciation_status, None),
    ("annunciation e2e", lambda d: ids.decode_idd_annunciation_status(d, e2e=True), None),
    ("status reader request", ids.decode_status_reader_request, ids.encode_status_reader_request),
    ("status reader request e2e", lambda d: ids.decode_status_reader_request(d, e2e=True), None),
    ("status reader response", ids.decode_status_reader_response, ids.encode_status_reader_response),
    ("status reader response auto", lambda d: ids.decode_status_reader_response(d, number_format="auto"), None),
    ("command request", ids.decode_command_request, ids.encode_command_request),
    ("command request float", lambda d: ids.decode_command_request(d, number_format="float"),
     lambda m: ids.encode_command_request(m, number_format="float")),
    ("command request e2e auto", lambda d: ids.decode_command_request(d, e2e=True, number_format="auto"), None),
    ("command response", ids.decode_command_response, ids.encode_command_response),
    ("racp request", ids.decode_racp_request, None),  # tolerated trailing filter byte is not re-encoded
    ("racp request e2e", lambda d: ids.decode_racp_request(d, e2e=True), None),
    ("racp response", ids.decode_racp_response, None),  # operator byte optional
    ("history", lambda d: ids.decode_history_data(d), ids.encode_history_data),
    ("history auto", lambda d: ids.decode_history_data(d, number_format="auto"), None),
    ("history e2e spec", lambda d: ids.decode_history_data(d, e2e=True, counter="absent"),
     lambda m: ids.encode_history_data(m, e2e=True)),
    ("history e2e auto", lambda d: ids.decode_history_data(d, e2e=True, number_format="auto"), None),
]

# Valid seeds, so that corruption reaches deep into the layouts instead of failing at the op code.
SEEDS: list[bytes] = [
    bytes.fromhex("ffff006400fede801f"),
    ids.encode_idd_status(ids.IddStatus(ids.TherapyControlState.RUN, ids.OperationalState.READY, 150.5, True)),
    ids.encode_idd_annunciation_status(ids.IddAnnunciationStatus(ids.Annunciation(
        1, ids.AnnunciationType.OCCLUSION_DETECTED, ids.AnnunciationState.PENDING, (1, None, 3, None, 5)))),
    ids.encode_command_request(ids.SetBolus(ids.BolusType.MULTIWAVE, 1.5, 2.0, 60, 10, 2, ids.BolusActivationType.MANUAL)),
    ids.encode_command_request(ids.SetTbr.relative(1.5, 60, template_number=1, delivery_context=ids.TbrDeliveryContext.AP_CONTROLLER)),
    ids.encode_command_response(ids.CommandResponseCode(ids.CommandOpcode.SET_BOLUS, ids.ResponseCode.SUCCESS)),
    ids.encode_status_reader_request(ids.GetActiveBolusDelivery(3, ids.BolusValueSelection.DELIVERED)),
    ids.encode_status_reader_response(ids.ActiveBasalRateDeliveryResponse(
        1, 0.85, ids.ActiveTbr(ids.TbrType.ABSOLUTE, 1.2, 60, 30), 2, ids.BasalDeliveryContext.DEVICE_BASED)),
    ids.encode_status_reader_response(ids.ActiveBolusIdsResponse((1, 2, 3))),
    ids.encode_racp_request(ids.RacpRequest(ids.RacpOpcode.REPORT_STORED_RECORDS, ids.RacpOperator.WITHIN_RANGE,
                                            ids.RacpFilterType.SEQUENCE_NUMBER, 10, 20)),
    ids.encode_racp_response(ids.RacpResponseCode(ids.RacpOpcode.REPORT_STORED_RECORDS, ids.RacpResult.SUCCESS)),
    ids.encode_history_data(ids.HistoryEvent(ids.HistoryEventType.BOLUS_DELIVERED_PART_2_OF_2, 5, 60,
                                             ids.BolusDeliveredPart2(30, ids.BolusActivationType.MANUAL, ids.BolusEndReason.CANCELED, 7))),
    ids.encode_history_data(ids.HistoryEvent(ids.HistoryEventType.TBR_ADJUSTMENT_ENDED, 6, 60,
                                             ids.TbrEnded(ids.TbrType.RELATIVE, 30, ids.TbrEndReason.CANCELED, 1, 2))),
]
SEEDS.append(ids.encode_history_data(ids.HistoryEvent(ids.HistoryEventType.REFERENCE_TIME, 1, 0, ids.ReferenceTime(
    ids.RecordingReason.SET_DATE_TIME, 2026, 11, 23, 6, 30, 0, 4, 0))))
SEEDS += [append_crc(seed + b"\x01") for seed in SEEDS[1:]]


@st.composite
def fuzz_values(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=24))
    value = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["flip", "truncate", "extend", "set"]))
        if action == "flip" and value:
            bit = draw(st.integers(0, len(value) * 8 - 1))
            value[bit // 8] ^= 1 << (bit % 8)
        elif action == "truncate" and value:
            del value[draw(st.integers(0, len(value) - 1)):]
        elif action == "extend":
            value += draw(st.binary(min_size=1, max_size=4))
        elif value:
            value[draw(st.integers(0, len(value) - 1))] = draw(st.integers(0, 255))
    return bytes(value)


@pytest.mark.parametrize(("name", "decode", "encode"), CASES, ids=[case[0] for case in CASES])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fuzz_values())
def test_only_decode_errors_escape(name: str, decode: Decode, encode: Encode | None, data: bytes) -> None:
    try:
        message = decode(data)
    except DecodeError:
        return
    if encode is None:
        return
    assert decode(encode(message)) == message
