"""IDD Record Access Control Point (0x2B27) and IDD History Data (0x2B28).

IDD RACP (IDS v1.0.2, 3.9; Hamming-coded, unlike the CGMS RACP's 1, 2, 3...):
``Op Code u8 | Operator u8 | Operand... [E2E]``.

* Op codes: 0x33 report stored records, 0x3C delete stored records, 0x55 abort operation, 0x5A report
  number of stored records; pump -> hub: 0x66 number of stored records response (operator null, u32
  count), 0x0F response code (operator null, request op code u8, response code u8).
* Operators: 0x0F null, 0x33 all records, 0x3C <=, 0x55 >=, 0x5A within range, 0x66 first, 0x69 last.
* Operand of <=, >=, range: filter type u8 (0x0F sequence number, 0x33 sequence number filtered by
  reference-time events, 0x3C ... by non-reference-time events) then u32 sequence number(s).
* Response code values: 0xF0 success, 0x0F op code not supported, 0x33 invalid operator, 0x3C operator
  not supported, 0x55 invalid operand, 0x5A no records found, 0x66 abort unsuccessful, 0x69 procedure not
  completed, 0x96 operand not supported. (AndroidBLEParser's ``RacpResponseCode`` uses CGMS-style 2..10
  for the errors; BLEIDSSim and the Hamming rule agree on 0xF0 for success. We follow the Hamming codes.)

History Data: ``Event Type u16 | Sequence Number u32 | Relative Offset u16 (s) | Event Data... [E2E-CRC]``.
Stored records are sent as History Data notifications after a "report stored records" request, then
the RACP indicates a response code.

Robustness to public implementations that disagree (see /work/shared/reference/ble.md):

* RACP response code with or without the operator byte: the specification sends ``0F 0F req code``;
  BLEIDSSim (``history.py report_all_history_events``) sends ``0F req code``. Decoded by length; encoded
  per ``include_operator``. The same tolerance is applied to the number-of-records response.
* A filter byte after "all records" (``33 33 0F``): some clients send a filter type even though "all",
  "first" and "last" take no operand. The request decoder ignores ONE trailing valid filter-type octet
  after these operators; anything else is a length error.
* History Data with or without an E2E-Counter: the specification has a CRC but no counter (IDS v1.0.2,
  3.10.4.5); BLEIDSSim (``response.build_response_packet``) and at least one commercial pump add a counter
  before the CRC. ``counter="auto"`` tries the specification's layout first, then the layout with a
  counter; for event types without a typed layout here (kept as raw octets) the specification's layout
  is assumed, since no length can tell them apart.
* 32-bit FLOAT where the specification has SFLOAT: ``number_format`` as everywhere in the IDS codecs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Literal, Union

from ..errors import DecodeError, EncodeError, FlagsError, LengthError, ReservedValueError
from .crc import append_crc, check_and_strip_crc
from .ids_common import (
    BOLUS_REASON_CORRECTION,
    BOLUS_REASON_MEAL,
    BasalDeliveryContext,
    BolusActivationType,
    BolusEndReason,
    BolusType,
    NumberFormat,
    OperationalState,
    Reader,
    TbrEndReason,
    TbrType,
    TherapyControlState,
    Writer,
    check_bolus_decoded,
    check_bolus_encoded,
    read_bolus_options,
    write_bolus_flags,
    write_bolus_options,
    decode_with_number_format,
)
from .ids_e2e import E2ECounterChecker, E2ECounterError, frame, unframe
from .ids_status import AnnunciationState, AnnunciationType

__all__ = [
    "RacpOpcode",
    "RacpOperator",
    "RacpFilterType",
    "RacpResult",
    "RacpRequest",
    "racp_request_problem",
    "RacpResponseCode",
    "RacpNumberOfRecords",
    "RacpResponse",
    "encode_racp_request",
    "decode_racp_request",
    "encode_racp_response",
    "decode_racp_response",
    "HistoryEventType",
    "RecordingReason",
    "ReferenceTime",
    "BolusPart1",
    "BolusProgrammedPart2",
    "BolusDeliveredPart2",
    "BasalRateChanged",
    "TbrStarted",
    "TbrEnded",
    "TherapyStateChanged",
    "OperationalStateChanged",
    "ReservoirRemainingChanged",
    "AnnunciationChangedPart1",
    "AnnunciationChangedPart2",
    "RawEventData",
    "HistoryEventData",
    "HistoryEvent",
    "HistoryCounterMode",
    "encode_history_data",
    "decode_history_data",
]

RACP = "IDD RACP"
HISTORY = "IDD History Data"


# --- IDD RACP ---------------------------------------------------------------------------------------


class RacpOpcode(IntEnum):
    RESPONSE_CODE = 0x0F
    REPORT_STORED_RECORDS = 0x33
    DELETE_STORED_RECORDS = 0x3C
    ABORT_OPERATION = 0x55
    REPORT_NUMBER_OF_STORED_RECORDS = 0x5A
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x66


class RacpOperator(IntEnum):
    NULL = 0x0F
    ALL = 0x33
    LESS_OR_EQUAL = 0x3C
    GREATER_OR_EQUAL = 0x55
    WITHIN_RANGE = 0x5A
    FIRST = 0x66
    LAST = 0x69


class RacpFilterType(IntEnum):
    SEQUENCE_NUMBER = 0x0F
    SEQUENCE_NUMBER_REFERENCE_TIME_EVENTS = 0x33
    SEQUENCE_NUMBER_NON_REFERENCE_TIME_EVENTS = 0x3C


class RacpResult(IntEnum):
    SUCCESS = 0xF0
    OP_CODE_NOT_SUPPORTED = 0x0F
    INVALID_OPERATOR = 0x33
    OPERATOR_NOT_SUPPORTED = 0x3C
    INVALID_OPERAND = 0x55
    NO_RECORDS_FOUND = 0x5A
    ABORT_UNSUCCESSFUL = 0x66
    PROCEDURE_NOT_COMPLETED = 0x69
    OPERAND_NOT_SUPPORTED = 0x96


_REQUEST_OPCODES = (
    RacpOpcode.REPORT_STORED_RECORDS,
    RacpOpcode.DELETE_STORED_RECORDS,
    RacpOpcode.ABORT_OPERATION,
    RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
)
_NO_OPERAND = (RacpOperator.NULL, RacpOperator.ALL, RacpOperator.FIRST, RacpOperator.LAST)


@dataclass(frozen=True)
class RacpRequest:
    """An IDD RACP request. ``minimum`` is the operand of >=, ``maximum`` of <=, both of "within range"
    (sequence numbers, inclusive); ``filter_type`` is required exactly when one of them is."""

    opcode: RacpOpcode
    operator: RacpOperator
    filter_type: RacpFilterType | None = None
    minimum: int | None = None
    maximum: int | None = None

    @classmethod
    def report_all(cls) -> "RacpRequest":
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL)

    @classmethod
    def report_from(cls, sequence: int) -> "RacpRequest":
        """Every record with sequence number >= ``sequence`` (how the hub catches up after a gap)."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.GREATER_OR_EQUAL, RacpFilterType.SEQUENCE_NUMBER, sequence)

    @classmethod
    def count_all(cls) -> "RacpRequest":
        return cls(RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.ALL)

    @classmethod
    def abort(cls) -> "RacpRequest":
        return cls(RacpOpcode.ABORT_OPERATION, RacpOperator.NULL)


def _operand_shape(operator: RacpOperator) -> tuple[bool, bool]:
    """(needs minimum, needs maximum)."""
    return (
        operator in (RacpOperator.GREATER_OR_EQUAL, RacpOperator.WITHIN_RANGE),
        operator in (RacpOperator.LESS_OR_EQUAL, RacpOperator.WITHIN_RANGE),
    )


def racp_request_problem(request: RacpRequest) -> RacpResult | None:
    """The response code a pump should give a well-formed but invalid request, or ``None`` if valid."""
    if request.opcode not in _REQUEST_OPCODES:
        return RacpResult.OP_CODE_NOT_SUPPORTED
    if (request.opcode == RacpOpcode.ABORT_OPERATION) != (request.operator == RacpOperator.NULL):
        return RacpResult.INVALID_OPERATOR
    if request.minimum is not None and request.maximum is not None and request.minimum > request.maximum:
        return RacpResult.INVALID_OPERAND
    return None


def encode_racp_request(request: RacpRequest, *, e2e_counter: int | None = None) -> bytes:
    w = Writer(RACP)
    needs_min, needs_max = _operand_shape(RacpOperator(request.operator))
    if (request.minimum is not None) != needs_min or (request.maximum is not None) != needs_max:
        raise EncodeError(f"{RACP}: operator {RacpOperator(request.operator).name} needs "
                          f"minimum={needs_min}, maximum={needs_max}")
    if (request.filter_type is not None) != (needs_min or needs_max):
        raise EncodeError(f"{RACP}: a filter type goes with <=, >= and range operands only")
    w.enum8(RacpOpcode, request.opcode, "op code")
    w.enum8(RacpOperator, request.operator, "operator")
    if request.filter_type is not None:
        w.enum8(RacpFilterType, request.filter_type, "filter type")
    if request.minimum is not None:
        w.u32(request.minimum, "minimum sequence number")
    if request.maximum is not None:
        w.u32(request.maximum, "maximum sequence number")
    return frame(w.bytes(), e2e_counter)


def decode_racp_request(data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None) -> RacpRequest:
    """Decode a request (the pump's side). Structure only: check meaning with :func:`racp_request_problem`."""
    r = Reader(RACP, unframe(RACP, data, e2e, checker))
    opcode = r.enum8(RacpOpcode, "op code")
    operator = r.enum8(RacpOperator, "operator")
    needs_min, needs_max = _operand_shape(operator)
    filter_type = None
    if needs_min or needs_max:
        filter_type = r.enum8(RacpFilterType, "filter type")
    elif operator in _NO_OPERAND and r.remaining == 1:
        # A filter byte after "all records"/"first"/"last" (seen from clients that always send one):
        # tolerated when it is a valid filter type, then ignored.
        r.enum8(RacpFilterType, "filter type after an operator without operand")
    minimum = r.u32("minimum sequence number") if needs_min else None
    maximum = r.u32("maximum sequence number") if needs_max else None
    r.end()
    return RacpRequest(opcode, operator, filter_type, minimum, maximum)


@dataclass(frozen=True)
class RacpResponseCode:
    request_opcode: RacpOpcode
    result: RacpResult

    @property
    def ok(self) -> bool:
        return self.result == RacpResult.SUCCESS


@dataclass(frozen=True)
class RacpNumberOfRecords:
    count: int


RacpResponse = Union[RacpResponseCode, RacpNumberOfRecords]


def encode_racp_response(response: RacpResponse, *, e2e_counter: int | None = None, include_operator: bool = True) -> bytes:
    """``include_operator=False`` emulates BLEIDSSim-style pumps that leave out the null operator."""
    w = Writer(RACP)
    if isinstance(response, RacpResponseCode):
        w.u8(RacpOpcode.RESPONSE_CODE, "op code")
        if include_operator:
            w.u8(RacpOperator.NULL, "operator")
        w.enum8(RacpOpcode, response.request_opcode, "request op code")
        w.enum8(RacpResult, response.result, "response code")
    elif isinstance(response, RacpNumberOfRecords):
        w.u8(RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, "op code")
        if include_operator:
            w.u8(RacpOperator.NULL, "operator")
        w.u32(response.count, "number of records")
    else:
        raise EncodeError(f"not an IDD RACP response: {response!r}")
    return frame(w.bytes(), e2e_counter)


def decode_racp_response(data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None) -> RacpResponse:
    """Decode a response (the hub's side), with or without the null operator octet (judged by length)."""
    r = Reader(RACP, unframe(RACP, data, e2e, checker))
    opcode = r.enum8(RacpOpcode, "op code")
    response: RacpResponse
    if opcode == RacpOpcode.RESPONSE_CODE:
        if r.remaining == 3:  # with operator: 0F 0F req code (specification)
            r.enum8(RacpOperator, "operator")
            if r.data[1] != RacpOperator.NULL:
                raise ReservedValueError(RACP, "response code operator must be null (0x0F)", r.data)
        response = RacpResponseCode(r.enum8(RacpOpcode, "request op code"), r.enum8(RacpResult, "response code"))
    elif opcode == RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        if r.remaining == 5:
            if r.u8("operator") != RacpOperator.NULL:
                raise ReservedValueError(RACP, "number of records operator must be null (0x0F)", r.data)
        response = RacpNumberOfRecords(r.u32("number of records"))
    else:
        raise ReservedValueError(RACP, f"op code {opcode.name} is not a response", r.data)
    r.end()
    return response


# --- History Data -----------------------------------------------------------------------------------


class HistoryEventType(IntEnum):
    REFERENCE_TIME = 0x000F
    REFERENCE_TIME_BASE_OFFSET = 0x0033
    BOLUS_CALCULATED_PART_1_OF_2 = 0x003C
    BOLUS_CALCULATED_PART_2_OF_2 = 0x0055
    BOLUS_PROGRAMMED_PART_1_OF_2 = 0x005A
    BOLUS_PROGRAMMED_PART_2_OF_2 = 0x0066
    BOLUS_DELIVERED_PART_1_OF_2 = 0x0069
    BOLUS_DELIVERED_PART_2_OF_2 = 0x0096
    DELIVERED_BASAL_RATE_CHANGED = 0x0099
    TBR_ADJUSTMENT_STARTED = 0x00A5
    TBR_ADJUSTMENT_ENDED = 0x00AA
    TBR_ADJUSTMENT_CHANGED = 0x00C3
    PROFILE_TEMPLATE_ACTIVATED = 0x00CC
    BASAL_RATE_PROFILE_TEMPLATE_TIME_BLOCK_CHANGED = 0x00F0
    TOTAL_DAILY_INSULIN_DELIVERY = 0x00FF
    THERAPY_CONTROL_STATE_CHANGED = 0x0303
    OPERATIONAL_STATE_CHANGED = 0x030C
    RESERVOIR_REMAINING_AMOUNT_CHANGED = 0x0330
    ANNUNCIATION_STATUS_CHANGED_PART_1_OF_2 = 0x033F
    ANNUNCIATION_STATUS_CHANGED_PART_2_OF_2 = 0x0356
    ISF_PROFILE_TEMPLATE_TIME_BLOCK_CHANGED = 0x0359
    I2CHO_RATIO_PROFILE_TEMPLATE_TIME_BLOCK_CHANGED = 0x0365
    TARGET_GLUCOSE_RANGE_PROFILE_TEMPLATE_TIME_BLOCK_CHANGED = 0x036A
    PRIMING_STARTED = 0x0395
    PRIMING_DONE = 0x039A
    DATA_CORRUPTION = 0x03A6
    POINTER_EVENT = 0x03A9
    BOLUS_TEMPLATE_CHANGED_PART_1_OF_2 = 0x03C0
    BOLUS_TEMPLATE_CHANGED_PART_2_OF_2 = 0x03CF
    TBR_TEMPLATE_CHANGED = 0x03F3
    MAX_BOLUS_AMOUNT_CHANGED = 0x03FC


class RecordingReason(IntEnum):
    UNDETERMINED = 0x0F
    SET_DATE_TIME = 0x33
    PERIODIC_RECORDING = 0x3C
    DATE_TIME_LOSS = 0x55


DST_OFFSET_CODES = (0, 2, 4, 8, 255)  # +0, +0.5, +1, +2 h, unknown


@dataclass(frozen=True)
class ReferenceTime:
    """Reference Time event: the pump's local date time; later events carry seconds relative to it.

    Layout: recording reason u8 | year u16 | month | day | hours | minutes | seconds | time zone s8 (15-min
    steps, -128 unknown) | DST offset u8 (0, 2, 4, 8 = +0, +0.5, +1, +2 h; 255 unknown). Year, month and
    day 0 mean unknown (Bluetooth Date Time).
    """

    recording_reason: RecordingReason
    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    time_zone_quarter_hours: int = -128
    dst_code: int = 255

    def local_datetime(self) -> datetime | None:
        """The date time as a naive local ``datetime``, or ``None`` when the pump does not know it."""
        if not (self.year and self.month and self.day):
            return None
        return datetime(self.year, self.month, self.day, self.hour, self.minute, self.second)


def _reference_time_problem(t: ReferenceTime) -> str | None:
    if not (t.year == 0 or 1582 <= t.year <= 9999):
        return f"year {t.year}"
    if not 0 <= t.month <= 12 or not 0 <= t.day <= 31:
        return f"date {t.month}/{t.day}"
    if not (0 <= t.hour <= 23 and 0 <= t.minute <= 59 and 0 <= t.second <= 59):
        return f"time {t.hour}:{t.minute}:{t.second}"
    if not (-48 <= t.time_zone_quarter_hours <= 56 or t.time_zone_quarter_hours == -128):
        return f"time zone {t.time_zone_quarter_hours}"
    if t.dst_code not in DST_OFFSET_CODES:
        return f"DST offset code {t.dst_code}"
    if t.year and t.month and t.day:
        try:
            datetime(t.year, t.month, t.day)
        except ValueError:
            return f"no such date {t.year}-{t.month}-{t.day}"
    return None


@dataclass(frozen=True)
class BolusPart1:
    """Bolus Programmed / Delivered part 1 of 2: what was programmed, or (Delivered) what was delivered
    and the effective duration."""

    bolus_id: int
    bolus_type: BolusType
    fast_u: float
    extended_u: float
    duration_min: int


@dataclass(frozen=True)
class BolusProgrammedPart2:
    delay_min: int | None = None
    template_number: int | None = None
    activation_type: BolusActivationType | None = None
    reason_correction: bool = False
    reason_meal: bool = False


@dataclass(frozen=True)
class BolusDeliveredPart2:
    start_offset_s: int  # delivery start, seconds after the matching Bolus Programmed part 1 event
    activation_type: BolusActivationType | None = None
    end_reason: BolusEndReason | None = None
    annunciation_id: int | None = None


@dataclass(frozen=True)
class BasalRateChanged:
    old_rate_u_per_h: float
    new_rate_u_per_h: float
    delivery_context: BasalDeliveryContext | None = None


@dataclass(frozen=True)
class TbrStarted:
    tbr_type: TbrType
    adjustment: float  # IU/h when ABSOLUTE, dimensionless factor when RELATIVE
    duration_min: int
    template_number: int | None = None


@dataclass(frozen=True)
class TbrEnded:
    tbr_type: TbrType
    effective_duration_min: int
    end_reason: TbrEndReason
    template_number: int | None = None
    annunciation_id: int | None = None


@dataclass(frozen=True)
class TherapyStateChanged:
    old_state: TherapyControlState
    new_state: TherapyControlState


@dataclass(frozen=True)
class OperationalStateChanged:
    old_state: OperationalState
    new_state: OperationalState


@dataclass(frozen=True)
class ReservoirRemainingChanged:
    reservoir_u: float


@dataclass(frozen=True)
class AnnunciationChangedPart1:
    instance_id: int
    annunciation_type: AnnunciationType
    state: AnnunciationState
    aux_info1: int | None = None
    aux_info2: int | None = None


@dataclass(frozen=True)
class AnnunciationChangedPart2:
    aux_info3: int | None = None
    aux_info4: int | None = None
    aux_info5: int | None = None


@dataclass(frozen=True)
class RawEventData:
    """Event data of a (valid) event type this codec keeps as octets."""

    payload: bytes


HistoryEventData = Union[
    ReferenceTime,
    BolusPart1,
    BolusProgrammedPart2,
    BolusDeliveredPart2,
    BasalRateChanged,
    TbrStarted,
    TbrEnded,
    TherapyStateChanged,
    OperationalStateChanged,
    ReservoirRemainingChanged,
    AnnunciationChangedPart1,
    AnnunciationChangedPart2,
    RawEventData,
]

_T = HistoryEventType
_DATA_CLASS: dict[HistoryEventType, type] = {
    _T.REFERENCE_TIME: ReferenceTime,
    _T.BOLUS_PROGRAMMED_PART_1_OF_2: BolusPart1,
    _T.BOLUS_DELIVERED_PART_1_OF_2: BolusPart1,
    _T.BOLUS_PROGRAMMED_PART_2_OF_2: BolusProgrammedPart2,
    _T.BOLUS_DELIVERED_PART_2_OF_2: BolusDeliveredPart2,
    _T.DELIVERED_BASAL_RATE_CHANGED: BasalRateChanged,
    _T.TBR_ADJUSTMENT_STARTED: TbrStarted,
    _T.TBR_ADJUSTMENT_ENDED: TbrEnded,
    _T.THERAPY_CONTROL_STATE_CHANGED: TherapyStateChanged,
    _T.OPERATIONAL_STATE_CHANGED: OperationalStateChanged,
    _T.RESERVOIR_REMAINING_AMOUNT_CHANGED: ReservoirRemainingChanged,
    _T.ANNUNCIATION_STATUS_CHANGED_PART_1_OF_2: AnnunciationChangedPart1,
    _T.ANNUNCIATION_STATUS_CHANGED_PART_2_OF_2: AnnunciationChangedPart2,
}


@dataclass(frozen=True)
class HistoryEvent:
    event_type: HistoryEventType
    sequence: int
    relative_offset_s: int  # seconds since the last Reference Time event
    data: HistoryEventData

    def __post_init__(self) -> None:
        expected = _DATA_CLASS.get(HistoryEventType(self.event_type), RawEventData)
        if not isinstance(self.data, expected):
            raise EncodeError(
                f"{HISTORY}: {HistoryEventType(self.event_type).name} carries {expected.__name__}, "
                f"not {type(self.data).__name__}"
            )


def _write_event_data(w: Writer, event_type: HistoryEventType, d: HistoryEventData) -> None:
    if isinstance(d, ReferenceTime):
        problem = _reference_time_problem(d)
        if problem:
            raise EncodeError(f"{HISTORY}: reference time with invalid {problem}")
        w.enum8(RecordingReason, d.recording_reason, "recording reason")
        w.u16(d.year, "year")
        for name in ("month", "day", "hour", "minute", "second"):
            w.u8(getattr(d, name), name)
        w.s8(d.time_zone_quarter_hours, "time zone")
        w.u8(d.dst_code, "DST offset")
    elif isinstance(d, BolusPart1):
        programmed = event_type == _T.BOLUS_PROGRAMMED_PART_1_OF_2
        check_bolus_encoded(HISTORY, d.bolus_type, d.fast_u, d.extended_u, d.duration_min, programmed=programmed)
        w.u16(d.bolus_id, "bolus id")
        w.enum8(BolusType, d.bolus_type, "bolus type")
        w.insulin(d.fast_u, "bolus fast amount")
        w.insulin(d.extended_u, "bolus extended amount")
        w.u16(d.duration_min, "bolus duration")
    elif isinstance(d, BolusProgrammedPart2):
        write_bolus_flags(w, d.delay_min, d.template_number, d.activation_type, d.reason_correction, d.reason_meal)
        write_bolus_options(w, d.delay_min, d.template_number, d.activation_type)
    elif isinstance(d, BolusDeliveredPart2):
        flags = (
            (0x01 if d.activation_type is not None else 0)
            | (0x02 if d.end_reason is not None else 0)
            | (0x04 if d.annunciation_id is not None else 0)
        )
        w.u8(flags, "flags")
        w.u32(d.start_offset_s, "bolus start time offset")
        if d.activation_type is not None:
            w.enum8(BolusActivationType, d.activation_type, "bolus activation type")
        if d.end_reason is not None:
            w.enum8(BolusEndReason, d.end_reason, "bolus end reason")
        if d.annunciation_id is not None:
            w.u16(d.annunciation_id, "annunciation instance id")
    elif isinstance(d, BasalRateChanged):
        w.u8(0x01 if d.delivery_context is not None else 0x00, "flags")
        w.insulin(d.old_rate_u_per_h, "old basal rate value")
        w.insulin(d.new_rate_u_per_h, "new basal rate value")
        if d.delivery_context is not None:
            w.enum8(BasalDeliveryContext, d.delivery_context, "basal delivery context")
    elif isinstance(d, TbrStarted):
        w.u8(0x01 if d.template_number is not None else 0x00, "flags")
        w.enum8(TbrType, d.tbr_type, "TBR type")
        w.insulin(d.adjustment, "TBR adjustment value")
        w.u16(d.duration_min, "TBR duration programmed")
        if d.template_number is not None:
            w.u8(d.template_number, "TBR template number")
    elif isinstance(d, TbrEnded):
        w.u8((0x01 if d.template_number is not None else 0) | (0x02 if d.annunciation_id is not None else 0), "flags")
        w.enum8(TbrType, d.tbr_type, "last set TBR type")
        w.u16(d.effective_duration_min, "effective TBR duration")
        w.enum8(TbrEndReason, d.end_reason, "TBR end reason")
        if d.template_number is not None:
            w.u8(d.template_number, "last set TBR template number")
        if d.annunciation_id is not None:
            w.u16(d.annunciation_id, "annunciation instance id")
    elif isinstance(d, TherapyStateChanged):
        w.enum8(TherapyControlState, d.old_state, "old therapy control state")
        w.enum8(TherapyControlState, d.new_state, "new therapy control state")
    elif isinstance(d, OperationalStateChanged):
        w.enum8(OperationalState, d.old_state, "old operational state")
        w.enum8(OperationalState, d.new_state, "new operational state")
    elif isinstance(d, ReservoirRemainingChanged):
        w.insulin(d.reservoir_u, "reservoir remaining amount")
    elif isinstance(d, AnnunciationChangedPart1):
        w.u8((0x01 if d.aux_info1 is not None else 0) | (0x02 if d.aux_info2 is not None else 0), "flags")
        w.u16(d.instance_id, "annunciation instance id")
        w.enum16(AnnunciationType, d.annunciation_type, "annunciation type")
        w.enum8(AnnunciationState, d.state, "annunciation status")
        for name in ("aux_info1", "aux_info2"):
            if getattr(d, name) is not None:
                w.u16(getattr(d, name), name)
    elif isinstance(d, AnnunciationChangedPart2):
        names = ("aux_info3", "aux_info4", "aux_info5")
        w.u8(sum(1 << i for i, name in enumerate(names) if getattr(d, name) is not None), "flags")
        for name in names:
            if getattr(d, name) is not None:
                w.u16(getattr(d, name), name)
    elif isinstance(d, RawEventData):
        w.raw(bytes(d.payload))
    else:  # pragma: no cover - HistoryEvent.__post_init__ rejects other types
        raise EncodeError(f"{HISTORY}: unsupported event data {d!r}")


def _reserved_flags(r: Reader, flags: int, allowed: int) -> None:
    if flags & ~allowed:
        raise FlagsError(HISTORY, f"reserved flag bits 0x{flags & ~allowed:02X} set", r.data)


def _read_event_data(r: Reader, event_type: HistoryEventType) -> HistoryEventData:
    d: HistoryEventData
    if event_type == _T.REFERENCE_TIME:
        d = ReferenceTime(
            r.enum8(RecordingReason, "recording reason"), r.u16("year"), r.u8("month"), r.u8("day"),
            r.u8("hours"), r.u8("minutes"), r.u8("seconds"), r.s8("time zone"), r.u8("DST offset"),
        )
        problem = _reference_time_problem(d)
        if problem:
            raise ReservedValueError(HISTORY, f"reference time with invalid {problem}", r.data)
    elif event_type in (_T.BOLUS_PROGRAMMED_PART_1_OF_2, _T.BOLUS_DELIVERED_PART_1_OF_2):
        bolus_id = r.u16("bolus id")
        bolus_type = r.enum8(BolusType, "bolus type")
        fast = r.insulin("bolus fast amount")
        extended = r.insulin("bolus extended amount")
        duration = r.u16("bolus duration")
        check_bolus_decoded(r, bolus_type, fast, extended, duration, programmed=event_type == _T.BOLUS_PROGRAMMED_PART_1_OF_2)
        d = BolusPart1(bolus_id, bolus_type, fast, extended, duration)
    elif event_type == _T.BOLUS_PROGRAMMED_PART_2_OF_2:
        flags = r.u8("flags")
        delay, template, activation = read_bolus_options(r, flags)
        d = BolusProgrammedPart2(delay, template, activation, bool(flags & BOLUS_REASON_CORRECTION), bool(flags & BOLUS_REASON_MEAL))
    elif event_type == _T.BOLUS_DELIVERED_PART_2_OF_2:
        flags = r.u8("flags")
        _reserved_flags(r, flags, 0x07)
        start = r.u32("bolus start time offset")
        activation = r.enum8(BolusActivationType, "bolus activation type") if flags & 0x01 else None
        end_reason = r.enum8(BolusEndReason, "bolus end reason") if flags & 0x02 else None
        annunciation = r.u16("annunciation instance id") if flags & 0x04 else None
        d = BolusDeliveredPart2(start, activation, end_reason, annunciation)
    elif event_type == _T.DELIVERED_BASAL_RATE_CHANGED:
        flags = r.u8("flags")
        _reserved_flags(r, flags, 0x01)
        old, new = r.insulin("old basal rate value"), r.insulin("new basal rate value")
        context = r.enum8(BasalDeliveryContext, "basal delivery context") if flags & 0x01 else None
        d = BasalRateChanged(old, new, context)
    elif event_type == _T.TBR_ADJUSTMENT_STARTED:
        flags = r.u8("flags")
        _reserved_flags(r, flags, 0x01)
        tbr_type = r.enum8(TbrType, "TBR type")
        value = r.insulin("TBR adjustment value")
        duration = r.u16("TBR duration programmed")
        d = TbrStarted(tbr_type, value, duration, r.u8("TBR template number") if flags & 0x01 else None)
    elif event_type == _T.TBR_ADJUSTMENT_ENDED:
        flags = r.u8("flags")
        _reserved_flags(r, flags, 0x03)
        tbr_type = r.enum8(TbrType, "last set TBR type")
        duration = r.u16("effective TBR duration")
        end_reason = r.enum8(TbrEndReason, "TBR end reason")
        template = r.u8("last set TBR template number") if flags & 0x01 else None
        annunciation = r.u16("annunciation instance id") if flags & 0x02 else None
        d = TbrEnded(tbr_type, duration, end_reason, template, annunciation)
    elif event_type == _T.THERAPY_CONTROL_STATE_CHANGED:
        d = TherapyStateChanged(r.enum8(TherapyControlState, "old therapy control state"),
                                r.enum8(TherapyControlState, "new therapy control state"))
    elif event_type == _T.OPERATIONAL_STATE_CHANGED:
        d = OperationalStateChanged(r.enum8(OperationalState, "old operational state"),
                                    r.enum8(OperationalState, "new operational state"))
    elif event_type == _T.RESERVOIR_REMAINING_AMOUNT_CHANGED:
        d = ReservoirRemainingChanged(r.insulin("reservoir remaining amount"))
    elif event_type == _T.ANNUNCIATION_STATUS_CHANGED_PART_1_OF_2:
        flags = r.u8("flags")
        _reserved_flags(r, flags, 0x03)
        instance_id = r.u16("annunciation instance id")
        kind = r.enum16(AnnunciationType, "annunciation type")
        state = r.enum8(AnnunciationState, "annunciation status")
        aux1 = r.u16("aux_info1") if flags & 0x01 else None
        aux2 = r.u16("aux_info2") if flags & 0x02 else None
        d = AnnunciationChangedPart1(instance_id, kind, state, aux1, aux2)
    elif event_type == _T.ANNUNCIATION_STATUS_CHANGED_PART_2_OF_2:
        flags = r.u8("flags")
        _reserved_flags(r, flags, 0x07)
        aux = [r.u16(f"aux_info{i + 3}") if flags & (1 << i) else None for i in range(3)]
        d = AnnunciationChangedPart2(*aux)
    else:
        d = RawEventData(r.take(r.remaining, "event data"))
    r.end()
    return d


HistoryCounterMode = Literal["absent", "present", "auto"]


def encode_history_data(
    event: HistoryEvent,
    *,
    e2e: bool = False,
    counter: int | None = None,
    number_format: Literal["sfloat", "float"] = "sfloat",
) -> bytes:
    """Encode one History Data value. With ``e2e`` the E2E-CRC is appended (specification); ``counter``
    adds an E2E-Counter before it, emulating the BLEIDSSim / commercial-pump variant."""
    w = Writer(HISTORY, number_format)
    w.enum16(HistoryEventType, event.event_type, "event type")
    w.u32(event.sequence, "sequence number")
    w.u16(event.relative_offset_s, "relative offset")
    _write_event_data(w, HistoryEventType(event.event_type), event.data)
    if not e2e:
        if counter is not None:
            raise EncodeError(f"{HISTORY}: an E2E-Counter needs E2E protection")
        return w.bytes()
    if counter is not None:
        return frame(w.bytes(), counter)
    return append_crc(w.bytes())


def _parse_history(r: Reader) -> HistoryEvent:
    event_type = r.enum16(HistoryEventType, "event type")
    sequence = r.u32("sequence number")
    offset = r.u16("relative offset")
    return HistoryEvent(event_type, sequence, offset, _read_event_data(r, event_type))


def decode_history_data(
    data: bytes,
    *,
    e2e: bool = False,
    counter: HistoryCounterMode = "auto",
    checker: E2ECounterChecker | None = None,
    number_format: NumberFormat = "sfloat",
) -> HistoryEvent:
    """Decode one History Data value (see the module docstring for the counter and number variants)."""
    if counter not in ("absent", "present", "auto"):
        raise ValueError(f"counter must be 'absent', 'present' or 'auto', not {counter!r}")
    if not e2e:
        return decode_with_number_format(HISTORY, bytes(data), number_format, _parse_history)
    covered = check_and_strip_crc(HISTORY, bytes(data))
    if counter != "present":
        try:
            return decode_with_number_format(HISTORY, covered, number_format, _parse_history)
        except DecodeError:
            if counter == "absent":
                raise
            first_error = True
    else:
        first_error = False
    if not covered:
        raise LengthError(HISTORY, "too short to carry an E2E-Counter", data)
    body, received = covered[:-1], covered[-1]
    try:
        event = decode_with_number_format(HISTORY, body, number_format, _parse_history)
    except DecodeError:
        if first_error:
            # Report the specification's layout error: it is the layout the value should have had.
            return decode_with_number_format(HISTORY, covered, number_format, _parse_history)
        raise
    if received == 0:
        raise E2ECounterError(HISTORY, "E2E-Counter 0 is not used", data)
    if checker is not None:
        checker.check(received)
    return event
