"""IDD Command Control Point (0x2B25): the commands that change what the pump delivers.

``Op Code u16 | Operand... [E2E]``. Requests (hub -> pump):

* Set Bolus 0x114B: flags u8 | bolus type u8 (0x33 fast, 0x3C extended, 0x55 multiwave) | fast amount
  SFLOAT IU | extended amount SFLOAT IU | duration u16 min [| delay u16 min][| template u8]
  [| activation type u8]; flags: 0x01 delay, 0x02 template, 0x04 activation type present, 0x08 reason
  correction, 0x10 reason meal. Normal response Set Bolus Response 0x1177: bolus id u16.
* Cancel Bolus 0x1178: bolus id u16 -> Cancel Bolus Response 0x1187: bolus id u16.
* Set TBR Adjustment 0x0FFF: flags u8 (0x01 template, 0x02 delivery context present, 0x04 change the
  running TBR) | TBR type u8 (0x33 absolute IU/h, 0x3C relative factor) | value SFLOAT | duration u16 min
  [| template u8][| delivery context u8] -> Response Code.
* Cancel TBR Adjustment 0x1111 -> Response Code.
* Set Therapy Control State 0x0F5A: state u8 -> Response Code.
* Snooze / Confirm Annunciation 0x0F69 / 0x0F99: annunciation id u16 -> 0x0F96 / 0x0FA5 with the id.

Response Code 0x0F55: request op code u16 | response code u8 (0x0F success, 0x70..0x76 errors).

Safety: bolus amounts and TBR values are encoded EXACTLY or not at all (a value SFLOAT would round is an
:class:`EncodeError`), must be finite and non-negative, and must agree with the bolus type
(:func:`firmware_bridge.codec.ids_common.bolus_problem`); decoding applies the same rules.
Layouts: IDS v1.0.2 as implemented by AndroidBLEParser (``idd/commandcontrolpoint/*``) and BLEIDSSim.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, Union

from ..errors import EncodeError, FlagsError, ReservedValueError
from .ids_common import (
    BOLUS_REASON_CORRECTION,
    BOLUS_REASON_MEAL,
    BolusActivationType,
    BolusType,
    NumberFormat,
    Reader,
    ResponseCode,
    TbrDeliveryContext,
    TbrType,
    TherapyControlState,
    Writer,
    check_bolus_decoded,
    check_bolus_encoded,
    read_bolus_options,
    write_bolus_flags,
    write_bolus_options,
    decode_enum,
    decode_with_number_format,
    peek_u16,
)
from .ids_e2e import E2ECounterChecker, frame, unframe

__all__ = [
    "CommandOpcode",
    "SetBolus",
    "CancelBolus",
    "SetTbr",
    "CancelTbr",
    "SetTherapyControlState",
    "SnoozeAnnunciation",
    "ConfirmAnnunciation",
    "CommandRequest",
    "CommandResponseCode",
    "SetBolusResponse",
    "CancelBolusResponse",
    "SnoozeAnnunciationResponse",
    "ConfirmAnnunciationResponse",
    "CommandResponse",
    "encode_command_request",
    "decode_command_request",
    "encode_command_response",
    "decode_command_response",
    "command_opcode_of",
]

CHARACTERISTIC = "IDD Command CP"


class CommandOpcode(IntEnum):
    RESPONSE_CODE = 0x0F55
    SET_THERAPY_CONTROL_STATE = 0x0F5A
    SET_FLIGHT_MODE = 0x0F66
    SNOOZE_ANNUNCIATION = 0x0F69
    SNOOZE_ANNUNCIATION_RESPONSE = 0x0F96
    CONFIRM_ANNUNCIATION = 0x0F99
    CONFIRM_ANNUNCIATION_RESPONSE = 0x0FA5
    READ_BASAL_RATE_PROFILE_TEMPLATE = 0x0FAA
    READ_BASAL_RATE_PROFILE_TEMPLATE_RESPONSE = 0x0FC3
    WRITE_BASAL_RATE_PROFILE_TEMPLATE = 0x0FCC
    WRITE_BASAL_RATE_PROFILE_TEMPLATE_RESPONSE = 0x0FF0
    SET_TBR_ADJUSTMENT = 0x0FFF
    CANCEL_TBR_ADJUSTMENT = 0x1111
    GET_TBR_TEMPLATE = 0x111E
    GET_TBR_TEMPLATE_RESPONSE = 0x1122
    SET_TBR_TEMPLATE = 0x112D
    SET_TBR_TEMPLATE_RESPONSE = 0x1144
    SET_BOLUS = 0x114B
    SET_BOLUS_RESPONSE = 0x1177
    CANCEL_BOLUS = 0x1178
    CANCEL_BOLUS_RESPONSE = 0x1187
    GET_AVAILABLE_BOLUSES = 0x1188
    GET_AVAILABLE_BOLUSES_RESPONSE = 0x11B4
    GET_BOLUS_TEMPLATE = 0x11BB
    GET_BOLUS_TEMPLATE_RESPONSE = 0x11D2
    SET_BOLUS_TEMPLATE = 0x11DD
    SET_BOLUS_TEMPLATE_RESPONSE = 0x11E1
    GET_TEMPLATE_STATUS_AND_DETAILS = 0x11EE
    GET_TEMPLATE_STATUS_AND_DETAILS_RESPONSE = 0x1212
    RESET_TEMPLATE_STATUS = 0x121D
    RESET_TEMPLATE_STATUS_RESPONSE = 0x1221
    ACTIVATE_PROFILE_TEMPLATES = 0x122E
    ACTIVATE_PROFILE_TEMPLATES_RESPONSE = 0x1247
    GET_ACTIVATED_PROFILE_TEMPLATES = 0x1248
    GET_ACTIVATED_PROFILE_TEMPLATES_RESPONSE = 0x1274
    START_PRIMING = 0x127B
    STOP_PRIMING = 0x1284
    SET_INITIAL_RESERVOIR_FILL_LEVEL = 0x128B
    RESET_RESERVOIR_INSULIN_OPERATION_TIME = 0x12B7
    GET_MAX_BOLUS_AMOUNT = 0x147D
    GET_MAX_BOLUS_AMOUNT_RESPONSE = 0x1482
    SET_MAX_BOLUS_AMOUNT = 0x148D


# --- requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetBolus:
    bolus_type: BolusType
    fast_u: float
    extended_u: float = 0.0
    duration_min: int = 0  # duration of the extended part
    delay_min: int | None = None
    template_number: int | None = None
    activation_type: BolusActivationType | None = None
    reason_correction: bool = False
    reason_meal: bool = False

    @property
    def total_u(self) -> float:
        return self.fast_u + self.extended_u


@dataclass(frozen=True)
class CancelBolus:
    bolus_id: int


@dataclass(frozen=True)
class SetTbr:
    tbr_type: TbrType
    adjustment: float  # IU/h when ABSOLUTE, dimensionless factor of the programmed basal when RELATIVE
    duration_min: int
    template_number: int | None = None
    delivery_context: TbrDeliveryContext | None = None
    change_running_tbr: bool = False

    @classmethod
    def absolute(cls, rate_u_per_h: float, duration_min: int, **options: object) -> "SetTbr":
        return cls(TbrType.ABSOLUTE, rate_u_per_h, duration_min, **options)  # type: ignore[arg-type]

    @classmethod
    def relative(cls, factor: float, duration_min: int, **options: object) -> "SetTbr":
        return cls(TbrType.RELATIVE, factor, duration_min, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CancelTbr:
    pass


@dataclass(frozen=True)
class SetTherapyControlState:
    state: TherapyControlState


@dataclass(frozen=True)
class SnoozeAnnunciation:
    annunciation_id: int


@dataclass(frozen=True)
class ConfirmAnnunciation:
    annunciation_id: int


CommandRequest = Union[SetBolus, CancelBolus, SetTbr, CancelTbr, SetTherapyControlState, SnoozeAnnunciation, ConfirmAnnunciation]


def _tbr_problem(tbr_type: TbrType, duration_min: int) -> str | None:
    if tbr_type == TbrType.UNDETERMINED:
        return "undetermined TBR type"
    if duration_min == 0:
        return "TBR without a duration"
    return None


def encode_command_request(
    request: CommandRequest, *, e2e_counter: int | None = None, number_format: Literal["sfloat", "float"] = "sfloat"
) -> bytes:
    w = Writer(CHARACTERISTIC, number_format)
    if isinstance(request, SetBolus):
        b = request
        check_bolus_encoded(CHARACTERISTIC, b.bolus_type, b.fast_u, b.extended_u, b.duration_min, programmed=True)
        w.u16(CommandOpcode.SET_BOLUS, "op code")
        write_bolus_flags(w, b.delay_min, b.template_number, b.activation_type, b.reason_correction, b.reason_meal)
        w.enum8(BolusType, b.bolus_type, "bolus type")
        w.insulin(b.fast_u, "bolus fast amount")
        w.insulin(b.extended_u, "bolus extended amount")
        w.u16(b.duration_min, "bolus duration")
        write_bolus_options(w, b.delay_min, b.template_number, b.activation_type)
    elif isinstance(request, CancelBolus):
        w.u16(CommandOpcode.CANCEL_BOLUS, "op code")
        w.u16(request.bolus_id, "bolus id")
    elif isinstance(request, SetTbr):
        t = request
        problem = _tbr_problem(TbrType(t.tbr_type), t.duration_min)
        if problem:
            raise EncodeError(f"{CHARACTERISTIC}: {problem}")
        flags = (
            (0x01 if t.template_number is not None else 0)
            | (0x02 if t.delivery_context is not None else 0)
            | (0x04 if t.change_running_tbr else 0)
        )
        w.u16(CommandOpcode.SET_TBR_ADJUSTMENT, "op code")
        w.u8(flags, "flags")
        w.enum8(TbrType, t.tbr_type, "TBR type")
        w.insulin(t.adjustment, "TBR adjustment value")
        w.u16(t.duration_min, "TBR duration")
        if t.template_number is not None:
            w.u8(t.template_number, "TBR template number")
        if t.delivery_context is not None:
            w.enum8(TbrDeliveryContext, t.delivery_context, "TBR delivery context")
    elif isinstance(request, CancelTbr):
        w.u16(CommandOpcode.CANCEL_TBR_ADJUSTMENT, "op code")
    elif isinstance(request, SetTherapyControlState):
        w.u16(CommandOpcode.SET_THERAPY_CONTROL_STATE, "op code")
        w.enum8(TherapyControlState, request.state, "therapy control state")
    elif isinstance(request, SnoozeAnnunciation):
        w.u16(CommandOpcode.SNOOZE_ANNUNCIATION, "op code")
        w.u16(request.annunciation_id, "annunciation instance id")
    elif isinstance(request, ConfirmAnnunciation):
        w.u16(CommandOpcode.CONFIRM_ANNUNCIATION, "op code")
        w.u16(request.annunciation_id, "annunciation instance id")
    else:
        raise EncodeError(f"not an IDD Command CP request: {request!r}")
    return frame(w.bytes(), e2e_counter)


def _parse_request(r: Reader) -> CommandRequest:
    opcode = r.enum16(CommandOpcode, "op code")
    request: CommandRequest
    if opcode == CommandOpcode.SET_BOLUS:
        flags = r.u8("flags")
        bolus_type = r.enum8(BolusType, "bolus type")
        fast = r.insulin("bolus fast amount")
        extended = r.insulin("bolus extended amount")
        duration = r.u16("bolus duration")
        delay, template, activation = read_bolus_options(r, flags)
        check_bolus_decoded(r, bolus_type, fast, extended, duration, programmed=True)
        request = SetBolus(bolus_type, fast, extended, duration, delay, template, activation,
                           bool(flags & BOLUS_REASON_CORRECTION), bool(flags & BOLUS_REASON_MEAL))
    elif opcode == CommandOpcode.CANCEL_BOLUS:
        request = CancelBolus(r.u16("bolus id"))
    elif opcode == CommandOpcode.SET_TBR_ADJUSTMENT:
        flags = r.u8("flags")
        if flags & ~0x07:
            raise FlagsError(CHARACTERISTIC, f"reserved TBR flag bits 0x{flags & ~0x07:02X} set", r.data)
        tbr_type = r.enum8(TbrType, "TBR type")
        value = r.insulin("TBR adjustment value")
        duration = r.u16("TBR duration")
        template = r.u8("TBR template number") if flags & 0x01 else None
        context = r.enum8(TbrDeliveryContext, "TBR delivery context") if flags & 0x02 else None
        problem = _tbr_problem(tbr_type, duration)
        if problem:
            raise ReservedValueError(CHARACTERISTIC, problem, r.data)
        request = SetTbr(tbr_type, value, duration, template, context, bool(flags & 0x04))
    elif opcode == CommandOpcode.CANCEL_TBR_ADJUSTMENT:
        request = CancelTbr()
    elif opcode == CommandOpcode.SET_THERAPY_CONTROL_STATE:
        request = SetTherapyControlState(r.enum8(TherapyControlState, "therapy control state"))
    elif opcode == CommandOpcode.SNOOZE_ANNUNCIATION:
        request = SnoozeAnnunciation(r.u16("annunciation instance id"))
    elif opcode == CommandOpcode.CONFIRM_ANNUNCIATION:
        request = ConfirmAnnunciation(r.u16("annunciation instance id"))
    else:
        raise ReservedValueError(CHARACTERISTIC, f"op code {opcode.name} is not a request this codec decodes", r.data)
    r.end()
    return request


def decode_command_request(
    data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None, number_format: NumberFormat = "sfloat"
) -> CommandRequest:
    """Decode a request (the pump's side)."""
    body = unframe(CHARACTERISTIC, data, e2e, checker)
    return decode_with_number_format(CHARACTERISTIC, body, number_format, _parse_request)


# --- responses --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResponseCode:
    request_opcode: CommandOpcode
    result: ResponseCode

    @property
    def ok(self) -> bool:
        return self.result == ResponseCode.SUCCESS


@dataclass(frozen=True)
class SetBolusResponse:
    bolus_id: int


@dataclass(frozen=True)
class CancelBolusResponse:
    bolus_id: int


@dataclass(frozen=True)
class SnoozeAnnunciationResponse:
    annunciation_id: int


@dataclass(frozen=True)
class ConfirmAnnunciationResponse:
    annunciation_id: int


CommandResponse = Union[
    CommandResponseCode, SetBolusResponse, CancelBolusResponse, SnoozeAnnunciationResponse, ConfirmAnnunciationResponse
]

_ID_RESPONSES: dict[type, tuple[CommandOpcode, str]] = {
    SetBolusResponse: (CommandOpcode.SET_BOLUS_RESPONSE, "bolus_id"),
    CancelBolusResponse: (CommandOpcode.CANCEL_BOLUS_RESPONSE, "bolus_id"),
    SnoozeAnnunciationResponse: (CommandOpcode.SNOOZE_ANNUNCIATION_RESPONSE, "annunciation_id"),
    ConfirmAnnunciationResponse: (CommandOpcode.CONFIRM_ANNUNCIATION_RESPONSE, "annunciation_id"),
}


def encode_command_response(response: CommandResponse, *, e2e_counter: int | None = None) -> bytes:
    w = Writer(CHARACTERISTIC)
    if isinstance(response, CommandResponseCode):
        w.u16(CommandOpcode.RESPONSE_CODE, "op code")
        w.enum16(CommandOpcode, response.request_opcode, "request op code")
        w.enum8(ResponseCode, response.result, "response code")
    elif type(response) in _ID_RESPONSES:
        opcode, attribute = _ID_RESPONSES[type(response)]
        w.u16(opcode, "op code")
        w.u16(getattr(response, attribute), attribute)
    else:
        raise EncodeError(f"not an IDD Command CP response: {response!r}")
    return frame(w.bytes(), e2e_counter)


def decode_command_response(data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None) -> CommandResponse:
    """Decode a response (the hub's side)."""
    r = Reader(CHARACTERISTIC, unframe(CHARACTERISTIC, data, e2e, checker))
    opcode = r.enum16(CommandOpcode, "op code")
    response: CommandResponse
    if opcode == CommandOpcode.RESPONSE_CODE:
        response = CommandResponseCode(r.enum16(CommandOpcode, "request op code"), r.enum8(ResponseCode, "response code"))
    else:
        for cls, (known, attribute) in _ID_RESPONSES.items():
            if opcode == known:
                response = cls(r.u16(attribute))
                break
        else:
            raise ReservedValueError(CHARACTERISTIC, f"op code {opcode.name} is not a response this codec decodes", r.data)
    r.end()
    return response


def command_opcode_of(data: bytes) -> CommandOpcode:
    """The op code of a Command CP value (:class:`ReservedValueError` when unknown)."""
    return decode_enum(CommandOpcode, peek_u16(CHARACTERISTIC, data), CHARACTERISTIC, "op code", data)
