"""IDD Status Reader Control Point (0x2B24): requests (hub -> pump) and responses (pump -> hub).

Every message is ``Op Code u16 | Operand... [E2E]``. Requests and their normal responses:

=====================================  =======  ==========================================================
Request                                Op code  Response op code and operand
=====================================  =======  ==========================================================
Reset Status (u16 flags to clear)      0x030C   Response Code 0x0303
Get Active Bolus IDs                   0x0330   0x033F: count u8, bolus id u16 * count
Get Active Bolus Delivery (id, sel.)   0x0356   0x0359: flags, bolus id, type, fast SFLOAT, extended SFLOAT,
                                                duration u16 min [delay u16 min][template u8][activation u8]
Get Active Basal Rate Delivery         0x0365   0x036A: flags, profile template u8, rate SFLOAT IU/h
                                                [TBR type, TBR value SFLOAT, programmed u16, remaining u16]
                                                [TBR template u8][basal delivery context u8]
Get Total Daily Insulin Status         0x0395   0x039A: bolus SFLOAT, basal SFLOAT, bolus+basal SFLOAT (IU)
Get Delivered Insulin                  0x03C0   0x03CF: bolus FLOAT, basal FLOAT (IU, 32-bit FLOAT per spec)
Get Insulin On Board                   0x03F3   0x03FC: flags, IOB SFLOAT IU [remaining duration u16 min]
=====================================  =======  ==========================================================

Errors come back as Response Code 0x0303: request op code u16 | response code u8 (0x0F success,
0x70..0x74 errors). Layouts follow IDS v1.0.2 as implemented by ehealthinnovation's AndroidBLEParser
(``idd/statusreadercontrolpoint/*``) and BLEIDSSim.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, Union

from ..errors import EncodeError, FlagsError, ReservedValueError
from .ids_common import (
    BOLUS_REASON_CORRECTION,
    BOLUS_REASON_MEAL,
    BasalDeliveryContext,
    BolusActivationType,
    BolusType,
    BolusValueSelection,
    NumberFormat,
    Reader,
    ResponseCode,
    TbrType,
    Writer,
    decode_enum,
    check_bolus_decoded,
    check_bolus_encoded,
    decode_with_number_format,
    peek_u16,
    read_bolus_options,
    write_bolus_flags,
    write_bolus_options,
)
from .ids_e2e import E2ECounterChecker, frame, unframe
from .ids_status import StatusChangedFlag

__all__ = [
    "StatusReaderOpcode",
    "ResetStatus",
    "GetActiveBolusIds",
    "GetActiveBolusDelivery",
    "GetActiveBasalRateDelivery",
    "GetTotalDailyInsulinStatus",
    "GetDeliveredInsulin",
    "GetInsulinOnBoard",
    "StatusReaderRequest",
    "StatusReaderResponseCode",
    "ActiveBolusIdsResponse",
    "ActiveBolusDeliveryResponse",
    "ActiveTbr",
    "ActiveBasalRateDeliveryResponse",
    "TotalDailyInsulinResponse",
    "DeliveredInsulinResponse",
    "InsulinOnBoardResponse",
    "StatusReaderResponse",
    "encode_status_reader_request",
    "decode_status_reader_request",
    "encode_status_reader_response",
    "decode_status_reader_response",
    "MAX_ACTIVE_BOLUS_IDS",
    "opcode_of",
]

CHARACTERISTIC = "IDD Status Reader CP"
MAX_ACTIVE_BOLUS_IDS = 7


class StatusReaderOpcode(IntEnum):
    RESPONSE_CODE = 0x0303
    RESET_STATUS = 0x030C
    GET_ACTIVE_BOLUS_IDS = 0x0330
    GET_ACTIVE_BOLUS_IDS_RESPONSE = 0x033F
    GET_ACTIVE_BOLUS_DELIVERY = 0x0356
    GET_ACTIVE_BOLUS_DELIVERY_RESPONSE = 0x0359
    GET_ACTIVE_BASAL_RATE_DELIVERY = 0x0365
    GET_ACTIVE_BASAL_RATE_DELIVERY_RESPONSE = 0x036A
    GET_TOTAL_DAILY_INSULIN_STATUS = 0x0395
    GET_TOTAL_DAILY_INSULIN_STATUS_RESPONSE = 0x039A
    GET_COUNTER = 0x03A6
    GET_COUNTER_RESPONSE = 0x03A9
    GET_DELIVERED_INSULIN = 0x03C0
    GET_DELIVERED_INSULIN_RESPONSE = 0x03CF
    GET_INSULIN_ON_BOARD = 0x03F3
    GET_INSULIN_ON_BOARD_RESPONSE = 0x03FC


# --- requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetStatus:
    flags: StatusChangedFlag  # the IDD Status Changed bits to clear


@dataclass(frozen=True)
class GetActiveBolusIds:
    pass


@dataclass(frozen=True)
class GetActiveBolusDelivery:
    bolus_id: int
    value_selection: BolusValueSelection


@dataclass(frozen=True)
class GetActiveBasalRateDelivery:
    pass


@dataclass(frozen=True)
class GetTotalDailyInsulinStatus:
    pass


@dataclass(frozen=True)
class GetDeliveredInsulin:
    pass


@dataclass(frozen=True)
class GetInsulinOnBoard:
    pass


StatusReaderRequest = Union[
    ResetStatus,
    GetActiveBolusIds,
    GetActiveBolusDelivery,
    GetActiveBasalRateDelivery,
    GetTotalDailyInsulinStatus,
    GetDeliveredInsulin,
    GetInsulinOnBoard,
]

_SIMPLE_REQUESTS: dict[type, StatusReaderOpcode] = {
    GetActiveBolusIds: StatusReaderOpcode.GET_ACTIVE_BOLUS_IDS,
    GetActiveBasalRateDelivery: StatusReaderOpcode.GET_ACTIVE_BASAL_RATE_DELIVERY,
    GetTotalDailyInsulinStatus: StatusReaderOpcode.GET_TOTAL_DAILY_INSULIN_STATUS,
    GetDeliveredInsulin: StatusReaderOpcode.GET_DELIVERED_INSULIN,
    GetInsulinOnBoard: StatusReaderOpcode.GET_INSULIN_ON_BOARD,
}


def encode_status_reader_request(request: StatusReaderRequest, *, e2e_counter: int | None = None) -> bytes:
    w = Writer(CHARACTERISTIC)
    if type(request) in _SIMPLE_REQUESTS:
        w.u16(_SIMPLE_REQUESTS[type(request)], "op code")
    elif isinstance(request, ResetStatus):
        w.u16(StatusReaderOpcode.RESET_STATUS, "op code")
        w.u16(int(request.flags), "flags")
    elif isinstance(request, GetActiveBolusDelivery):
        w.u16(StatusReaderOpcode.GET_ACTIVE_BOLUS_DELIVERY, "op code")
        w.u16(request.bolus_id, "bolus id")
        w.enum8(BolusValueSelection, request.value_selection, "bolus value selection")
    else:
        raise EncodeError(f"not a Status Reader CP request: {request!r}")
    return frame(w.bytes(), e2e_counter)


def decode_status_reader_request(
    data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None
) -> StatusReaderRequest:
    """Decode a request (the pump's side). An unknown or response op code is :class:`ReservedValueError`."""
    r = Reader(CHARACTERISTIC, unframe(CHARACTERISTIC, data, e2e, checker))
    opcode = r.enum16(StatusReaderOpcode, "op code")
    request: StatusReaderRequest
    simple = {v: k for k, v in _SIMPLE_REQUESTS.items()}
    if opcode in simple:
        request = simple[opcode]()
    elif opcode == StatusReaderOpcode.RESET_STATUS:
        raw = r.u16("flags")
        if raw & ~0x00FF:
            raise FlagsError(CHARACTERISTIC, f"reset of reserved status bits 0x{raw & ~0xFF:04X}", r.data)
        request = ResetStatus(StatusChangedFlag(raw))
    elif opcode == StatusReaderOpcode.GET_ACTIVE_BOLUS_DELIVERY:
        request = GetActiveBolusDelivery(r.u16("bolus id"), r.enum8(BolusValueSelection, "bolus value selection"))
    else:
        raise ReservedValueError(CHARACTERISTIC, f"op code {opcode.name} is not a request this codec decodes", r.data)
    r.end()
    return request


# --- responses --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusReaderResponseCode:
    request_opcode: StatusReaderOpcode
    result: ResponseCode

    @property
    def ok(self) -> bool:
        return self.result == ResponseCode.SUCCESS


@dataclass(frozen=True)
class ActiveBolusIdsResponse:
    bolus_ids: tuple[int, ...]


@dataclass(frozen=True)
class ActiveBolusDeliveryResponse:
    """One active bolus; amounts are what ``value_selection`` of the request asked for (programmed,
    remaining or delivered)."""

    bolus_id: int
    bolus_type: BolusType
    fast_u: float
    extended_u: float
    duration_min: int
    delay_min: int | None = None
    template_number: int | None = None
    activation_type: BolusActivationType | None = None
    reason_correction: bool = False
    reason_meal: bool = False


@dataclass(frozen=True)
class ActiveTbr:
    tbr_type: TbrType
    adjustment: float  # IU/h when ABSOLUTE, dimensionless factor when RELATIVE
    programmed_duration_min: int
    remaining_duration_min: int


@dataclass(frozen=True)
class ActiveBasalRateDeliveryResponse:
    profile_template_number: int
    rate_u_per_h: float  # the active profile's current rate, without the TBR
    tbr: ActiveTbr | None = None
    tbr_template_number: int | None = None
    delivery_context: BasalDeliveryContext | None = None


@dataclass(frozen=True)
class TotalDailyInsulinResponse:
    bolus_u: float
    basal_u: float
    total_u: float


@dataclass(frozen=True)
class DeliveredInsulinResponse:
    """Totals since the pump's last roll-over; 32-bit FLOAT on the wire in every number format."""

    bolus_u: float
    basal_u: float


@dataclass(frozen=True)
class InsulinOnBoardResponse:
    iob_u: float
    remaining_duration_min: int | None = None


StatusReaderResponse = Union[
    StatusReaderResponseCode,
    ActiveBolusIdsResponse,
    ActiveBolusDeliveryResponse,
    ActiveBasalRateDeliveryResponse,
    TotalDailyInsulinResponse,
    DeliveredInsulinResponse,
    InsulinOnBoardResponse,
]

def encode_status_reader_response(
    response: StatusReaderResponse,
    *,
    e2e_counter: int | None = None,
    number_format: Literal["sfloat", "float"] = "sfloat",
) -> bytes:
    w = Writer(CHARACTERISTIC, number_format)
    if isinstance(response, StatusReaderResponseCode):
        w.u16(StatusReaderOpcode.RESPONSE_CODE, "op code")
        w.enum16(StatusReaderOpcode, response.request_opcode, "request op code")
        w.enum8(ResponseCode, response.result, "response code")
    elif isinstance(response, ActiveBolusIdsResponse):
        if len(response.bolus_ids) > MAX_ACTIVE_BOLUS_IDS:
            raise EncodeError(f"{CHARACTERISTIC}: at most {MAX_ACTIVE_BOLUS_IDS} active bolus ids fit one response")
        w.u16(StatusReaderOpcode.GET_ACTIVE_BOLUS_IDS_RESPONSE, "op code")
        w.u8(len(response.bolus_ids), "number of active boluses")
        for bolus_id in response.bolus_ids:
            w.u16(bolus_id, "bolus id")
    elif isinstance(response, ActiveBolusDeliveryResponse):
        b = response
        check_bolus_encoded(CHARACTERISTIC, b.bolus_type, b.fast_u, b.extended_u, b.duration_min, programmed=False)
        w.u16(StatusReaderOpcode.GET_ACTIVE_BOLUS_DELIVERY_RESPONSE, "op code")
        write_bolus_flags(w, b.delay_min, b.template_number, b.activation_type, b.reason_correction, b.reason_meal)
        w.u16(b.bolus_id, "bolus id")
        w.enum8(BolusType, b.bolus_type, "bolus type")
        w.insulin(b.fast_u, "bolus fast amount")
        w.insulin(b.extended_u, "bolus extended amount")
        w.u16(b.duration_min, "bolus duration")
        write_bolus_options(w, b.delay_min, b.template_number, b.activation_type)
    elif isinstance(response, ActiveBasalRateDeliveryResponse):
        a = response
        if a.tbr is None and a.tbr_template_number is not None:
            raise EncodeError(f"{CHARACTERISTIC}: a TBR template number needs an active TBR")
        flags = (
            (0x01 if a.tbr is not None else 0)
            | (0x02 if a.tbr_template_number is not None else 0)
            | (0x04 if a.delivery_context is not None else 0)
        )
        w.u16(StatusReaderOpcode.GET_ACTIVE_BASAL_RATE_DELIVERY_RESPONSE, "op code")
        w.u8(flags, "flags")
        w.u8(a.profile_template_number, "active basal rate profile template number")
        w.insulin(a.rate_u_per_h, "active basal rate current config value")
        if a.tbr is not None:
            w.enum8(TbrType, a.tbr.tbr_type, "TBR type")
            w.insulin(a.tbr.adjustment, "TBR adjustment value")
            w.u16(a.tbr.programmed_duration_min, "TBR duration programmed")
            w.u16(a.tbr.remaining_duration_min, "TBR duration remaining")
        if a.tbr_template_number is not None:
            w.u8(a.tbr_template_number, "TBR template number")
        if a.delivery_context is not None:
            w.enum8(BasalDeliveryContext, a.delivery_context, "basal delivery context")
    elif isinstance(response, TotalDailyInsulinResponse):
        w.u16(StatusReaderOpcode.GET_TOTAL_DAILY_INSULIN_STATUS_RESPONSE, "op code")
        w.insulin(response.bolus_u, "total daily insulin sum of bolus delivered")
        w.insulin(response.basal_u, "total daily insulin sum of basal delivered")
        w.insulin(response.total_u, "total daily insulin sum of bolus and basal delivered")
    elif isinstance(response, DeliveredInsulinResponse):
        w.u16(StatusReaderOpcode.GET_DELIVERED_INSULIN_RESPONSE, "op code")
        w.float32(response.bolus_u, "bolus amount delivered")
        w.float32(response.basal_u, "basal amount delivered")
    elif isinstance(response, InsulinOnBoardResponse):
        w.u16(StatusReaderOpcode.GET_INSULIN_ON_BOARD_RESPONSE, "op code")
        w.u8(0x01 if response.remaining_duration_min is not None else 0x00, "flags")
        w.insulin(response.iob_u, "insulin on board")
        if response.remaining_duration_min is not None:
            w.u16(response.remaining_duration_min, "remaining duration")
    else:
        raise EncodeError(f"not a Status Reader CP response: {response!r}")
    return frame(w.bytes(), e2e_counter)


def _parse_response(r: Reader) -> StatusReaderResponse:
    opcode = r.enum16(StatusReaderOpcode, "op code")
    response: StatusReaderResponse
    if opcode == StatusReaderOpcode.RESPONSE_CODE:
        response = StatusReaderResponseCode(r.enum16(StatusReaderOpcode, "request op code"), r.enum8(ResponseCode, "response code"))
    elif opcode == StatusReaderOpcode.GET_ACTIVE_BOLUS_IDS_RESPONSE:
        count = r.u8("number of active boluses")
        if count > MAX_ACTIVE_BOLUS_IDS:
            raise ReservedValueError(CHARACTERISTIC, f"{count} active bolus ids (at most {MAX_ACTIVE_BOLUS_IDS})", r.data)
        response = ActiveBolusIdsResponse(tuple(r.u16("bolus id") for _ in range(count)))
    elif opcode == StatusReaderOpcode.GET_ACTIVE_BOLUS_DELIVERY_RESPONSE:
        flags = r.u8("flags")
        bolus_id = r.u16("bolus id")
        bolus_type = r.enum8(BolusType, "bolus type")
        fast = r.insulin("bolus fast amount")
        extended = r.insulin("bolus extended amount")
        duration = r.u16("bolus duration")
        delay, template, activation = read_bolus_options(r, flags)
        check_bolus_decoded(r, bolus_type, fast, extended, duration, programmed=False)
        response = ActiveBolusDeliveryResponse(
            bolus_id, bolus_type, fast, extended, duration, delay, template, activation,
            bool(flags & BOLUS_REASON_CORRECTION), bool(flags & BOLUS_REASON_MEAL),
        )
    elif opcode == StatusReaderOpcode.GET_ACTIVE_BASAL_RATE_DELIVERY_RESPONSE:
        flags = r.u8("flags")
        if flags & ~0x07:
            raise FlagsError(CHARACTERISTIC, f"reserved flag bits 0x{flags & ~0x07:02X} set", r.data)
        if flags & 0x02 and not flags & 0x01:
            raise FlagsError(CHARACTERISTIC, "TBR template number flagged without a TBR", r.data)
        template = r.u8("active basal rate profile template number")
        rate = r.insulin("active basal rate current config value")
        tbr = None
        if flags & 0x01:
            tbr = ActiveTbr(r.enum8(TbrType, "TBR type"), r.insulin("TBR adjustment value"),
                            r.u16("TBR duration programmed"), r.u16("TBR duration remaining"))
        tbr_template = r.u8("TBR template number") if flags & 0x02 else None
        context = r.enum8(BasalDeliveryContext, "basal delivery context") if flags & 0x04 else None
        response = ActiveBasalRateDeliveryResponse(template, rate, tbr, tbr_template, context)
    elif opcode == StatusReaderOpcode.GET_TOTAL_DAILY_INSULIN_STATUS_RESPONSE:
        response = TotalDailyInsulinResponse(
            r.insulin("total daily insulin sum of bolus delivered"),
            r.insulin("total daily insulin sum of basal delivered"),
            r.insulin("total daily insulin sum of bolus and basal delivered"),
        )
    elif opcode == StatusReaderOpcode.GET_DELIVERED_INSULIN_RESPONSE:
        response = DeliveredInsulinResponse(r.float32("bolus amount delivered"), r.float32("basal amount delivered"))
    elif opcode == StatusReaderOpcode.GET_INSULIN_ON_BOARD_RESPONSE:
        flags = r.u8("flags")
        if flags & ~0x01:
            raise FlagsError(CHARACTERISTIC, f"reserved flag bits 0x{flags & ~0x01:02X} set", r.data)
        iob = r.insulin("insulin on board")
        response = InsulinOnBoardResponse(iob, r.u16("remaining duration") if flags & 0x01 else None)
    else:
        raise ReservedValueError(CHARACTERISTIC, f"op code {opcode.name} is not a response this codec decodes", r.data)
    r.end()
    return response


def decode_status_reader_response(
    data: bytes,
    *,
    e2e: bool = False,
    checker: E2ECounterChecker | None = None,
    number_format: NumberFormat = "sfloat",
) -> StatusReaderResponse:
    """Decode a response (the hub's side). ``number_format="auto"`` accepts a pump that sends 32-bit
    FLOAT where the specification has SFLOAT (judged by the value's length)."""
    body = unframe(CHARACTERISTIC, data, e2e, checker)
    return decode_with_number_format(CHARACTERISTIC, body, number_format, _parse_response)


def opcode_of(data: bytes) -> StatusReaderOpcode:
    """The op code of a Status Reader CP value (:class:`ReservedValueError` when unknown)."""
    return decode_enum(StatusReaderOpcode, peek_u16(CHARACTERISTIC, data), CHARACTERISTIC, "op code", data)
