"""CGM Specific Ops Control Point (0x2AAC): pure codec, both directions, with optional E2E-CRC.

Wire layout: ``[opcode, operand...] [+ CRC-16/MCRF4XX]``; the CRC is present in both directions when the
CGM Feature has bit 12 (E2E-CRC) set. Op codes (CGMS v1.0.1, table 3.x): communication interval set/get
(1, 2 -> 3), calibration value set/get (4, 5 -> 6), alert levels as set/get/response triplets 7..24 (patient
high, patient low, hypo, hyper: SFLOAT mg/dL; rate of decrease, rate of increase: SFLOAT mg/dL/min), reset
device specific alert 25, start session 26, stop session 27, response code 28 ``[0x1C, request op, code]``.

Public API (``__all__``)::

    SocpOpcode, SocpResponseCode, CgmAlert (.unit, .set_opcode, .get_opcode, .response_opcode),
    CalibrationStatus (IntFlag), CalibrationRecord
    SetCommunicationInterval(interval_min) GetCommunicationInterval() CommunicationIntervalResponse(interval_min)
    SetCalibrationValue(record) GetCalibrationValue(record_number) CalibrationValueResponse(record)
    SetAlertLevel(alert, level) GetAlertLevel(alert) AlertLevelResponse(alert, level)
    ResetDeviceSpecificAlert() StartSession() StopSession() SocpResponse(request_opcode, response_code)
    SocpMessage (union of the above), SocpRequest, SocpReply
    decode_socp(data, *, e2e_crc) -> SocpMessage ; encode_socp(message, *, e2e_crc) -> bytes
    decode_socp_request(data, *, e2e_crc) ; decode_socp_reply(data, *, e2e_crc)
    socp_error_response(error, request_data) -> SocpResponse
    socp_att_error(error) -> int | None     (0x80 missing CRC, 0x81 invalid CRC: ATT errors, no indication)
    CALIBRATION_RECORD_NUMBER_LAST (0xFFFF), COMMUNICATION_INTERVAL_DISABLED (0),
    COMMUNICATION_INTERVAL_FASTEST (0xFF), ATT_ERROR_MISSING_CRC, ATT_ERROR_INVALID_CRC

Decode failures are DecodeError subclasses; those of a request also carry ``error.socp_response_code``
(op code not supported / invalid operand) and, for CRC problems, ``error.att_error_code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import NoReturn

from ..errors import CrcError, DecodeError, EncodeError, FlagsError, LengthError, ReservedValueError
from ._wire import Reader, finite_sfloat_bytes, uint_bytes
from .cgms import CgmSampleLocation, CgmType
from .crc import append_crc, check_and_strip_crc

__all__ = [
    "ATT_ERROR_INVALID_CRC",
    "ATT_ERROR_MISSING_CRC",
    "CALIBRATION_RECORD_NUMBER_LAST",
    "COMMUNICATION_INTERVAL_DISABLED",
    "COMMUNICATION_INTERVAL_FASTEST",
    "AlertLevelResponse",
    "CalibrationRecord",
    "CalibrationStatus",
    "CalibrationValueResponse",
    "CgmAlert",
    "CommunicationIntervalResponse",
    "GetAlertLevel",
    "GetCalibrationValue",
    "GetCommunicationInterval",
    "ResetDeviceSpecificAlert",
    "SetAlertLevel",
    "SetCalibrationValue",
    "SetCommunicationInterval",
    "SocpMessage",
    "SocpOpcode",
    "SocpReply",
    "SocpRequest",
    "SocpResponse",
    "SocpResponseCode",
    "StartSession",
    "StopSession",
    "decode_socp",
    "decode_socp_reply",
    "decode_socp_request",
    "encode_socp",
    "socp_att_error",
    "socp_error_response",
]

SOCP = "CGM Specific Ops Control Point (0x2AAC)"

ATT_ERROR_MISSING_CRC = 0x80
ATT_ERROR_INVALID_CRC = 0x81
CALIBRATION_RECORD_NUMBER_LAST = 0xFFFF
COMMUNICATION_INTERVAL_DISABLED = 0x00
COMMUNICATION_INTERVAL_FASTEST = 0xFF


class SocpOpcode(IntEnum):
    SET_COMMUNICATION_INTERVAL = 1
    GET_COMMUNICATION_INTERVAL = 2
    COMMUNICATION_INTERVAL_RESPONSE = 3
    SET_CALIBRATION_VALUE = 4
    GET_CALIBRATION_VALUE = 5
    CALIBRATION_VALUE_RESPONSE = 6
    SET_PATIENT_HIGH_ALERT_LEVEL = 7
    GET_PATIENT_HIGH_ALERT_LEVEL = 8
    PATIENT_HIGH_ALERT_LEVEL_RESPONSE = 9
    SET_PATIENT_LOW_ALERT_LEVEL = 10
    GET_PATIENT_LOW_ALERT_LEVEL = 11
    PATIENT_LOW_ALERT_LEVEL_RESPONSE = 12
    SET_HYPO_ALERT_LEVEL = 13
    GET_HYPO_ALERT_LEVEL = 14
    HYPO_ALERT_LEVEL_RESPONSE = 15
    SET_HYPER_ALERT_LEVEL = 16
    GET_HYPER_ALERT_LEVEL = 17
    HYPER_ALERT_LEVEL_RESPONSE = 18
    SET_RATE_OF_DECREASE_ALERT_LEVEL = 19
    GET_RATE_OF_DECREASE_ALERT_LEVEL = 20
    RATE_OF_DECREASE_ALERT_LEVEL_RESPONSE = 21
    SET_RATE_OF_INCREASE_ALERT_LEVEL = 22
    GET_RATE_OF_INCREASE_ALERT_LEVEL = 23
    RATE_OF_INCREASE_ALERT_LEVEL_RESPONSE = 24
    RESET_DEVICE_SPECIFIC_ALERT = 25
    START_SESSION = 26
    STOP_SESSION = 27
    RESPONSE_CODE = 28


class SocpResponseCode(IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERAND = 3
    PROCEDURE_NOT_COMPLETED = 4
    PARAMETER_OUT_OF_RANGE = 5


class CgmAlert(IntEnum):
    """The six alert levels; the value is the Set opcode (Get = +1, Response = +2)."""

    PATIENT_HIGH = 7
    PATIENT_LOW = 10
    HYPO = 13
    HYPER = 16
    RATE_OF_DECREASE = 19
    RATE_OF_INCREASE = 22

    @property
    def unit(self) -> str:
        return "mg/dL/min" if self in (CgmAlert.RATE_OF_DECREASE, CgmAlert.RATE_OF_INCREASE) else "mg/dL"

    @property
    def set_opcode(self) -> SocpOpcode:
        return SocpOpcode(int(self))

    @property
    def get_opcode(self) -> SocpOpcode:
        return SocpOpcode(int(self) + 1)

    @property
    def response_opcode(self) -> SocpOpcode:
        return SocpOpcode(int(self) + 2)


class CalibrationStatus(IntFlag):
    REJECTED = 0x01
    OUT_OF_RANGE = 0x02
    PROCESS_PENDING = 0x04


@dataclass(frozen=True)
class CalibrationRecord:
    """Calibration Data Record (10 octets): times in minutes since session start."""

    glucose_mg_dl: float
    calibration_time_min: int
    sample_type: CgmType = CgmType.CAPILLARY_PLASMA
    sample_location: CgmSampleLocation = CgmSampleLocation.FINGER
    next_calibration_time_min: int = 0
    record_number: int = 0
    status: CalibrationStatus = CalibrationStatus(0)


@dataclass(frozen=True)
class SetCommunicationInterval:
    """``interval_min``: 0 disables periodic notifications, 255 asks for the fastest the sensor supports."""

    interval_min: int


@dataclass(frozen=True)
class GetCommunicationInterval:
    pass


@dataclass(frozen=True)
class CommunicationIntervalResponse:
    interval_min: int


@dataclass(frozen=True)
class SetCalibrationValue:
    record: CalibrationRecord


@dataclass(frozen=True)
class GetCalibrationValue:
    """``record_number`` 0xFFFF (CALIBRATION_RECORD_NUMBER_LAST) asks for the most recent record."""

    record_number: int


@dataclass(frozen=True)
class CalibrationValueResponse:
    record: CalibrationRecord


@dataclass(frozen=True)
class SetAlertLevel:
    """``level`` is in ``alert.unit``: mg/dL, or mg/dL/min for the two rate alerts."""

    alert: CgmAlert
    level: float


@dataclass(frozen=True)
class GetAlertLevel:
    alert: CgmAlert


@dataclass(frozen=True)
class AlertLevelResponse:
    alert: CgmAlert
    level: float


@dataclass(frozen=True)
class ResetDeviceSpecificAlert:
    pass


@dataclass(frozen=True)
class StartSession:
    pass


@dataclass(frozen=True)
class StopSession:
    pass


@dataclass(frozen=True)
class SocpResponse:
    """Response Code (0x1C). ``request_opcode`` stays a plain int when the request's opcode was unknown."""

    request_opcode: SocpOpcode | int
    response_code: SocpResponseCode


SocpRequest = (
    SetCommunicationInterval
    | GetCommunicationInterval
    | SetCalibrationValue
    | GetCalibrationValue
    | SetAlertLevel
    | GetAlertLevel
    | ResetDeviceSpecificAlert
    | StartSession
    | StopSession
)
SocpReply = CommunicationIntervalResponse | CalibrationValueResponse | AlertLevelResponse | SocpResponse
SocpMessage = SocpRequest | SocpReply

_REPLY_OPCODES = frozenset(
    {SocpOpcode.COMMUNICATION_INTERVAL_RESPONSE, SocpOpcode.CALIBRATION_VALUE_RESPONSE, SocpOpcode.RESPONSE_CODE}
    | {alert.response_opcode for alert in CgmAlert}
)
_CALIBRATION_RECORD_OCTETS = 10


def _operand_octets(opcode: SocpOpcode) -> int:
    if opcode in (SocpOpcode.SET_COMMUNICATION_INTERVAL, SocpOpcode.COMMUNICATION_INTERVAL_RESPONSE):
        return 1
    if opcode in (SocpOpcode.SET_CALIBRATION_VALUE, SocpOpcode.CALIBRATION_VALUE_RESPONSE):
        return _CALIBRATION_RECORD_OCTETS
    if opcode in (SocpOpcode.GET_CALIBRATION_VALUE, SocpOpcode.RESPONSE_CODE):
        return 2
    if SocpOpcode.SET_PATIENT_HIGH_ALERT_LEVEL <= opcode <= SocpOpcode.RATE_OF_INCREASE_ALERT_LEVEL_RESPONSE:
        return 0 if (opcode - SocpOpcode.SET_PATIENT_HIGH_ALERT_LEVEL) % 3 == 1 else 2  # Get has no operand
    return 0  # Get interval, reset alert, start, stop


def _fail(
    error_type: type[DecodeError],
    reason: str,
    data: bytes,
    code: SocpResponseCode | None = SocpResponseCode.INVALID_OPERAND,
    att_error: int | None = None,
) -> NoReturn:
    error = error_type(SOCP, reason, data)
    if code is not None:
        error.socp_response_code = code  # type: ignore[attr-defined]
    if att_error is not None:
        error.att_error_code = att_error  # type: ignore[attr-defined]
    raise error


def _calibration_record(reader: Reader, data: bytes) -> CalibrationRecord:
    glucose = reader.sfloat("Calibration Glucose Concentration")
    calibration_time = reader.u16("Calibration Time")
    type_location = reader.u8("Calibration Type-Sample Location")
    next_time = reader.u16("Next Calibration Time")
    number = reader.u16("Calibration Data Record Number")
    status = reader.u8("Calibration Status")
    if glucose < 0:
        _fail(ReservedValueError, f"negative calibration glucose {glucose} mg/dL", data)
    try:
        sample_type = CgmType(type_location & 0x0F)
        location = CgmSampleLocation(type_location >> 4)
    except ValueError as error:
        _fail(ReservedValueError, f"calibration Type-Sample Location 0x{type_location:02X}: {error}", data)
    if status & ~0x07:
        _fail(FlagsError, f"reserved Calibration Status bits 0x{status & ~0x07:02X}", data)
    return CalibrationRecord(glucose, calibration_time, sample_type, location, next_time, number, CalibrationStatus(status))


def decode_socp(data: bytes, *, e2e_crc: bool) -> SocpMessage:
    """Decode any SOCP value, request or reply."""
    data = bytes(data)
    if not data:
        _fail(LengthError, "empty value", data, SocpResponseCode.OP_CODE_NOT_SUPPORTED)
    try:
        opcode = SocpOpcode(data[0])
    except ValueError:
        _fail(ReservedValueError, f"unknown Op Code {data[0]}", data, SocpResponseCode.OP_CODE_NOT_SUPPORTED)
    body_octets = 1 + _operand_octets(opcode)
    if e2e_crc:
        if len(data) == body_octets:
            _fail(LengthError, f"{opcode.name} without its E2E-CRC", data, None, ATT_ERROR_MISSING_CRC)
        if len(data) == body_octets + 2:
            try:
                data_body = check_and_strip_crc(SOCP, data)
            except CrcError as error:
                _fail(CrcError, error.reason, data, None, ATT_ERROR_INVALID_CRC)
        else:
            data_body = b""
    else:
        data_body = data
    if len(data_body) != body_octets:
        crc_note = " + 2 (E2E-CRC)" if e2e_crc else ""
        _fail(LengthError, f"{opcode.name} takes {body_octets}{crc_note} octets, got {len(data)}", data)
    reader = Reader(SOCP, data_body)
    reader.u8("Op Code")
    try:
        message = _decode_operand(opcode, reader, data)
    except DecodeError as error:
        if not hasattr(error, "socp_response_code"):
            error.socp_response_code = SocpResponseCode.INVALID_OPERAND  # type: ignore[attr-defined]
        raise
    reader.end()
    return message


def _decode_operand(opcode: SocpOpcode, reader: Reader, data: bytes) -> SocpMessage:
    if opcode is SocpOpcode.SET_COMMUNICATION_INTERVAL:
        return SetCommunicationInterval(reader.u8("Communication Interval"))
    if opcode is SocpOpcode.GET_COMMUNICATION_INTERVAL:
        return GetCommunicationInterval()
    if opcode is SocpOpcode.COMMUNICATION_INTERVAL_RESPONSE:
        return CommunicationIntervalResponse(reader.u8("Communication Interval"))
    if opcode is SocpOpcode.SET_CALIBRATION_VALUE:
        return SetCalibrationValue(_calibration_record(reader, data))
    if opcode is SocpOpcode.GET_CALIBRATION_VALUE:
        return GetCalibrationValue(reader.u16("Calibration Data Record Number"))
    if opcode is SocpOpcode.CALIBRATION_VALUE_RESPONSE:
        return CalibrationValueResponse(_calibration_record(reader, data))
    if opcode is SocpOpcode.RESET_DEVICE_SPECIFIC_ALERT:
        return ResetDeviceSpecificAlert()
    if opcode is SocpOpcode.START_SESSION:
        return StartSession()
    if opcode is SocpOpcode.STOP_SESSION:
        return StopSession()
    if opcode is SocpOpcode.RESPONSE_CODE:
        raw_request = reader.u8("Request Op Code")
        raw_code = reader.u8("Response Code Value")
        try:
            response_code = SocpResponseCode(raw_code)
        except ValueError:
            _fail(ReservedValueError, f"unknown Response Code {raw_code}", data)
        request_opcode: SocpOpcode | int = (
            SocpOpcode(raw_request) if raw_request in SocpOpcode._value2member_map_ else raw_request
        )
        return SocpResponse(request_opcode, response_code)
    # Alert level triplets 7..24.
    alert = CgmAlert(SocpOpcode.SET_PATIENT_HIGH_ALERT_LEVEL + 3 * ((opcode - SocpOpcode.SET_PATIENT_HIGH_ALERT_LEVEL) // 3))
    if opcode == alert.get_opcode:
        return GetAlertLevel(alert)
    level = reader.sfloat(f"{alert.name} alert level ({alert.unit})")
    if opcode == alert.set_opcode:
        return SetAlertLevel(alert, level)
    return AlertLevelResponse(alert, level)


def decode_socp_request(data: bytes, *, e2e_crc: bool) -> SocpRequest:
    """Decode what a collector writes; reply opcodes are 'op code not supported'."""
    message = decode_socp(data, e2e_crc=e2e_crc)
    if isinstance(message, SocpReply):  # type: ignore[arg-type,misc]
        _fail(ReservedValueError, f"reply opcode {bytes(data)[0]} is not a request", bytes(data), SocpResponseCode.OP_CODE_NOT_SUPPORTED)
    return message  # type: ignore[return-value]


def decode_socp_reply(data: bytes, *, e2e_crc: bool) -> SocpReply:
    """Decode what a sensor indicates; request opcodes here are an error."""
    message = decode_socp(data, e2e_crc=e2e_crc)
    if not isinstance(message, SocpReply):  # type: ignore[arg-type,misc]
        _fail(ReservedValueError, f"request opcode {bytes(data)[0]} where a reply was expected", bytes(data), None)
    return message  # type: ignore[return-value]


def socp_error_response(error: DecodeError, request_data: bytes) -> SocpResponse:
    """The Response Code indication a sensor sends for a request that failed to decode.

    Call :func:`socp_att_error` first: CRC problems are ATT errors (0x80/0x81) with no indication.
    """
    raw = bytes(request_data)
    request_opcode: SocpOpcode | int = raw[0] if raw else 0
    if raw and raw[0] in SocpOpcode._value2member_map_:
        request_opcode = SocpOpcode(raw[0])
    code = getattr(error, "socp_response_code", None) or SocpResponseCode.INVALID_OPERAND
    return SocpResponse(request_opcode, code)


def socp_att_error(error: DecodeError) -> int | None:
    """0x80 (missing CRC) or 0x81 (invalid CRC) when the write must be refused with an ATT error."""
    return getattr(error, "att_error_code", None)


def _encode_calibration_record(record: CalibrationRecord) -> bytes:
    if not isinstance(record.glucose_mg_dl, (int, float)) or not record.glucose_mg_dl >= 0:
        raise EncodeError(f"{SOCP}: calibration glucose {record.glucose_mg_dl!r} mg/dL must be finite and >= 0")
    try:
        sample_type = CgmType(record.sample_type)
        location = CgmSampleLocation(record.sample_location)
    except ValueError as error:
        raise EncodeError(f"{SOCP}: {error}") from None
    status = int(record.status)
    if not 0 <= status <= 0x07:
        raise EncodeError(f"{SOCP}: reserved Calibration Status bits in 0x{status:X}")
    return (
        finite_sfloat_bytes(record.glucose_mg_dl, "Calibration Glucose Concentration")
        + uint_bytes(record.calibration_time_min, 2, "Calibration Time (min)")
        + bytes([(int(location) << 4) | int(sample_type)])
        + uint_bytes(record.next_calibration_time_min, 2, "Next Calibration Time (min)")
        + uint_bytes(record.record_number, 2, "Calibration Data Record Number")
        + bytes([status])
    )


def _alert(message: SetAlertLevel | GetAlertLevel | AlertLevelResponse) -> CgmAlert:
    try:
        return CgmAlert(message.alert)
    except ValueError:
        raise EncodeError(f"{SOCP}: unknown alert {message.alert!r}") from None


def _encode_body(message: SocpMessage) -> bytes:
    if isinstance(message, SetCommunicationInterval):
        return bytes([SocpOpcode.SET_COMMUNICATION_INTERVAL]) + uint_bytes(message.interval_min, 1, "Communication Interval (min)")
    if isinstance(message, GetCommunicationInterval):
        return bytes([SocpOpcode.GET_COMMUNICATION_INTERVAL])
    if isinstance(message, CommunicationIntervalResponse):
        return bytes([SocpOpcode.COMMUNICATION_INTERVAL_RESPONSE]) + uint_bytes(message.interval_min, 1, "Communication Interval (min)")
    if isinstance(message, SetCalibrationValue):
        return bytes([SocpOpcode.SET_CALIBRATION_VALUE]) + _encode_calibration_record(message.record)
    if isinstance(message, GetCalibrationValue):
        return bytes([SocpOpcode.GET_CALIBRATION_VALUE]) + uint_bytes(message.record_number, 2, "Calibration Data Record Number")
    if isinstance(message, CalibrationValueResponse):
        return bytes([SocpOpcode.CALIBRATION_VALUE_RESPONSE]) + _encode_calibration_record(message.record)
    if isinstance(message, SetAlertLevel):
        alert = _alert(message)
        return bytes([alert.set_opcode]) + finite_sfloat_bytes(message.level, f"{alert.name} alert level ({alert.unit})")
    if isinstance(message, GetAlertLevel):
        return bytes([_alert(message).get_opcode])
    if isinstance(message, AlertLevelResponse):
        alert = _alert(message)
        return bytes([alert.response_opcode]) + finite_sfloat_bytes(message.level, f"{alert.name} alert level ({alert.unit})")
    if isinstance(message, ResetDeviceSpecificAlert):
        return bytes([SocpOpcode.RESET_DEVICE_SPECIFIC_ALERT])
    if isinstance(message, StartSession):
        return bytes([SocpOpcode.START_SESSION])
    if isinstance(message, StopSession):
        return bytes([SocpOpcode.STOP_SESSION])
    if isinstance(message, SocpResponse):
        try:
            code = SocpResponseCode(message.response_code)
        except ValueError as error:
            raise EncodeError(f"{SOCP}: {error}") from None
        return bytes([SocpOpcode.RESPONSE_CODE]) + uint_bytes(int(message.request_opcode), 1, "Request Op Code") + bytes([code])
    raise EncodeError(f"{SOCP}: cannot encode {message!r}")


def encode_socp(message: SocpMessage, *, e2e_crc: bool) -> bytes:
    body = _encode_body(message)
    return append_crc(body) if e2e_crc else body
