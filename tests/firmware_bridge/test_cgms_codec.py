"""CGMS codecs (0x181F): hand-built values from the spec layout, typed errors, hypothesis round trips.

Hand-built byte strings use ``struct`` and the field layout of CGMS v1.0.1 (see ble.md), independently of the
encoders; SFLOAT examples: 0x0064 = 100, 0xF037 = 5.5, 0x0118 = 280.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codec.cgms import (
    CGM_MEASUREMENT_MAX_RECORD_OCTETS,
    TIME_ZONE_UNKNOWN,
    AnnunciationOrder,
    CgmFeature,
    CgmFeatureFlags,
    CgmMeasurement,
    CgmSampleLocation,
    CgmStatus,
    CgmType,
    DstOffset,
    SensorStatusAnnunciation,
    SessionRunTime,
    SessionStartTime,
    decode_cgm_feature,
    decode_cgm_measurement,
    decode_cgm_measurements,
    decode_cgm_status,
    decode_session_run_time,
    decode_session_start_time,
    encode_cgm_feature,
    encode_cgm_measurement,
    encode_cgm_status,
    encode_session_run_time,
    encode_session_start_time,
    pack_cgm_measurements,
    split_cgm_measurement_records,
)
from firmware_bridge.codec.cgms_socp import (
    ATT_ERROR_INVALID_CRC,
    ATT_ERROR_MISSING_CRC,
    AlertLevelResponse,
    CalibrationRecord,
    CalibrationStatus,
    CalibrationValueResponse,
    CgmAlert,
    CommunicationIntervalResponse,
    GetAlertLevel,
    GetCalibrationValue,
    GetCommunicationInterval,
    ResetDeviceSpecificAlert,
    SetAlertLevel,
    SetCalibrationValue,
    SetCommunicationInterval,
    SocpOpcode,
    SocpResponse,
    SocpResponseCode,
    StartSession,
    StopSession,
    decode_socp,
    decode_socp_reply,
    decode_socp_request,
    encode_socp,
    socp_att_error,
    socp_error_response,
)
from firmware_bridge.codec.crc import append_crc
from firmware_bridge.codec.numbers import decode_sfloat, encode_sfloat
from firmware_bridge.errors import CrcError, DecodeError, EncodeError, FlagsError, LengthError, ReservedValueError

A = SensorStatusAnnunciation
SPEC = AnnunciationOrder.STATUS_CAL_TEMP_WARNING
NRF5 = AnnunciationOrder.WARNING_CAL_TEMP_STATUS


def record(flags: int, glucose_raw: int, offset_min: int, tail: bytes = b"", *, crc: bool = False) -> bytes:
    """A CGM Measurement record laid out by hand: Size | Flags | SFLOAT | u16 | tail [| CRC]."""
    body = struct.pack("<BHH", flags, glucose_raw, offset_min) + tail
    size = 1 + len(body) + (2 if crc else 0)
    data = bytes([size]) + body
    return append_crc(data) if crc else data


# ----------------------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------------------


def sfloat_raw(min_mantissa: int = -2045, max_mantissa: int = 2045) -> st.SearchStrategy[int]:
    """Raw SFLOATs that are numbers (not specials), canonicalised the way the encoder writes them."""
    return st.builds(
        lambda e, m: encode_sfloat(decode_sfloat(((e & 0xF) << 12) | (m & 0x0FFF))),
        st.integers(-8, 7),
        st.integers(min_mantissa, max_mantissa),
    )


glucose_raw = sfloat_raw(0, 2045)
trend_raw = sfloat_raw()
quality_raw = sfloat_raw(0, 2045).filter(lambda raw: decode_sfloat(raw) <= 100)
annunciations = st.builds(
    lambda s, c, w: A(s | c << 8 | w << 16), st.integers(0, 0x3F), st.integers(0, 0x3F), st.integers(0, 0xFF)
)
measurements = st.builds(
    CgmMeasurement,
    glucose_raw.map(decode_sfloat),
    st.integers(0, 0xFFFF),
    annunciations,
    st.none() | trend_raw.map(decode_sfloat),
    st.none() | quality_raw.map(decode_sfloat),
)
orders = st.sampled_from(list(AnnunciationOrder))


# ----------------------------------------------------------------------------------------------------------
# CGM Measurement: hand-built examples
# ----------------------------------------------------------------------------------------------------------


def test_minimal_record_by_hand() -> None:
    data = bytes([0x06, 0x00, 0x64, 0x00, 0x05, 0x00])  # 100 mg/dL at 5 min
    assert decode_cgm_measurements(data, e2e_crc=False) == [CgmMeasurement(100.0, 5)]
    assert encode_cgm_measurement(CgmMeasurement(100.0, 5), e2e_crc=False) == data


def test_full_record_spec_order_by_hand() -> None:
    # Flags E3: trend, quality, warning, cal/temp and status octets. 280 mg/dL at 256 min;
    # Status 0x01 session stopped, Cal/Temp 0x08 calibration required, Warning 0x08 above hyper;
    # trend 0xF037 = 5.5 mg/dL/min, quality 0x0064 = 100 %.
    data = bytes([0x0D, 0xE3, 0x18, 0x01, 0x00, 0x01, 0x01, 0x08, 0x08, 0x37, 0xF0, 0x64, 0x00])
    expected = CgmMeasurement(
        280.0, 256, A.SESSION_STOPPED | A.CALIBRATION_REQUIRED | A.RESULT_ABOVE_HYPER, 5.5, 100.0
    )
    assert decode_cgm_measurement(data, e2e_crc=False) == expected
    assert encode_cgm_measurement(expected, e2e_crc=False) == data


def test_annunciation_order_nordic_nrf5_versus_spec() -> None:
    # Three octets 0x10, 0x02, 0x01 after the time offset.
    data = record(0xE0, 0x0064, 3, bytes([0x10, 0x02, 0x01]))
    nrf5 = decode_cgm_measurement(data, e2e_crc=False, annunciation_order=NRF5)
    assert nrf5.annunciation == A.RATE_OF_DECREASE_EXCEEDED | A.CALIBRATION_NOT_ALLOWED | A.SESSION_STOPPED
    spec = decode_cgm_measurement(data, e2e_crc=False, annunciation_order=SPEC)
    assert spec.annunciation == A.DEVICE_SPECIFIC_ALERT | A.CALIBRATION_NOT_ALLOWED | A.RESULT_BELOW_PATIENT_LOW
    assert encode_cgm_measurement(nrf5, e2e_crc=False, annunciation_order=NRF5) == data
    assert encode_cgm_measurement(spec, e2e_crc=False, annunciation_order=SPEC) == data


@pytest.mark.parametrize(("flag", "octet", "expected"), [
    (0x80, 0x02, A.DEVICE_BATTERY_LOW),
    (0x40, 0x20, A.SENSOR_TEMPERATURE_TOO_LOW),
    (0x20, 0x80, A.RESULT_ABOVE_DEVICE_RANGE),
])
def test_single_annunciation_octet_decodes_the_same_in_both_orders(flag: int, octet: int, expected: A) -> None:
    data = record(flag, 0x0064, 1, bytes([octet]))
    for order in AnnunciationOrder:
        assert decode_cgm_measurement(data, e2e_crc=False, annunciation_order=order).annunciation == expected


def test_crc_protected_record_and_corruptions() -> None:
    data = record(0x01, 0x0118, 10, struct.pack("<H", 0xF037), crc=True)
    assert data[0] == 10 == len(data)  # Size counts the CRC
    assert decode_cgm_measurement(data, e2e_crc=True) == CgmMeasurement(280.0, 10, trend_mg_dl_min=5.5)
    bad_crc = data[:-1] + bytes([data[-1] ^ 0x01])
    with pytest.raises(CrcError):
        decode_cgm_measurement(bad_crc, e2e_crc=True)
    bad_glucose = data[:2] + bytes([data[2] ^ 0x04]) + data[3:]
    with pytest.raises(CrcError):
        decode_cgm_measurements(bad_glucose, e2e_crc=True)
    # The same record read as if E2E were off: the Size does not match the flags.
    with pytest.raises(LengthError, match="without E2E-CRC"):
        decode_cgm_measurement(data, e2e_crc=False)
    # A record without CRC read with E2E on.
    with pytest.raises((CrcError, LengthError)):
        decode_cgm_measurement(record(0x00, 0x0064, 1), e2e_crc=True)


def test_multi_record_notification_by_hand() -> None:
    first = record(0x00, 0x0064, 0)
    second = record(0x01, 0x0118, 5, struct.pack("<H", 0xF037))
    third = record(0x80, 0x0064, 10, bytes([0x02]))
    data = first + second + third
    assert decode_cgm_measurements(data, e2e_crc=False) == [
        CgmMeasurement(100.0, 0),
        CgmMeasurement(280.0, 5, trend_mg_dl_min=5.5),
        CgmMeasurement(100.0, 10, A.DEVICE_BATTERY_LOW),
    ]
    assert split_cgm_measurement_records(data) == [first, second, third]
    with pytest.raises(LengthError):
        decode_cgm_measurements(data + second[:4], e2e_crc=False)  # truncated last record
    with pytest.raises(LengthError):
        decode_cgm_measurements(data + b"\x00", e2e_crc=False)  # Size 0 would never advance


@pytest.mark.parametrize(("data", "error"), [
    (b"", LengthError),
    (bytes([0x07, 0x00, 0x64, 0x00, 0x05, 0x00]), LengthError),  # Size 7, 6 octets
    (bytes([0x05, 0x00, 0x64, 0x00, 0x05]), LengthError),  # Size 5 too small for the fixed fields
    (record(0x01, 0x0064, 5), LengthError),  # trend flag set, no trend octets
    (record(0x00, 0x0064, 5, b"\x00\x00"), LengthError),  # extra octets
    (record(0x04, 0x0064, 5), FlagsError),  # reserved flag bit 2
    (record(0x10, 0x0064, 5), FlagsError),  # reserved flag bit 4
    (record(0x00, 0x07FF, 5), ReservedValueError),  # NaN glucose
    (record(0x00, 0x0800, 5), ReservedValueError),  # NRes glucose
    (record(0x00, 0x07FE, 5), ReservedValueError),  # +INF glucose
    (record(0x00, 0x0801, 5), ReservedValueError),  # reserved SFLOAT
    (record(0x00, 0x0FFF, 5), ReservedValueError),  # -1 mg/dL
    (record(0x01, 0x0064, 5, struct.pack("<H", 0x07FE)), ReservedValueError),  # +INF trend
    (record(0x02, 0x0064, 5, struct.pack("<H", 101)), ReservedValueError),  # quality 101 %
    (record(0x80, 0x0064, 5, b"\x40"), FlagsError),  # reserved status bit 6
    (record(0x40, 0x0064, 5, b"\x80"), FlagsError),  # reserved cal/temp bit 7
])
def test_malformed_measurements_raise_typed_errors(data: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error):
        decode_cgm_measurements(data, e2e_crc=False)


def test_nan_trend_and_quality_mean_not_available() -> None:
    data = record(0x03, 0x0064, 5, struct.pack("<HH", 0x07FF, 0x0800))
    assert decode_cgm_measurement(data, e2e_crc=False) == CgmMeasurement(100.0, 5)


@pytest.mark.parametrize("measurement", [
    CgmMeasurement(math.nan, 1),
    CgmMeasurement(math.inf, 1),
    CgmMeasurement(-1.0, 1),
    CgmMeasurement(1e12, 1),  # SFLOAT tops out near 2.045e10
    CgmMeasurement(100.0, 0x10000),
    CgmMeasurement(100.0, -1),
    CgmMeasurement(100.0, 1, quality_percent=150.0),
    CgmMeasurement(100.0, 1, trend_mg_dl_min=math.nan),
    CgmMeasurement(100.0, 1, A(0x40)),
])
def test_unrepresentable_measurements_raise_encode_error(measurement: CgmMeasurement) -> None:
    with pytest.raises(EncodeError):
        encode_cgm_measurement(measurement, e2e_crc=False)


def test_pack_respects_mtu_23_and_247() -> None:
    full = CgmMeasurement(100.0, 1, A.SESSION_STOPPED | A.CALIBRATION_REQUIRED | A.RESULT_BELOW_HYPO, 1.5, 90.0)
    assert len(encode_cgm_measurement(full, e2e_crc=True)) == CGM_MEASUREMENT_MAX_RECORD_OCTETS == 15
    assert [len(n) for n in pack_cgm_measurements([full] * 3, mtu=23, e2e_crc=True)] == [15, 15, 15]
    minimal = [CgmMeasurement(100.0, i) for i in range(5)]
    assert [len(n) for n in pack_cgm_measurements(minimal, mtu=23, e2e_crc=True)] == [16, 16, 8]
    assert [len(n) for n in pack_cgm_measurements(minimal, mtu=247, e2e_crc=False)] == [30]
    assert pack_cgm_measurements([], mtu=23, e2e_crc=False) == []
    with pytest.raises(EncodeError):
        pack_cgm_measurements([full], mtu=17, e2e_crc=True)


# ----------------------------------------------------------------------------------------------------------
# CGM Measurement: properties
# ----------------------------------------------------------------------------------------------------------


@given(measurements, st.booleans(), orders)
def test_measurement_round_trip(measurement: CgmMeasurement, crc: bool, order: AnnunciationOrder) -> None:
    data = encode_cgm_measurement(measurement, e2e_crc=crc, annunciation_order=order)
    assert data[0] == len(data)
    assert decode_cgm_measurement(data, e2e_crc=crc, annunciation_order=order) == measurement


@given(
    glucose_raw,
    st.integers(0, 0xFFFF),
    st.integers(0, 0x3F),
    st.integers(0, 0x3F),
    st.integers(0, 0xFF),
    st.none() | trend_raw,
    st.none() | quality_raw,
    st.booleans(),
    orders,
)
def test_hand_laid_measurement_bytes_round_trip(
    glucose: int, offset: int, status: int, cal_temp: int, warning: int,
    trend: int | None, quality: int | None, crc: bool, order: AnnunciationOrder,
) -> None:
    flags = (0x01 if trend is not None else 0) | (0x02 if quality is not None else 0)
    octets = {0x80: status, 0x40: cal_temp, 0x20: warning}
    wire_order = (0x80, 0x40, 0x20) if order is SPEC else (0x20, 0x40, 0x80)
    tail = b""
    for flag in wire_order:
        if octets[flag]:
            flags |= flag
            tail += bytes([octets[flag]])
    tail += b"" if trend is None else struct.pack("<H", trend)
    tail += b"" if quality is None else struct.pack("<H", quality)
    data = record(flags, glucose, offset, tail, crc=crc)
    decoded = decode_cgm_measurement(data, e2e_crc=crc, annunciation_order=order)
    assert decoded.glucose_mg_dl == decode_sfloat(glucose)
    assert decoded.time_offset_min == offset
    assert int(decoded.annunciation) == status | cal_temp << 8 | warning << 16
    assert decoded.trend_mg_dl_min == (None if trend is None else decode_sfloat(trend))
    assert decoded.quality_percent == (None if quality is None else decode_sfloat(quality))
    assert encode_cgm_measurement(decoded, e2e_crc=crc, annunciation_order=order) == data


@settings(max_examples=60)
@given(st.lists(measurements, max_size=25), st.sampled_from([23, 27, 64, 185, 247]), st.booleans())
def test_pack_then_decode_gives_back_every_record_in_order(
    records: list[CgmMeasurement], mtu: int, crc: bool
) -> None:
    notifications = pack_cgm_measurements(records, mtu=mtu, e2e_crc=crc)
    assert all(0 < len(n) <= mtu - 3 for n in notifications)
    decoded = [m for n in notifications for m in decode_cgm_measurements(n, e2e_crc=crc)]
    assert decoded == records
    # Greedy: the first record of each notification would not have fitted in the previous one.
    for previous, following in zip(notifications, notifications[1:]):
        assert len(previous) + following[0] > mtu - 3


# ----------------------------------------------------------------------------------------------------------
# CGM Feature
# ----------------------------------------------------------------------------------------------------------


def test_feature_without_e2e_by_hand() -> None:
    # Calibration (bit 0), trend (bit 15), quality (bit 16); ISF (9) / subcutaneous (5); CRC 0xFFFF.
    data = bytes([0x01, 0x80, 0x01, 0x59, 0xFF, 0xFF])
    feature = decode_cgm_feature(data)
    assert feature.features == CgmFeatureFlags.CALIBRATION | CgmFeatureFlags.TREND_INFORMATION | CgmFeatureFlags.QUALITY
    assert feature.sample_type is CgmType.INTERSTITIAL_FLUID
    assert feature.sample_location is CgmSampleLocation.SUBCUTANEOUS_TISSUE
    assert not feature.e2e_crc_supported
    assert encode_cgm_feature(feature) == data
    with pytest.raises(CrcError):
        decode_cgm_feature(data[:4] + b"\x00\x00")


def test_feature_with_e2e_checks_its_crc() -> None:
    data = append_crc(bytes([0x00, 0x10, 0x00, 0x59]))  # bit 12 = E2E-CRC
    feature = decode_cgm_feature(data)
    assert feature.e2e_crc_supported and feature.features == CgmFeatureFlags.E2E_CRC
    with pytest.raises(CrcError):
        decode_cgm_feature(data[:-2] + b"\xff\xff")


@pytest.mark.parametrize(("data", "error"), [
    (bytes([0x00, 0x00, 0x02, 0x59, 0xFF, 0xFF]), FlagsError),  # bit 17 reserved
    (bytes([0x00, 0x00, 0x00, 0x50, 0xFF, 0xFF]), ReservedValueError),  # type 0
    (bytes([0x00, 0x00, 0x00, 0x69, 0xFF, 0xFF]), ReservedValueError),  # location 6
    (bytes([0x00, 0x00, 0x00, 0x59, 0xFF]), LengthError),
    (bytes([0x00, 0x00, 0x00, 0x59, 0xFF, 0xFF, 0x00]), LengthError),
])
def test_malformed_feature(data: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error):
        decode_cgm_feature(data)


@given(st.integers(0, (1 << 17) - 1), st.sampled_from(list(CgmType)), st.sampled_from(list(CgmSampleLocation)))
def test_feature_round_trip_both_ways(raw: int, sample_type: CgmType, location: CgmSampleLocation) -> None:
    feature = CgmFeature(CgmFeatureFlags(raw), sample_type, location)
    data = encode_cgm_feature(feature)
    assert decode_cgm_feature(data) == feature
    body = raw.to_bytes(3, "little") + bytes([location << 4 | sample_type])
    hand = append_crc(body) if raw & (1 << 12) else body + b"\xff\xff"
    assert data == hand


# ----------------------------------------------------------------------------------------------------------
# CGM Status, Session Run Time
# ----------------------------------------------------------------------------------------------------------


def test_status_by_hand() -> None:
    data = bytes([0x05, 0x00, 0x01, 0x00, 0x08])
    status = decode_cgm_status(data, e2e_crc=False)
    assert status == CgmStatus(5, A.SESSION_STOPPED | A.RESULT_ABOVE_HYPER)
    assert encode_cgm_status(status, e2e_crc=False) == data
    protected = append_crc(data)
    assert decode_cgm_status(protected, e2e_crc=True) == status
    with pytest.raises(CrcError):
        decode_cgm_status(protected[:-1] + bytes([protected[-1] ^ 0x80]), e2e_crc=True)
    with pytest.raises(LengthError):
        decode_cgm_status(data, e2e_crc=True)
    with pytest.raises(FlagsError):
        decode_cgm_status(bytes([0x05, 0x00, 0x80, 0x00, 0x00]), e2e_crc=False)


@given(st.integers(0, 0xFFFF), annunciations, st.booleans())
def test_status_round_trip_both_ways(offset: int, annunciation: A, crc: bool) -> None:
    status = CgmStatus(offset, annunciation)
    data = encode_cgm_status(status, e2e_crc=crc)
    hand = struct.pack("<H", offset) + int(annunciation).to_bytes(3, "little")
    assert data == (append_crc(hand) if crc else hand)
    assert decode_cgm_status(data, e2e_crc=crc) == status


def test_session_run_time_by_hand() -> None:
    assert decode_session_run_time(bytes([0xA8, 0x00]), e2e_crc=False) == SessionRunTime(168)
    protected = append_crc(bytes([0xA8, 0x00]))
    assert decode_session_run_time(protected, e2e_crc=True) == SessionRunTime(168)
    with pytest.raises(CrcError):
        decode_session_run_time(protected[:-2] + b"\x00\x00", e2e_crc=True)
    with pytest.raises(LengthError):
        decode_session_run_time(b"\xa8", e2e_crc=False)
    with pytest.raises(EncodeError):
        encode_session_run_time(SessionRunTime(70000), e2e_crc=False)


@given(st.integers(0, 0xFFFF), st.booleans())
def test_session_run_time_round_trip_both_ways(hours: int, crc: bool) -> None:
    data = encode_session_run_time(SessionRunTime(hours), e2e_crc=crc)
    assert data == (append_crc(struct.pack("<H", hours)) if crc else struct.pack("<H", hours))
    assert decode_session_run_time(data, e2e_crc=crc) == SessionRunTime(hours)


# ----------------------------------------------------------------------------------------------------------
# Session Start Time
# ----------------------------------------------------------------------------------------------------------


def test_session_start_time_by_hand() -> None:
    # 2026-03-29 03:30:00 local, time zone +4 quarter hours (UTC+1), DST +1 h (value 4) -> UTC+2.
    data = bytes([0xEA, 0x07, 0x03, 0x1D, 0x03, 0x1E, 0x00, 0x04, 0x04])
    value = decode_session_start_time(data, e2e_crc=False)
    assert value == SessionStartTime(2026, 3, 29, 3, 30, 0, 4, DstOffset.DAYLIGHT_TIME)
    moment = value.to_datetime()
    assert moment.utcoffset() == dt.timedelta(hours=2)
    assert moment == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone.utc)
    assert encode_session_start_time(value, e2e_crc=False) == data
    assert SessionStartTime.from_datetime(moment.astimezone(ZoneInfo("Europe/Berlin"))) == value
    assert decode_session_start_time(append_crc(data), e2e_crc=True) == value
    with pytest.raises(CrcError):
        decode_session_start_time(append_crc(data)[:-1] + b"\x00", e2e_crc=True)


def test_session_start_time_negative_half_hour_zone() -> None:
    moment = dt.datetime(2026, 1, 15, 12, 0, 5, 999_999, tzinfo=ZoneInfo("America/St_Johns"))  # UTC-3:30
    value = SessionStartTime.from_datetime(moment)
    assert (value.time_zone_quarter_hours, value.dst_offset) == (-14, DstOffset.STANDARD_TIME)
    assert encode_session_start_time(value, e2e_crc=False)[7] == 0xF2  # sint8 -14
    assert value.to_datetime() == moment.replace(microsecond=0)


@pytest.mark.parametrize("data", [
    bytes([0xEA, 0x07, 0x0D, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]),  # month 13
    bytes([0xEA, 0x07, 0x01, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00]),  # day 32
    bytes([0xEA, 0x07, 0x01, 0x01, 0x18, 0x00, 0x00, 0x00, 0x00]),  # hour 24
    bytes([0xEA, 0x07, 0x01, 0x01, 0x00, 0x3C, 0x00, 0x00, 0x00]),  # minute 60
    bytes([0xEA, 0x07, 0x01, 0x01, 0x00, 0x00, 0x3C, 0x00, 0x00]),  # second 60
    bytes([0xEA, 0x07, 0x01, 0x01, 0x00, 0x00, 0x00, 0x39, 0x00]),  # zone 57
    bytes([0xEA, 0x07, 0x01, 0x01, 0x00, 0x00, 0x00, 0xCF, 0x00]),  # zone -49
    bytes([0xEA, 0x07, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x03]),  # DST 3
    bytes([0x0A, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]),  # year 10
])
def test_session_start_time_reserved_values(data: bytes) -> None:
    with pytest.raises(ReservedValueError):
        decode_session_start_time(data, e2e_crc=False)


def test_session_start_time_unknowns_and_impossible_dates() -> None:
    unknown_zone = bytes([0xEA, 0x07, 0x01, 0x01, 0x00, 0x00, 0x00, 0x80, 0xFF])
    value = decode_session_start_time(unknown_zone, e2e_crc=False)
    assert value.time_zone_quarter_hours == TIME_ZONE_UNKNOWN and value.dst_offset is DstOffset.UNKNOWN
    assert value.utc_offset is None
    with pytest.raises(ReservedValueError):
        value.to_datetime()
    february_30 = decode_session_start_time(bytes([0xEA, 0x07, 0x02, 0x1E, 0, 0, 0, 0, 0]), e2e_crc=False)
    with pytest.raises(ReservedValueError):
        february_30.to_datetime()
    with pytest.raises(EncodeError):
        SessionStartTime.from_datetime(dt.datetime(2026, 1, 1))  # naive
    with pytest.raises(EncodeError):
        SessionStartTime.from_datetime(dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(minutes=10))))
    with pytest.raises(EncodeError):
        encode_session_start_time(SessionStartTime(2026, 13, 1, 0, 0, 0), e2e_crc=False)


@given(
    st.datetimes(min_value=dt.datetime(1582, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(-48, 56),
    st.sampled_from([d for d in DstOffset if d is not DstOffset.UNKNOWN]),
)
def test_session_start_time_datetime_round_trip(naive: dt.datetime, zone: int, dst: DstOffset) -> None:
    offset = dt.timedelta(minutes=15 * zone + 15 * int(dst))
    value = SessionStartTime(naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second, zone, dst)
    moment = value.to_datetime()
    assert moment.utcoffset() == offset
    assert moment.replace(tzinfo=None) == naive.replace(microsecond=0)
    data = encode_session_start_time(value, e2e_crc=False)
    assert data == struct.pack(
        "<HBBBBBbB", naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second, zone, dst
    )
    assert decode_session_start_time(data, e2e_crc=False) == value
    if dst is DstOffset.STANDARD_TIME:  # a fixed-offset tzinfo carries no DST information
        assert SessionStartTime.from_datetime(moment) == value


ZONES = (
    "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC",
    "Europe/Dublin", "Pacific/Chatham", "Antarctica/Troll", "Pacific/Kiritimati",
)


def test_session_start_time_folds_unrepresentable_dst_into_the_zone() -> None:
    winter_dublin = dt.datetime(2026, 1, 15, 9, 0, tzinfo=ZoneInfo("Europe/Dublin"))
    assert winter_dublin.dst() == dt.timedelta(hours=-1)  # tzdata's negative DST
    value = SessionStartTime.from_datetime(winter_dublin)
    assert (value.time_zone_quarter_hours, value.dst_offset) == (0, DstOffset.STANDARD_TIME)
    summer_berlin = SessionStartTime.from_datetime(dt.datetime(2026, 7, 1, tzinfo=ZoneInfo("Europe/Berlin")))
    assert (summer_berlin.time_zone_quarter_hours, summer_berlin.dst_offset) == (4, DstOffset.DAYLIGHT_TIME)


@given(
    st.datetimes(
        min_value=dt.datetime(1990, 1, 1),
        max_value=dt.datetime(2090, 1, 1),
        timezones=st.sampled_from([ZoneInfo(z) for z in ZONES]),
    ),
    st.booleans(),
)
def test_session_start_time_from_zoneinfo_round_trip(moment: dt.datetime, crc: bool) -> None:
    value = SessionStartTime.from_datetime(moment)
    decoded = decode_session_start_time(encode_session_start_time(value, e2e_crc=crc), e2e_crc=crc)
    assert decoded == value
    # Compare instants in UTC: PEP 495 makes times in a DST gap/fold unequal across zones.
    utc = dt.timezone.utc
    assert decoded.to_datetime().astimezone(utc) == moment.replace(microsecond=0).astimezone(utc)
    assert decoded.to_datetime().utcoffset() == moment.utcoffset()


# ----------------------------------------------------------------------------------------------------------
# CGM Specific Ops Control Point
# ----------------------------------------------------------------------------------------------------------


def test_socp_requests_by_hand() -> None:
    assert decode_socp(bytes([0x01, 0x05]), e2e_crc=False) == SetCommunicationInterval(5)
    assert decode_socp(bytes([0x0D, 0x46, 0x00]), e2e_crc=False) == SetAlertLevel(CgmAlert.HYPO, 70.0)
    assert decode_socp(bytes([0x13, 0x37, 0xF0]), e2e_crc=False) == SetAlertLevel(CgmAlert.RATE_OF_DECREASE, 5.5)
    assert decode_socp(bytes([0x11]), e2e_crc=False) == GetAlertLevel(CgmAlert.HYPER)
    assert decode_socp(bytes([0x05, 0xFF, 0xFF]), e2e_crc=False) == GetCalibrationValue(0xFFFF)
    assert decode_socp(bytes([0x1A]), e2e_crc=False) == StartSession()
    assert decode_socp(bytes([0x1B]), e2e_crc=False) == StopSession()
    assert decode_socp(bytes([0x19]), e2e_crc=False) == ResetDeviceSpecificAlert()
    # Calibration: 100 mg/dL at 30 min, capillary plasma (2) from finger (1), next at 720 min, record 3.
    calibration = bytes([0x04, 0x64, 0x00, 0x1E, 0x00, 0x12, 0xD0, 0x02, 0x03, 0x00, 0x00])
    assert decode_socp(calibration, e2e_crc=False) == SetCalibrationValue(
        CalibrationRecord(100.0, 30, CgmType.CAPILLARY_PLASMA, CgmSampleLocation.FINGER, 720, 3)
    )


def test_socp_responses_by_hand() -> None:
    assert decode_socp_reply(bytes([0x1C, 0x1A, 0x01]), e2e_crc=False) == SocpResponse(
        SocpOpcode.START_SESSION, SocpResponseCode.SUCCESS
    )
    assert decode_socp_reply(bytes([0x03, 0x05]), e2e_crc=False) == CommunicationIntervalResponse(5)
    assert decode_socp_reply(bytes([0x09, 0x18, 0x01]), e2e_crc=False) == AlertLevelResponse(CgmAlert.PATIENT_HIGH, 280.0)
    assert decode_socp_reply(bytes([0x1C, 0x63, 0x02]), e2e_crc=False) == SocpResponse(
        0x63, SocpResponseCode.OP_CODE_NOT_SUPPORTED
    )


def test_socp_crc_missing_invalid_and_valid() -> None:
    assert decode_socp(append_crc(bytes([0x1A])), e2e_crc=True) == StartSession()
    with pytest.raises(LengthError) as missing:
        decode_socp(bytes([0x1A]), e2e_crc=True)
    assert socp_att_error(missing.value) == ATT_ERROR_MISSING_CRC
    with pytest.raises(CrcError) as invalid:
        decode_socp(bytes([0x1A, 0x00, 0x00]), e2e_crc=True)
    assert socp_att_error(invalid.value) == ATT_ERROR_INVALID_CRC
    protected = encode_socp(SetAlertLevel(CgmAlert.HYPO, 70.0), e2e_crc=True)
    assert protected[:3] == bytes([0x0D, 0x46, 0x00]) and protected == append_crc(protected[:3])


@pytest.mark.parametrize(("data", "error", "code"), [
    (b"\x63", ReservedValueError, SocpResponseCode.OP_CODE_NOT_SUPPORTED),
    (b"\x00", ReservedValueError, SocpResponseCode.OP_CODE_NOT_SUPPORTED),
    (b"\x03\x05", ReservedValueError, SocpResponseCode.OP_CODE_NOT_SUPPORTED),  # a reply written as request
    (b"\x1a\x00", LengthError, SocpResponseCode.INVALID_OPERAND),
    (b"\x01", LengthError, SocpResponseCode.INVALID_OPERAND),
    (b"\x07\xff\x07", ReservedValueError, SocpResponseCode.INVALID_OPERAND),  # NaN alert level
    (bytes([0x04, 0x64, 0x00, 0x1E, 0x00, 0x12, 0xD0, 0x02, 0x03, 0x00, 0x08]), FlagsError, SocpResponseCode.INVALID_OPERAND),
    (bytes([0x04, 0x64, 0x00, 0x1E, 0x00, 0x00, 0xD0, 0x02, 0x03, 0x00, 0x00]), ReservedValueError, SocpResponseCode.INVALID_OPERAND),
])
def test_socp_malformed_requests_and_their_response_codes(
    data: bytes, error: type[DecodeError], code: SocpResponseCode
) -> None:
    with pytest.raises(error) as raised:
        decode_socp_request(data, e2e_crc=False)
    response = socp_error_response(raised.value, data)
    assert response.response_code is code and int(response.request_opcode) == data[0]
    assert socp_att_error(raised.value) is None


def test_socp_unrepresentable_messages() -> None:
    for message in (
        SetCommunicationInterval(256),
        SetAlertLevel(CgmAlert.HYPO, math.nan),
        GetCalibrationValue(-1),
        SetCalibrationValue(CalibrationRecord(-5.0, 0)),
        SetCalibrationValue(CalibrationRecord(100.0, 0, status=CalibrationStatus(0x08))),
        SocpResponse(300, SocpResponseCode.SUCCESS),
    ):
        with pytest.raises(EncodeError):
            encode_socp(message, e2e_crc=False)


calibration_records = st.builds(
    CalibrationRecord,
    glucose_raw.map(decode_sfloat),
    st.integers(0, 0xFFFF),
    st.sampled_from(list(CgmType)),
    st.sampled_from(list(CgmSampleLocation)),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 7).map(CalibrationStatus),
)
alerts = st.sampled_from(list(CgmAlert))
levels = trend_raw.map(decode_sfloat)
socp_messages = st.one_of(
    st.builds(SetCommunicationInterval, st.integers(0, 255)),
    st.just(GetCommunicationInterval()),
    st.builds(CommunicationIntervalResponse, st.integers(0, 255)),
    st.builds(SetCalibrationValue, calibration_records),
    st.builds(GetCalibrationValue, st.integers(0, 0xFFFF)),
    st.builds(CalibrationValueResponse, calibration_records),
    st.builds(SetAlertLevel, alerts, levels),
    st.builds(GetAlertLevel, alerts),
    st.builds(AlertLevelResponse, alerts, levels),
    st.just(ResetDeviceSpecificAlert()),
    st.just(StartSession()),
    st.just(StopSession()),
    st.builds(SocpResponse, st.sampled_from(list(SocpOpcode)) | st.integers(29, 255), st.sampled_from(list(SocpResponseCode))),
)


@given(socp_messages, st.booleans())
def test_socp_round_trip(message: object, crc: bool) -> None:
    data = encode_socp(message, e2e_crc=crc)  # type: ignore[arg-type]
    assert decode_socp(data, e2e_crc=crc) == message


@given(alerts, st.sampled_from(["set", "response"]), trend_raw, st.booleans())
def test_socp_hand_laid_alert_bytes_round_trip(alert: CgmAlert, kind: str, raw: int, crc: bool) -> None:
    opcode = alert.set_opcode if kind == "set" else alert.response_opcode
    body = struct.pack("<BH", opcode, raw)
    data = append_crc(body) if crc else body
    message = decode_socp(data, e2e_crc=crc)
    assert type(message) is (SetAlertLevel if kind == "set" else AlertLevelResponse)
    assert message.alert is alert and message.level == decode_sfloat(raw)  # type: ignore[union-attr]
    assert encode_socp(message, e2e_crc=crc) == data
