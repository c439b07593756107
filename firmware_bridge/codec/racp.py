"""Record Access Control Point (0x2A52) as the CGM Service uses it: pure codec, both directions.

Wire layout: ``[opcode, operator, operand...]``. For CGMS the only filter type is 1 = Time Offset (u16
minutes since session start), so a filtered operand is ``[filter type, u16]`` (<=, >=) or
``[filter type, u16 min, u16 max]`` (range, inclusive). "All", "first", "last" and abort carry no operand.
Responses: ``[05, 00, u16 count]`` (number of stored records) and ``[06, 00, request opcode, code]``.
RACP carries no E2E-CRC in CGMS.

Public API (``__all__``)::

    RacpOpcode, RacpOperator, RacpFilterType, RacpResponseCode   (IntEnums)
    RacpRequest(opcode, operator, min_time_offset_min=None, max_time_offset_min=None)
        .report_all() .report_at_or_after(t) .report_at_or_before(t) .report_range(a, b) .report_first()
        .report_last() .report_number(operator=ALL, ...) .delete_all() .abort()       (classmethod builders)
        .select_indices(time_offsets_min) -> list[int]   which stored records the request addresses
    RacpNumberOfRecords(number_of_records)
    RacpResponse(request_opcode, response_code)
    RacpMessage = RacpRequest | RacpNumberOfRecords | RacpResponse
    decode_racp(data) -> RacpMessage ; encode_racp(message) -> bytes
    decode_racp_request(data) -> RacpRequest ; decode_racp_response(data) -> RacpNumberOfRecords | RacpResponse
    racp_error_response(error, request_data) -> RacpResponse   the response a server sends for a bad request

Every decode failure is a DecodeError subclass; failures of a *request* also carry
``error.racp_response_code`` (the RACP response code a server should indicate: op code not supported,
invalid operator, invalid operand, operand not supported), which :func:`racp_error_response` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn

from ..errors import DecodeError, EncodeError, LengthError, ReservedValueError
from ._wire import Reader, uint_bytes

__all__ = [
    "RacpFilterType",
    "RacpMessage",
    "RacpNumberOfRecords",
    "RacpOpcode",
    "RacpOperator",
    "RacpRequest",
    "RacpResponse",
    "RacpResponseCode",
    "decode_racp",
    "decode_racp_request",
    "decode_racp_response",
    "encode_racp",
    "racp_error_response",
]

RACP = "Record Access Control Point (0x2A52)"


class RacpOpcode(IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL_TO = 2
    GREATER_THAN_OR_EQUAL_TO = 3
    WITHIN_RANGE_OF = 4  # inclusive
    FIRST_RECORD = 5  # oldest
    LAST_RECORD = 6  # most recent


class RacpFilterType(IntEnum):
    TIME_OFFSET = 1  # CGMS: u16 minutes since session start


class RacpResponseCode(IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


_REQUEST_OPCODES = (
    RacpOpcode.REPORT_STORED_RECORDS,
    RacpOpcode.DELETE_STORED_RECORDS,
    RacpOpcode.ABORT_OPERATION,
    RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
)
_FILTERED = (RacpOperator.LESS_THAN_OR_EQUAL_TO, RacpOperator.GREATER_THAN_OR_EQUAL_TO, RacpOperator.WITHIN_RANGE_OF)


@dataclass(frozen=True)
class RacpRequest:
    """A request written by the collector. Bounds are inclusive, in minutes since session start.

    ``min_time_offset_min`` is set for >= and range, ``max_time_offset_min`` for <= and range; both are
    None for all / first / last / abort.
    """

    opcode: RacpOpcode
    operator: RacpOperator
    min_time_offset_min: int | None = None
    max_time_offset_min: int | None = None

    @classmethod
    def report_all(cls) -> RacpRequest:
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def report_at_or_after(cls, time_offset_min: int) -> RacpRequest:
        """Records with time offset >= ``time_offset_min``: how a hub backfills what it missed."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL_TO, time_offset_min)

    @classmethod
    def report_at_or_before(cls, time_offset_min: int) -> RacpRequest:
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL_TO, None, time_offset_min)

    @classmethod
    def report_range(cls, min_time_offset_min: int, max_time_offset_min: int) -> RacpRequest:
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.WITHIN_RANGE_OF, min_time_offset_min, max_time_offset_min)

    @classmethod
    def report_first(cls) -> RacpRequest:
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.FIRST_RECORD)

    @classmethod
    def report_last(cls) -> RacpRequest:
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD)

    @classmethod
    def report_number(
        cls,
        operator: RacpOperator = RacpOperator.ALL_RECORDS,
        min_time_offset_min: int | None = None,
        max_time_offset_min: int | None = None,
    ) -> RacpRequest:
        return cls(RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, operator, min_time_offset_min, max_time_offset_min)

    @classmethod
    def delete_all(cls) -> RacpRequest:
        return cls(RacpOpcode.DELETE_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def abort(cls) -> RacpRequest:
        return cls(RacpOpcode.ABORT_OPERATION, RacpOperator.NULL)

    def select_indices(self, time_offsets_min: Sequence[int]) -> list[int]:
        """Indices of the stored records (given in storage order, oldest first) this request addresses."""
        n = len(time_offsets_min)
        op = self.operator
        if op is RacpOperator.ALL_RECORDS:
            return list(range(n))
        if op is RacpOperator.FIRST_RECORD:
            return [0] if n else []
        if op is RacpOperator.LAST_RECORD:
            return [n - 1] if n else []
        low = self.min_time_offset_min if self.min_time_offset_min is not None else 0
        high = self.max_time_offset_min if self.max_time_offset_min is not None else 0xFFFF
        if op in _FILTERED:
            return [i for i, t in enumerate(time_offsets_min) if low <= t <= high]
        return []


@dataclass(frozen=True)
class RacpNumberOfRecords:
    """Number of Stored Records response (opcode 5)."""

    number_of_records: int


@dataclass(frozen=True)
class RacpResponse:
    """Response Code (opcode 6). ``request_opcode`` stays a plain int when the request's opcode was unknown."""

    request_opcode: RacpOpcode | int
    response_code: RacpResponseCode


RacpMessage = RacpRequest | RacpNumberOfRecords | RacpResponse


def _fail(error_type: type[DecodeError], reason: str, data: bytes, code: RacpResponseCode | None = None) -> NoReturn:
    error = error_type(RACP, reason, data)
    if code is not None:
        error.racp_response_code = code  # type: ignore[attr-defined]
    raise error


def _request(reader: Reader, opcode: RacpOpcode, data: bytes) -> RacpRequest:
    if reader.remaining < 1:
        _fail(LengthError, "missing Operator", data, RacpResponseCode.INVALID_OPERATOR)
    raw_operator = reader.u8("Operator")
    try:
        operator = RacpOperator(raw_operator)
    except ValueError:
        _fail(ReservedValueError, f"unknown Operator {raw_operator}", data, RacpResponseCode.INVALID_OPERATOR)
    if opcode is RacpOpcode.ABORT_OPERATION:
        if operator is not RacpOperator.NULL:
            _fail(ReservedValueError, f"Abort needs the Null operator, got {operator.name}", data, RacpResponseCode.INVALID_OPERATOR)
    elif operator is RacpOperator.NULL:
        _fail(ReservedValueError, f"{opcode.name} needs an operator, got Null", data, RacpResponseCode.INVALID_OPERATOR)
    low = high = None
    if operator in _FILTERED:
        if reader.remaining < 1:
            _fail(LengthError, f"{operator.name} needs a filter type and operand", data, RacpResponseCode.INVALID_OPERAND)
        filter_type = reader.u8("Filter Type")
        if filter_type != RacpFilterType.TIME_OFFSET:
            _fail(ReservedValueError, f"unsupported Filter Type {filter_type}", data, RacpResponseCode.OPERAND_NOT_SUPPORTED)
        wanted = 4 if operator is RacpOperator.WITHIN_RANGE_OF else 2
        if reader.remaining != wanted:
            _fail(LengthError, f"{operator.name} needs a {wanted}-octet time offset operand, got {reader.remaining}", data, RacpResponseCode.INVALID_OPERAND)
        if operator is RacpOperator.LESS_THAN_OR_EQUAL_TO:
            high = reader.u16("Maximum Time Offset")
        elif operator is RacpOperator.GREATER_THAN_OR_EQUAL_TO:
            low = reader.u16("Minimum Time Offset")
        else:
            low, high = reader.u16("Minimum Time Offset"), reader.u16("Maximum Time Offset")
            if low > high:
                _fail(ReservedValueError, f"range minimum {low} above maximum {high}", data, RacpResponseCode.INVALID_OPERAND)
    if reader.remaining:
        _fail(LengthError, f"{reader.remaining} unexpected operand octet(s) for {operator.name}", data, RacpResponseCode.INVALID_OPERAND)
    return RacpRequest(opcode, operator, low, high)


def decode_racp(data: bytes) -> RacpMessage:
    """Decode any RACP value (request or response)."""
    data = bytes(data)
    if not data:
        _fail(LengthError, "empty value", data, RacpResponseCode.OP_CODE_NOT_SUPPORTED)
    reader = Reader(RACP, data)
    raw_opcode = reader.u8("Op Code")
    try:
        opcode = RacpOpcode(raw_opcode)
    except ValueError:
        _fail(ReservedValueError, f"unknown Op Code {raw_opcode}", data, RacpResponseCode.OP_CODE_NOT_SUPPORTED)
    if opcode in _REQUEST_OPCODES:
        return _request(reader, opcode, data)
    if opcode is RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE or opcode is RacpOpcode.RESPONSE_CODE:
        # A collector never writes these; for a server they are an unsupported request.
        code = RacpResponseCode.OP_CODE_NOT_SUPPORTED
        if len(data) != 4:
            _fail(LengthError, f"{opcode.name} must be 4 octets, got {len(data)}", data, code)
        operator = reader.u8("Operator")
        if operator != RacpOperator.NULL:
            _fail(ReservedValueError, f"{opcode.name} needs the Null operator, got {operator}", data, code)
        if opcode is RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE:
            return RacpNumberOfRecords(reader.u16("Number of Records"))
        raw_request = reader.u8("Request Op Code")
        raw_code = reader.u8("Response Code Value")
        try:
            response_code = RacpResponseCode(raw_code)
        except ValueError:
            _fail(ReservedValueError, f"unknown Response Code {raw_code}", data, code)
        try:
            request_opcode: RacpOpcode | int = RacpOpcode(raw_request)
        except ValueError:
            request_opcode = raw_request
        return RacpResponse(request_opcode, response_code)
    raise AssertionError(f"unhandled opcode {opcode}")  # pragma: no cover


def decode_racp_request(data: bytes) -> RacpRequest:
    """Decode what a collector writes; a response opcode here is an unsupported op code."""
    message = decode_racp(data)
    if not isinstance(message, RacpRequest):
        _fail(ReservedValueError, "a response opcode is not a request", bytes(data), RacpResponseCode.OP_CODE_NOT_SUPPORTED)
    return message


def decode_racp_response(data: bytes) -> RacpNumberOfRecords | RacpResponse:
    """Decode what a server indicates; a request opcode here is an error."""
    message = decode_racp(data)
    if isinstance(message, RacpRequest):
        _fail(ReservedValueError, "a request opcode where a response was expected", bytes(data))
    return message


def racp_error_response(error: DecodeError, request_data: bytes) -> RacpResponse:
    """The Response Code indication a server sends for a request that failed to decode."""
    raw = bytes(request_data)
    request_opcode: RacpOpcode | int = raw[0] if raw else 0
    if raw and raw[0] in RacpOpcode._value2member_map_:
        request_opcode = RacpOpcode(raw[0])
    code = getattr(error, "racp_response_code", RacpResponseCode.INVALID_OPERAND)
    return RacpResponse(request_opcode, code)


def _encode_request(request: RacpRequest) -> bytes:
    try:
        opcode = RacpOpcode(request.opcode)
        operator = RacpOperator(request.operator)
    except ValueError as error:
        raise EncodeError(f"{RACP}: {error}") from None
    if opcode not in _REQUEST_OPCODES:
        raise EncodeError(f"{RACP}: {opcode.name} is not a request opcode")
    if (opcode is RacpOpcode.ABORT_OPERATION) != (operator is RacpOperator.NULL):
        raise EncodeError(f"{RACP}: {opcode.name} cannot use operator {operator.name}")
    low, high = request.min_time_offset_min, request.max_time_offset_min
    wants_low = operator in (RacpOperator.GREATER_THAN_OR_EQUAL_TO, RacpOperator.WITHIN_RANGE_OF)
    wants_high = operator in (RacpOperator.LESS_THAN_OR_EQUAL_TO, RacpOperator.WITHIN_RANGE_OF)
    if (low is not None) != wants_low or (high is not None) != wants_high:
        raise EncodeError(f"{RACP}: operator {operator.name} does not match bounds min={low!r} max={high!r}")
    out = bytes([opcode, operator])
    if operator in _FILTERED:
        out += bytes([RacpFilterType.TIME_OFFSET])
        if low is not None:
            out += uint_bytes(low, 2, "Minimum Time Offset (min)")
        if high is not None:
            out += uint_bytes(high, 2, "Maximum Time Offset (min)")
        if low is not None and high is not None and low > high:
            raise EncodeError(f"{RACP}: range minimum {low} above maximum {high}")
    return out


def encode_racp(message: RacpMessage) -> bytes:
    if isinstance(message, RacpRequest):
        return _encode_request(message)
    if isinstance(message, RacpNumberOfRecords):
        return bytes([RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, RacpOperator.NULL]) + uint_bytes(
            message.number_of_records, 2, "Number of Records"
        )
    if isinstance(message, RacpResponse):
        try:
            code = RacpResponseCode(message.response_code)
        except ValueError as error:
            raise EncodeError(f"{RACP}: {error}") from None
        return bytes([RacpOpcode.RESPONSE_CODE, RacpOperator.NULL]) + uint_bytes(
            int(message.request_opcode), 1, "Request Op Code"
        ) + bytes([code])
    raise EncodeError(f"{RACP}: cannot encode {message!r}")
