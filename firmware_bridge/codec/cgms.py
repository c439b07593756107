"""Pure codecs for the Bluetooth SIG Continuous Glucose Monitoring Service (CGMS, 0x181F).

Bytes in, frozen dataclasses out, and back. Decoders raise only :class:`firmware_bridge.errors.DecodeError`
subclasses (LengthError, FlagsError, CrcError, ReservedValueError); encoders raise :class:`EncodeError`.
Layouts follow CGMS v1.0.1 as mapped in /work/shared/reference/ble.md; all integers little-endian.

Public API (``__all__``)::

    SensorStatusAnnunciation  IntFlag over the three annunciation octets (bits 0-7 Status,
                              8-15 Cal/Temp, 16-23 Warning), as in the CGM Status characteristic
    AnnunciationOrder         wire order of the annunciation octets inside a CGM Measurement
    CgmMeasurementFlags       IntFlag of the measurement Flags octet
    CgmMeasurement            glucose_mg_dl, time_offset_min, annunciation, trend_mg_dl_min, quality_percent
    decode_cgm_measurement(record, *, e2e_crc, annunciation_order=SPEC) -> CgmMeasurement
    decode_cgm_measurements(data, *, e2e_crc, annunciation_order=SPEC) -> list[CgmMeasurement]
    split_cgm_measurement_records(data) -> list[bytes]          (framing only, by the Size octets)
    encode_cgm_measurement(measurement, *, e2e_crc, annunciation_order=SPEC) -> bytes
    pack_cgm_measurements(measurements, *, mtu, e2e_crc, annunciation_order=SPEC) -> list[bytes]
    CgmFeatureFlags, CgmType, CgmSampleLocation, CgmFeature
    decode_cgm_feature(data) -> CgmFeature ;  encode_cgm_feature(feature) -> bytes
    CgmStatus ; decode_cgm_status(data, *, e2e_crc) ; encode_cgm_status(status, *, e2e_crc)
    DstOffset, TIME_ZONE_UNKNOWN, SessionStartTime (to_datetime(), from_datetime(dt))
    decode_session_start_time(data, *, e2e_crc) ; encode_session_start_time(value, *, e2e_crc)
    SessionRunTime ; decode_session_run_time(data, *, e2e_crc) ; encode_session_run_time(value, *, e2e_crc)
    E2E_CRC_NOT_SUPPORTED (0xFFFF, the Feature CRC when E2E is off)

The CGM Specific Ops Control Point lives in :mod:`firmware_bridge.codec.cgms_socp`, the Record Access
Control Point in :mod:`firmware_bridge.codec.racp`.

Choices and their sources:

* ``e2e_crc`` is a required keyword everywhere it matters: it comes from CGM Feature bit 12 and decides
  whether a trailing CRC-16/MCRF4XX is present. With it on, a missing or wrong CRC is a CrcError/LengthError.
* Annunciation octet order: the CGMS specification (table "CGM Measurement"), Wireshark's packet-btatt.c and
  the nRF Connect SDK ``subsys/bluetooth/services/cgms`` put them Status, Cal/Temp, Warning
  (``AnnunciationOrder.STATUS_CAL_TEMP_WARNING``, the default). Nordic's nRF5 SDK ``nrf_ble_cgms`` writes them in
  flag-bit order Warning, Cal/Temp, Status (``AnnunciationOrder.WARNING_CAL_TEMP_STATUS``). With zero or one
  octet present both orders decode identically; with two or more the caller chooses (per device).
* The encoder includes an annunciation octet only when one of its bits is set (as both Nordic stacks do);
  the decoder accepts present-but-zero octets.
* Glucose must be a finite, non-negative SFLOAT: NaN/NRes/±INF/reserved raise ReservedValueError (a NaN
  glucose is not a reading). Trend and quality are optional: NaN or NRes there decode as ``None`` (not
  available) so that a valid glucose is not lost; ±INF/reserved raise. Quality must lie in 0..100 %.
* Reserved bits (measurement Flags bits 2-4, annunciation bits 6-7 and 14-15, feature bits 17-23) raise
  FlagsError.
* CGM Feature always carries the CRC field; when E2E is not supported it must be 0xFFFF (else CrcError).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag

from ..errors import CrcError, EncodeError, FlagsError, LengthError, ReservedValueError
from ._wire import Reader, finite_sfloat_bytes, sint8_byte, uint_bytes
from .crc import append_crc, check_and_strip_crc
from .numbers import SFLOAT_NAN, SFLOAT_NRES

__all__ = [
    "CGM_MEASUREMENT_MAX_RECORD_OCTETS",
    "E2E_CRC_NOT_SUPPORTED",
    "TIME_ZONE_UNKNOWN",
    "AnnunciationOrder",
    "CgmFeature",
    "CgmFeatureFlags",
    "CgmMeasurement",
    "CgmMeasurementFlags",
    "CgmSampleLocation",
    "CgmStatus",
    "CgmType",
    "DstOffset",
    "SensorStatusAnnunciation",
    "SessionRunTime",
    "SessionStartTime",
    "decode_cgm_feature",
    "decode_cgm_measurement",
    "decode_cgm_measurements",
    "decode_cgm_status",
    "decode_session_run_time",
    "decode_session_start_time",
    "encode_cgm_feature",
    "encode_cgm_measurement",
    "encode_cgm_status",
    "encode_session_run_time",
    "encode_session_start_time",
    "pack_cgm_measurements",
    "split_cgm_measurement_records",
]

MEASUREMENT = "CGM Measurement (0x2AA7)"
FEATURE = "CGM Feature (0x2AA8)"
STATUS = "CGM Status (0x2AA9)"
SESSION_START_TIME = "CGM Session Start Time (0x2AAA)"
SESSION_RUN_TIME = "CGM Session Run Time (0x2AAB)"

E2E_CRC_NOT_SUPPORTED = 0xFFFF
# Size + Flags + Glucose + Time Offset + 3 annunciation octets + Trend + Quality + CRC.
CGM_MEASUREMENT_MAX_RECORD_OCTETS = 1 + 1 + 2 + 2 + 3 + 2 + 2 + 2
_MEASUREMENT_MIN_RECORD_OCTETS = 6


def _strip_crc(characteristic: str, data: bytes, e2e_crc: bool) -> bytes:
    return check_and_strip_crc(characteristic, data) if e2e_crc else bytes(data)


def _with_crc(body: bytes, e2e_crc: bool) -> bytes:
    return append_crc(body) if e2e_crc else body


# --------------------------------------------------------------------------------------------------
# Sensor Status Annunciation
# --------------------------------------------------------------------------------------------------


class SensorStatusAnnunciation(IntFlag):
    """The 24 annunciation bits: octet 0 Status, octet 1 Cal/Temp, octet 2 Warning (CGMS 3.2 / 3.4)."""

    # Status octet
    SESSION_STOPPED = 1 << 0
    DEVICE_BATTERY_LOW = 1 << 1
    SENSOR_TYPE_INCORRECT = 1 << 2
    SENSOR_MALFUNCTION = 1 << 3
    DEVICE_SPECIFIC_ALERT = 1 << 4
    GENERAL_DEVICE_FAULT = 1 << 5
    # Cal/Temp octet
    TIME_SYNCHRONIZATION_REQUIRED = 1 << 8
    CALIBRATION_NOT_ALLOWED = 1 << 9
    CALIBRATION_RECOMMENDED = 1 << 10
    CALIBRATION_REQUIRED = 1 << 11
    SENSOR_TEMPERATURE_TOO_HIGH = 1 << 12
    SENSOR_TEMPERATURE_TOO_LOW = 1 << 13
    # Warning octet
    RESULT_BELOW_PATIENT_LOW = 1 << 16
    RESULT_ABOVE_PATIENT_HIGH = 1 << 17
    RESULT_BELOW_HYPO = 1 << 18
    RESULT_ABOVE_HYPER = 1 << 19
    RATE_OF_DECREASE_EXCEEDED = 1 << 20
    RATE_OF_INCREASE_EXCEEDED = 1 << 21
    RESULT_BELOW_DEVICE_RANGE = 1 << 22
    RESULT_ABOVE_DEVICE_RANGE = 1 << 23

    @property
    def status_octet(self) -> int:
        return int(self) & 0xFF

    @property
    def cal_temp_octet(self) -> int:
        return (int(self) >> 8) & 0xFF

    @property
    def warning_octet(self) -> int:
        return (int(self) >> 16) & 0xFF


_ANNUNCIATION_VALID = 0xFF3F3F
NO_ANNUNCIATION = SensorStatusAnnunciation(0)


def _annunciation(characteristic: str, raw: int, data: bytes) -> SensorStatusAnnunciation:
    if raw & ~_ANNUNCIATION_VALID:
        raise FlagsError(characteristic, f"reserved sensor status annunciation bits 0x{raw & ~_ANNUNCIATION_VALID:06X}", data)
    return SensorStatusAnnunciation(raw)


def _check_annunciation_for_encoding(field: str, value: SensorStatusAnnunciation) -> int:
    raw = int(value)
    if not 0 <= raw <= 0xFFFFFF or raw & ~_ANNUNCIATION_VALID:
        raise EncodeError(f"{field}: reserved sensor status annunciation bits in 0x{raw:X}")
    return raw


class AnnunciationOrder(Enum):
    """Order of the annunciation octets in a CGM Measurement (see module docstring for sources)."""

    STATUS_CAL_TEMP_WARNING = "status-cal/temp-warning"  # CGMS spec, Wireshark, nRF Connect SDK
    WARNING_CAL_TEMP_STATUS = "warning-cal/temp-status"  # Nordic nRF5 SDK (flag-bit order)

    SPEC = STATUS_CAL_TEMP_WARNING  # alias


# --------------------------------------------------------------------------------------------------
# CGM Measurement 0x2AA7
# --------------------------------------------------------------------------------------------------


class CgmMeasurementFlags(IntFlag):
    TREND_PRESENT = 0x01
    QUALITY_PRESENT = 0x02
    WARNING_OCTET_PRESENT = 0x20
    CAL_TEMP_OCTET_PRESENT = 0x40
    STATUS_OCTET_PRESENT = 0x80


_MEASUREMENT_FLAGS_VALID = 0xE3

# (flag, shift of the octet inside the 24-bit annunciation)
_OCTETS_IN_ORDER: dict[AnnunciationOrder, tuple[tuple[CgmMeasurementFlags, int], ...]] = {
    AnnunciationOrder.STATUS_CAL_TEMP_WARNING: (
        (CgmMeasurementFlags.STATUS_OCTET_PRESENT, 0),
        (CgmMeasurementFlags.CAL_TEMP_OCTET_PRESENT, 8),
        (CgmMeasurementFlags.WARNING_OCTET_PRESENT, 16),
    ),
    AnnunciationOrder.WARNING_CAL_TEMP_STATUS: (
        (CgmMeasurementFlags.WARNING_OCTET_PRESENT, 16),
        (CgmMeasurementFlags.CAL_TEMP_OCTET_PRESENT, 8),
        (CgmMeasurementFlags.STATUS_OCTET_PRESENT, 0),
    ),
}


@dataclass(frozen=True)
class CgmMeasurement:
    """One CGM record. ``time_offset_min`` counts minutes since the session start (u16)."""

    glucose_mg_dl: float
    time_offset_min: int
    annunciation: SensorStatusAnnunciation = NO_ANNUNCIATION
    trend_mg_dl_min: float | None = None
    quality_percent: float | None = None


def _optional_sfloat(reader: Reader, field: str) -> float | None:
    raw = reader.u16(field)
    if raw in (SFLOAT_NAN, SFLOAT_NRES):
        return None
    return Reader(reader.characteristic, raw.to_bytes(2, "little")).sfloat(field)


def decode_cgm_measurement(
    record: bytes,
    *,
    e2e_crc: bool,
    annunciation_order: AnnunciationOrder = AnnunciationOrder.SPEC,
) -> CgmMeasurement:
    """Decode ONE record whose Size octet equals ``len(record)`` (the Size counts the CRC)."""
    record = bytes(record)
    if not record:
        raise LengthError(MEASUREMENT, "empty record", record)
    size = record[0]
    if size != len(record):
        raise LengthError(MEASUREMENT, f"Size field says {size} octets, record has {len(record)}", record)
    body = _strip_crc(MEASUREMENT, record, e2e_crc)
    reader = Reader(MEASUREMENT, body)
    reader.u8("Size")
    flags = reader.u8("Flags")
    if flags & ~_MEASUREMENT_FLAGS_VALID:
        raise FlagsError(MEASUREMENT, f"reserved Flags bits 0x{flags & ~_MEASUREMENT_FLAGS_VALID:02X} set", record)
    octets = bin(flags & 0xE0).count("1")
    trend = bool(flags & CgmMeasurementFlags.TREND_PRESENT)
    quality = bool(flags & CgmMeasurementFlags.QUALITY_PRESENT)
    expected = _MEASUREMENT_MIN_RECORD_OCTETS + octets + 2 * trend + 2 * quality + (2 if e2e_crc else 0)
    if size != expected:
        crc_note = "with" if e2e_crc else "without"
        raise LengthError(
            MEASUREMENT, f"Size field says {size} octets, Flags 0x{flags:02X} {crc_note} E2E-CRC imply {expected}", record
        )
    glucose = reader.sfloat("CGM Glucose Concentration")
    if glucose < 0:
        raise ReservedValueError(MEASUREMENT, f"negative glucose concentration {glucose} mg/dL", record)
    time_offset = reader.u16("Time Offset")
    raw_annunciation = 0
    for flag, shift in _OCTETS_IN_ORDER[annunciation_order]:
        if flags & flag:
            raw_annunciation |= reader.u8(f"annunciation octet {flag.name}") << shift
    annunciation = _annunciation(MEASUREMENT, raw_annunciation, record)
    trend_value = _optional_sfloat(reader, "CGM Trend Information") if trend else None
    quality_value = _optional_sfloat(reader, "CGM Quality") if quality else None
    if quality_value is not None and not 0 <= quality_value <= 100:
        raise ReservedValueError(MEASUREMENT, f"CGM Quality {quality_value} % outside 0..100", record)
    reader.end()
    return CgmMeasurement(glucose, time_offset, annunciation, trend_value, quality_value)


def split_cgm_measurement_records(data: bytes) -> list[bytes]:
    """Split one notification into its records by their Size octets (framing only, no field checks).

    Useful to keep the good records of a notification whose later record is corrupt.
    """
    data = bytes(data)
    if not data:
        raise LengthError(MEASUREMENT, "empty notification", data)
    records = []
    offset = 0
    while offset < len(data):
        size = data[offset]
        if size < _MEASUREMENT_MIN_RECORD_OCTETS:
            raise LengthError(MEASUREMENT, f"record at offset {offset} has Size {size} < {_MEASUREMENT_MIN_RECORD_OCTETS}", data)
        if offset + size > len(data):
            raise LengthError(
                MEASUREMENT, f"record at offset {offset} has Size {size}, only {len(data) - offset} octets left", data
            )
        records.append(data[offset : offset + size])
        offset += size
    return records


def decode_cgm_measurements(
    data: bytes,
    *,
    e2e_crc: bool,
    annunciation_order: AnnunciationOrder = AnnunciationOrder.SPEC,
) -> list[CgmMeasurement]:
    """Decode a whole notification: one or more records back to back. Any bad record raises."""
    return [
        decode_cgm_measurement(record, e2e_crc=e2e_crc, annunciation_order=annunciation_order)
        for record in split_cgm_measurement_records(data)
    ]


def _optional_sfloat_bytes(value: float | None, field: str) -> bytes:
    return b"" if value is None else finite_sfloat_bytes(value, field)


def encode_cgm_measurement(
    measurement: CgmMeasurement,
    *,
    e2e_crc: bool,
    annunciation_order: AnnunciationOrder = AnnunciationOrder.SPEC,
) -> bytes:
    """Encode one record (Size octet first, CRC last when ``e2e_crc``)."""
    m = measurement
    if not isinstance(m.glucose_mg_dl, (int, float)) or not m.glucose_mg_dl >= 0:
        raise EncodeError(f"{MEASUREMENT}: glucose {m.glucose_mg_dl!r} mg/dL must be a finite number >= 0")
    if m.quality_percent is not None and not 0 <= m.quality_percent <= 100:
        raise EncodeError(f"{MEASUREMENT}: quality {m.quality_percent!r} % outside 0..100")
    raw_annunciation = _check_annunciation_for_encoding(MEASUREMENT, m.annunciation)
    flags = 0
    annunciation_octets = bytearray()
    for flag, shift in _OCTETS_IN_ORDER[annunciation_order]:
        octet = (raw_annunciation >> shift) & 0xFF
        if octet:
            flags |= flag
            annunciation_octets.append(octet)
    if m.trend_mg_dl_min is not None:
        flags |= CgmMeasurementFlags.TREND_PRESENT
    if m.quality_percent is not None:
        flags |= CgmMeasurementFlags.QUALITY_PRESENT
    glucose = finite_sfloat_bytes(m.glucose_mg_dl, "CGM Glucose Concentration")
    fields = (
        bytes([flags])
        + glucose
        + uint_bytes(m.time_offset_min, 2, "Time Offset (min)")
        + bytes(annunciation_octets)
        + _optional_sfloat_bytes(m.trend_mg_dl_min, "CGM Trend Information")
        + _optional_sfloat_bytes(m.quality_percent, "CGM Quality")
    )
    size = 1 + len(fields) + (2 if e2e_crc else 0)
    return _with_crc(bytes([size]) + fields, e2e_crc)


def pack_cgm_measurements(
    measurements: Iterable[CgmMeasurement],
    *,
    mtu: int,
    e2e_crc: bool,
    annunciation_order: AnnunciationOrder = AnnunciationOrder.SPEC,
) -> list[bytes]:
    """Pack records, in order, into as few notifications as fit ``mtu - 3`` octets each.

    Raises :class:`EncodeError` if a single record does not fit (only possible for an MTU below 18).
    """
    payload_limit = mtu - 3
    notifications: list[bytes] = []
    current = b""
    for measurement in measurements:
        record = encode_cgm_measurement(measurement, e2e_crc=e2e_crc, annunciation_order=annunciation_order)
        if len(record) > payload_limit:
            raise EncodeError(f"{MEASUREMENT}: a {len(record)}-octet record does not fit MTU {mtu} (payload {payload_limit})")
        if len(current) + len(record) > payload_limit:
            notifications.append(current)
            current = b""
        current += record
    if current:
        notifications.append(current)
    return notifications


# --------------------------------------------------------------------------------------------------
# CGM Feature 0x2AA8
# --------------------------------------------------------------------------------------------------


class CgmFeatureFlags(IntFlag):
    CALIBRATION = 1 << 0
    PATIENT_HIGH_LOW_ALERTS = 1 << 1
    HYPO_ALERTS = 1 << 2
    HYPER_ALERTS = 1 << 3
    RATE_OF_INCREASE_DECREASE_ALERTS = 1 << 4
    DEVICE_SPECIFIC_ALERT = 1 << 5
    SENSOR_MALFUNCTION_DETECTION = 1 << 6
    SENSOR_TEMPERATURE_HIGH_LOW_DETECTION = 1 << 7
    SENSOR_RESULT_HIGH_LOW_DETECTION = 1 << 8
    LOW_BATTERY_DETECTION = 1 << 9
    SENSOR_TYPE_ERROR_DETECTION = 1 << 10
    GENERAL_DEVICE_FAULT = 1 << 11
    E2E_CRC = 1 << 12
    MULTIPLE_BOND = 1 << 13
    MULTIPLE_SESSIONS = 1 << 14
    TREND_INFORMATION = 1 << 15
    QUALITY = 1 << 16


_FEATURE_FLAGS_VALID = (1 << 17) - 1


class CgmType(IntEnum):
    """Low nibble of the Type-Sample Location octet."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class CgmSampleLocation(IntEnum):
    """High nibble of the Type-Sample Location octet."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    SUBCUTANEOUS_TISSUE = 5
    NOT_AVAILABLE = 15


def _enum_or_error(enum: type[IntEnum], raw: int, characteristic: str, field: str, data: bytes) -> IntEnum:
    try:
        return enum(raw)
    except ValueError:
        raise ReservedValueError(characteristic, f"{field} {raw} is reserved", data) from None


@dataclass(frozen=True)
class CgmFeature:
    features: CgmFeatureFlags
    sample_type: CgmType = CgmType.INTERSTITIAL_FLUID
    sample_location: CgmSampleLocation = CgmSampleLocation.SUBCUTANEOUS_TISSUE

    @property
    def e2e_crc_supported(self) -> bool:
        return bool(self.features & CgmFeatureFlags.E2E_CRC)


def decode_cgm_feature(data: bytes) -> CgmFeature:
    """Decode the 6-octet Feature value; the CRC is checked if bit 12 is set, else it must be 0xFFFF."""
    data = bytes(data)
    if len(data) != 6:
        raise LengthError(FEATURE, f"expected 6 octets, got {len(data)}", data)
    reader = Reader(FEATURE, data)
    raw_features = reader.u24("CGM Feature")
    type_location = reader.u8("Type-Sample Location")
    crc = reader.u16("E2E-CRC")
    if raw_features & CgmFeatureFlags.E2E_CRC:
        check_and_strip_crc(FEATURE, data)
    elif crc != E2E_CRC_NOT_SUPPORTED:
        raise CrcError(FEATURE, f"E2E-CRC not supported, CRC field must be 0xFFFF, got 0x{crc:04X}", data)
    if raw_features & ~_FEATURE_FLAGS_VALID:
        raise FlagsError(FEATURE, f"reserved feature bits 0x{raw_features & ~_FEATURE_FLAGS_VALID:06X}", data)
    sample_type = _enum_or_error(CgmType, type_location & 0x0F, FEATURE, "Type", data)
    location = _enum_or_error(CgmSampleLocation, type_location >> 4, FEATURE, "Sample Location", data)
    return CgmFeature(CgmFeatureFlags(raw_features), CgmType(sample_type), CgmSampleLocation(location))


def encode_cgm_feature(feature: CgmFeature) -> bytes:
    raw = int(feature.features)
    if not 0 <= raw <= _FEATURE_FLAGS_VALID:
        raise EncodeError(f"{FEATURE}: reserved feature bits in 0x{raw:X}")
    try:
        sample_type = CgmType(feature.sample_type)
        location = CgmSampleLocation(feature.sample_location)
    except ValueError as error:
        raise EncodeError(f"{FEATURE}: {error}") from None
    body = raw.to_bytes(3, "little") + bytes([(int(location) << 4) | int(sample_type)])
    if feature.e2e_crc_supported:
        return append_crc(body)
    return body + E2E_CRC_NOT_SUPPORTED.to_bytes(2, "little")


# --------------------------------------------------------------------------------------------------
# CGM Status 0x2AA9
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgmStatus:
    time_offset_min: int
    annunciation: SensorStatusAnnunciation = NO_ANNUNCIATION


def decode_cgm_status(data: bytes, *, e2e_crc: bool) -> CgmStatus:
    data = bytes(data)
    expected = 5 + (2 if e2e_crc else 0)
    if len(data) != expected:
        raise LengthError(STATUS, f"expected {expected} octets, got {len(data)}", data)
    reader = Reader(STATUS, _strip_crc(STATUS, data, e2e_crc))
    time_offset = reader.u16("Time Offset")
    annunciation = _annunciation(STATUS, reader.u24("Sensor Status"), data)
    reader.end()
    return CgmStatus(time_offset, annunciation)


def encode_cgm_status(status: CgmStatus, *, e2e_crc: bool) -> bytes:
    raw = _check_annunciation_for_encoding(STATUS, status.annunciation)
    body = uint_bytes(status.time_offset_min, 2, "Time Offset (min)") + raw.to_bytes(3, "little")
    return _with_crc(body, e2e_crc)


# --------------------------------------------------------------------------------------------------
# Session Start Time 0x2AAA
# --------------------------------------------------------------------------------------------------

TIME_ZONE_UNKNOWN = -128
_TIME_ZONE_MIN, _TIME_ZONE_MAX = -48, 56  # quarter hours: UTC-12:00 .. UTC+14:00


class DstOffset(IntEnum):
    """DST Offset characteristic (0x2A0D) values; the value counts quarter hours except UNKNOWN."""

    STANDARD_TIME = 0
    HALF_AN_HOUR_DAYLIGHT_TIME = 2
    DAYLIGHT_TIME = 4
    DOUBLE_DAYLIGHT_TIME = 8
    UNKNOWN = 255

    @property
    def offset(self) -> _dt.timedelta | None:
        return None if self is DstOffset.UNKNOWN else _dt.timedelta(minutes=15 * int(self))


@dataclass(frozen=True)
class SessionStartTime:
    """Local wall-clock time of the session start with its zone.

    ``time_zone_quarter_hours`` is the standard-time offset from UTC in 15-minute steps (-48..56, or
    ``TIME_ZONE_UNKNOWN``); the DST offset is added on top: local = UTC + zone + DST. Year/month/day 0 mean
    "unknown" as in the Date Time characteristic.
    """

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    time_zone_quarter_hours: int = 0
    dst_offset: DstOffset = DstOffset.STANDARD_TIME

    @property
    def utc_offset(self) -> _dt.timedelta | None:
        dst = DstOffset(self.dst_offset).offset
        if self.time_zone_quarter_hours == TIME_ZONE_UNKNOWN or dst is None:
            return None
        return _dt.timedelta(minutes=15 * self.time_zone_quarter_hours) + dst

    def to_datetime(self) -> _dt.datetime:
        """Timezone-aware datetime (fixed offset). Unknown date, zone or DST raise ReservedValueError."""
        offset = self.utc_offset
        if offset is None:
            raise ReservedValueError(SESSION_START_TIME, "time zone or DST offset unknown: no absolute time")
        try:
            return _dt.datetime(
                self.year, self.month, self.day, self.hour, self.minute, self.second, tzinfo=_dt.timezone(offset)
            )
        except ValueError as error:
            raise ReservedValueError(SESSION_START_TIME, f"not a calendar date/time: {error}") from None

    @classmethod
    def from_datetime(cls, moment: _dt.datetime) -> SessionStartTime:
        """From an aware datetime; ``moment.dst()`` (e.g. a zoneinfo zone) gives the DST offset, else 0.

        A DST offset the format cannot carry (not +0/+0.5/+1/+2 h, e.g. Dublin's -1 h) is folded into the
        time zone, so the UTC offset and hence the instant are always exact.

        Microseconds are dropped. Raises EncodeError for naive datetimes or offsets the format cannot carry.
        """
        utc_offset = moment.utcoffset()
        if utc_offset is None:
            raise EncodeError(f"{SESSION_START_TIME}: datetime {moment!r} is naive, a time zone is required")
        dst = moment.dst() or _dt.timedelta(0)
        dst_by_offset = {d.offset: d for d in DstOffset if d.offset is not None}
        if dst not in dst_by_offset:
            # E.g. Europe/Dublin, whose tzdata DST is -1 h in winter: keep the exact UTC offset, no DST part.
            dst = _dt.timedelta(0)
        quarters = cls._quarter_hours(utc_offset - dst)
        if quarters is None and dst:
            dst = _dt.timedelta(0)
            quarters = cls._quarter_hours(utc_offset)
        if quarters is None:
            raise EncodeError(f"{SESSION_START_TIME}: UTC offset {utc_offset} is not a 15-minute step in -12..+14 h")
        if not 1582 <= moment.year <= 9999:
            raise EncodeError(f"{SESSION_START_TIME}: year {moment.year} outside 1582..9999")
        return cls(
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            quarters,
            dst_by_offset[dst],
        )

    @staticmethod
    def _quarter_hours(offset: _dt.timedelta) -> int | None:
        quarters, rest = divmod(offset, _dt.timedelta(minutes=15))
        return quarters if not rest and _TIME_ZONE_MIN <= quarters <= _TIME_ZONE_MAX else None


_DATE_TIME_RANGES = (
    ("Month", 0, 12),
    ("Day", 0, 31),
    ("Hours", 0, 23),
    ("Minutes", 0, 59),
    ("Seconds", 0, 59),
)


def _check_session_start_fields(value: SessionStartTime) -> list[str]:
    problems = []
    if not (value.year == 0 or 1582 <= value.year <= 9999):
        problems.append(f"Year {value.year} outside 1582..9999 (0 = unknown)")
    numbers = (value.month, value.day, value.hour, value.minute, value.second)
    for (name, low, high), number in zip(_DATE_TIME_RANGES, numbers, strict=True):
        if not low <= number <= high:
            problems.append(f"{name} {number} outside {low}..{high}")
    zone = value.time_zone_quarter_hours
    if not (zone == TIME_ZONE_UNKNOWN or _TIME_ZONE_MIN <= zone <= _TIME_ZONE_MAX):
        problems.append(f"Time Zone {zone} outside -48..56 (-128 = unknown)")
    if value.dst_offset not in DstOffset._value2member_map_:
        problems.append(f"DST Offset {value.dst_offset} is reserved")
    return problems


def decode_session_start_time(data: bytes, *, e2e_crc: bool) -> SessionStartTime:
    data = bytes(data)
    expected = 9 + (2 if e2e_crc else 0)
    if len(data) != expected:
        raise LengthError(SESSION_START_TIME, f"expected {expected} octets, got {len(data)}", data)
    reader = Reader(SESSION_START_TIME, _strip_crc(SESSION_START_TIME, data, e2e_crc))
    year = reader.u16("Year")
    month, day, hour, minute, second = (reader.u8(name) for name, _, _ in _DATE_TIME_RANGES)
    zone = reader.s8("Time Zone")
    dst = reader.u8("DST Offset")
    reader.end()
    value = SessionStartTime(year, month, day, hour, minute, second, zone, dst)  # type: ignore[arg-type]
    problems = _check_session_start_fields(value)
    if problems:
        raise ReservedValueError(SESSION_START_TIME, "; ".join(problems), data)
    return SessionStartTime(year, month, day, hour, minute, second, zone, DstOffset(dst))


def encode_session_start_time(value: SessionStartTime, *, e2e_crc: bool) -> bytes:
    for number in (value.year, value.month, value.day, value.hour, value.minute, value.second):
        if isinstance(number, bool) or not isinstance(number, int):
            raise EncodeError(f"{SESSION_START_TIME}: {number!r} is not an integer")
    problems = _check_session_start_fields(value)
    if problems:
        raise EncodeError(f"{SESSION_START_TIME}: " + "; ".join(problems))
    body = (
        uint_bytes(value.year, 2, "Year")
        + bytes([value.month, value.day, value.hour, value.minute, value.second])
        + sint8_byte(value.time_zone_quarter_hours, "Time Zone")
        + bytes([int(value.dst_offset)])
    )
    return _with_crc(body, e2e_crc)


# --------------------------------------------------------------------------------------------------
# Session Run Time 0x2AAB
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRunTime:
    """Expected run time of the session, in hours since the session start."""

    run_time_h: int


def decode_session_run_time(data: bytes, *, e2e_crc: bool) -> SessionRunTime:
    data = bytes(data)
    expected = 2 + (2 if e2e_crc else 0)
    if len(data) != expected:
        raise LengthError(SESSION_RUN_TIME, f"expected {expected} octets, got {len(data)}", data)
    reader = Reader(SESSION_RUN_TIME, _strip_crc(SESSION_RUN_TIME, data, e2e_crc))
    return SessionRunTime(reader.u16("CGM Session Run Time"))


def encode_session_run_time(value: SessionRunTime, *, e2e_crc: bool) -> bytes:
    return _with_crc(uint_bytes(value.run_time_h, 2, "Session Run Time (h)"), e2e_crc)

