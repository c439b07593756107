"""Fuzz every CGMS / RACP / SOCP decoder: random and mutated bytes may only raise DecodeError subclasses.

A few thousand examples in all (fast, CI-safe). An IndexError, struct.error, plain ValueError or any other
exception escaping a decoder fails the test; so does a decoded value that violates its documented range.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.codec.cgms import (
    AnnunciationOrder,
    CgmMeasurement,
    SensorStatusAnnunciation,
    decode_cgm_feature,
    decode_cgm_measurements,
    decode_cgm_status,
    decode_session_run_time,
    decode_session_start_time,
    encode_cgm_measurement,
)
from firmware_bridge.codec.cgms_socp import (
    CalibrationRecord,
    SetAlertLevel,
    SetCalibrationValue,
    CgmAlert,
    decode_socp,
    decode_socp_reply,
    decode_socp_request,
    encode_socp,
    socp_error_response,
)
from firmware_bridge.codec.racp import RacpRequest, decode_racp, decode_racp_request, encode_racp, racp_error_response
from firmware_bridge.errors import DecodeError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DECODERS: dict[str, Callable[[bytes], object]] = {
    "measurements": lambda d: decode_cgm_measurements(d, e2e_crc=False),
    "measurements-crc": lambda d: decode_cgm_measurements(d, e2e_crc=True),
    "measurements-nrf5": lambda d: decode_cgm_measurements(
        d, e2e_crc=False, annunciation_order=AnnunciationOrder.WARNING_CAL_TEMP_STATUS
    ),
    "feature": decode_cgm_feature,
    "status": lambda d: decode_cgm_status(d, e2e_crc=False),
    "status-crc": lambda d: decode_cgm_status(d, e2e_crc=True),
    "session-start": lambda d: decode_session_start_time(d, e2e_crc=False),
    "session-run": lambda d: decode_session_run_time(d, e2e_crc=True),
    "racp": decode_racp,
    "racp-request": decode_racp_request,
    "socp": lambda d: decode_socp(d, e2e_crc=False),
    "socp-request-crc": lambda d: decode_socp_request(d, e2e_crc=True),
    "socp-reply": lambda d: decode_socp_reply(d, e2e_crc=False),
}


def _check_measurements(values: list[CgmMeasurement]) -> None:
    for m in values:
        assert math.isfinite(m.glucose_mg_dl) and m.glucose_mg_dl >= 0
        assert 0 <= m.time_offset_min <= 0xFFFF
        assert m.trend_mg_dl_min is None or math.isfinite(m.trend_mg_dl_min)
        assert m.quality_percent is None or 0 <= m.quality_percent <= 100


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(data=st.binary(max_size=48))
def test_random_bytes_raise_only_decode_errors(name: str, data: bytes) -> None:
    try:
        value = DECODERS[name](data)
    except DecodeError as error:
        if name.startswith("racp"):
            racp_error_response(error, data)  # a server can always answer
        if name.startswith("socp"):
            socp_error_response(error, data)
        return
    if name.startswith("measurements"):
        _check_measurements(value)  # type: ignore[arg-type]


def _valid_samples() -> list[tuple[str, bytes]]:
    full = CgmMeasurement(
        120.0, 42, SensorStatusAnnunciation.SESSION_STOPPED | SensorStatusAnnunciation.RESULT_BELOW_HYPO, -1.5, 95.0
    )
    return [
        ("measurements", encode_cgm_measurement(full, e2e_crc=False) * 2),
        ("measurements-crc", encode_cgm_measurement(full, e2e_crc=True) * 3),
        ("racp", encode_racp(RacpRequest.report_range(10, 500))),
        ("socp", encode_socp(SetCalibrationValue(CalibrationRecord(100.0, 30)), e2e_crc=False)),
        ("socp-request-crc", encode_socp(SetAlertLevel(CgmAlert.HYPO, 70.0), e2e_crc=True)),
    ]


@pytest.mark.parametrize(("name", "valid"), _valid_samples())
@FUZZ
@given(data=st.data())
def test_mutated_valid_values_raise_only_decode_errors(name: str, valid: bytes, data: st.DataObject) -> None:
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    candidate = bytes(mutated[:cut]) if data.draw(st.booleans()) else bytes(mutated)
    try:
        value = DECODERS[name](candidate)
    except DecodeError:
        return
    if name.startswith("measurements"):
        _check_measurements(value)  # type: ignore[arg-type]
