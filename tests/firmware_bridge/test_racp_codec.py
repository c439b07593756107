"""RACP (0x2A52) as CGMS uses it: every request/response shape by hand, server error codes, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.codec.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    decode_racp,
    decode_racp_request,
    decode_racp_response,
    encode_racp,
    racp_error_response,
)
from firmware_bridge.errors import DecodeError, EncodeError, LengthError, ReservedValueError

REPORT = RacpOpcode.REPORT_STORED_RECORDS


@pytest.mark.parametrize(("data", "message"), [
    (bytes([0x01, 0x01]), RacpRequest.report_all()),
    (bytes([0x01, 0x03, 0x01, 0x64, 0x00]), RacpRequest.report_at_or_after(100)),
    (bytes([0x01, 0x02, 0x01, 0x2C, 0x01]), RacpRequest.report_at_or_before(300)),
    (bytes([0x01, 0x04, 0x01, 0x0A, 0x00, 0x14, 0x00]), RacpRequest.report_range(10, 20)),
    (bytes([0x01, 0x05]), RacpRequest.report_first()),
    (bytes([0x01, 0x06]), RacpRequest.report_last()),
    (bytes([0x04, 0x01]), RacpRequest.report_number()),
    (bytes([0x04, 0x03, 0x01, 0x00, 0x01]), RacpRequest.report_number(RacpOperator.GREATER_THAN_OR_EQUAL_TO, 256)),
    (bytes([0x02, 0x01]), RacpRequest.delete_all()),
    (bytes([0x03, 0x00]), RacpRequest.abort()),
    (bytes([0x05, 0x00, 0x20, 0x01]), RacpNumberOfRecords(288)),
    (bytes([0x06, 0x00, 0x01, 0x01]), RacpResponse(REPORT, RacpResponseCode.SUCCESS)),
    (bytes([0x06, 0x00, 0x01, 0x06]), RacpResponse(REPORT, RacpResponseCode.NO_RECORDS_FOUND)),
    (bytes([0x06, 0x00, 0x03, 0x07]), RacpResponse(RacpOpcode.ABORT_OPERATION, RacpResponseCode.ABORT_UNSUCCESSFUL)),
    (bytes([0x06, 0x00, 0x09, 0x02]), RacpResponse(9, RacpResponseCode.OP_CODE_NOT_SUPPORTED)),
])
def test_every_shape_by_hand(data: bytes, message: object) -> None:
    assert decode_racp(data) == message
    assert encode_racp(message) == data  # type: ignore[arg-type]


def test_request_and_response_decoders_keep_their_side() -> None:
    assert decode_racp_request(bytes([0x01, 0x01])) == RacpRequest.report_all()
    assert decode_racp_response(bytes([0x05, 0x00, 0x00, 0x00])) == RacpNumberOfRecords(0)
    with pytest.raises(ReservedValueError):
        decode_racp_request(bytes([0x06, 0x00, 0x01, 0x01]))
    with pytest.raises(ReservedValueError):
        decode_racp_response(bytes([0x01, 0x01]))


@pytest.mark.parametrize(("data", "error", "code"), [
    (b"", LengthError, RacpResponseCode.OP_CODE_NOT_SUPPORTED),
    (bytes([0x00, 0x01]), ReservedValueError, RacpResponseCode.OP_CODE_NOT_SUPPORTED),
    (bytes([0x07, 0x01]), ReservedValueError, RacpResponseCode.OP_CODE_NOT_SUPPORTED),
    (bytes([0x01]), LengthError, RacpResponseCode.INVALID_OPERATOR),
    (bytes([0x01, 0x07]), ReservedValueError, RacpResponseCode.INVALID_OPERATOR),
    (bytes([0x01, 0x00]), ReservedValueError, RacpResponseCode.INVALID_OPERATOR),  # report with Null
    (bytes([0x03, 0x01]), ReservedValueError, RacpResponseCode.INVALID_OPERATOR),  # abort with All
    (bytes([0x01, 0x03]), LengthError, RacpResponseCode.INVALID_OPERAND),  # >= without operand
    (bytes([0x01, 0x03, 0x01, 0x64]), LengthError, RacpResponseCode.INVALID_OPERAND),  # half an operand
    (bytes([0x01, 0x04, 0x01, 0x0A, 0x00]), LengthError, RacpResponseCode.INVALID_OPERAND),  # range, one bound
    (bytes([0x01, 0x04, 0x01, 0x14, 0x00, 0x0A, 0x00]), ReservedValueError, RacpResponseCode.INVALID_OPERAND),
    (bytes([0x01, 0x03, 0x02, 0x64, 0x00]), ReservedValueError, RacpResponseCode.OPERAND_NOT_SUPPORTED),
    (bytes([0x01, 0x01, 0x01]), LengthError, RacpResponseCode.INVALID_OPERAND),  # operand after "all"
    (bytes([0x03, 0x00, 0x00]), LengthError, RacpResponseCode.INVALID_OPERAND),
])
def test_bad_requests_give_the_response_code_a_server_should_send(
    data: bytes, error: type[DecodeError], code: RacpResponseCode
) -> None:
    with pytest.raises(error) as raised:
        decode_racp_request(data)
    response = racp_error_response(raised.value, data)
    assert response.response_code is code
    assert int(response.request_opcode) == (data[0] if data else 0)
    # The error response itself is encodable and decodes back.
    assert decode_racp(encode_racp(response)) == response


@pytest.mark.parametrize("data", [
    bytes([0x05, 0x00, 0x01]),  # count too short
    bytes([0x05, 0x01, 0x01, 0x00]),  # non-Null operator in a response
    bytes([0x06, 0x00, 0x01, 0x0A]),  # response code 10 unknown
    bytes([0x06, 0x00, 0x01, 0x01, 0x00]),  # trailing octet
])
def test_bad_responses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_racp_response(data)


@pytest.mark.parametrize("message", [
    RacpRequest(REPORT, RacpOperator.GREATER_THAN_OR_EQUAL_TO),  # missing bound
    RacpRequest(REPORT, RacpOperator.ALL_RECORDS, 5),  # bound that "all" cannot carry
    RacpRequest(REPORT, RacpOperator.WITHIN_RANGE_OF, 20, 10),
    RacpRequest(REPORT, RacpOperator.NULL),
    RacpRequest(RacpOpcode.ABORT_OPERATION, RacpOperator.ALL_RECORDS),
    RacpRequest(RacpOpcode.RESPONSE_CODE, RacpOperator.ALL_RECORDS),
    RacpRequest.report_at_or_after(0x10000),
    RacpNumberOfRecords(-1),
    RacpNumberOfRecords(0x10000),
    RacpResponse(REPORT, 42),  # type: ignore[arg-type]
])
def test_unrepresentable_messages(message: object) -> None:
    with pytest.raises(EncodeError):
        encode_racp(message)  # type: ignore[arg-type]


offsets = st.integers(0, 0xFFFF)
request_opcodes = st.sampled_from(
    [RacpOpcode.REPORT_STORED_RECORDS, RacpOpcode.DELETE_STORED_RECORDS, RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS]
)


@st.composite
def requests(draw: st.DrawFn) -> RacpRequest:
    opcode = draw(request_opcodes)
    operator = draw(st.sampled_from([o for o in RacpOperator if o is not RacpOperator.NULL]))
    low = high = None
    if operator is RacpOperator.GREATER_THAN_OR_EQUAL_TO:
        low = draw(offsets)
    elif operator is RacpOperator.LESS_THAN_OR_EQUAL_TO:
        high = draw(offsets)
    elif operator is RacpOperator.WITHIN_RANGE_OF:
        low, high = sorted((draw(offsets), draw(offsets)))
    return RacpRequest(opcode, operator, low, high)


racp_messages = st.one_of(
    requests(),
    st.just(RacpRequest.abort()),
    st.builds(RacpNumberOfRecords, offsets),
    st.builds(
        RacpResponse,
        st.sampled_from(list(RacpOpcode)) | st.integers(0, 255),
        st.sampled_from(list(RacpResponseCode)),
    ),
)


@given(racp_messages)
def test_message_round_trip(message: object) -> None:
    assert decode_racp(encode_racp(message)) == message  # type: ignore[arg-type]


@given(st.binary(max_size=8) | st.builds(lambda op, rest: bytes([op]) + rest, st.integers(1, 6), st.binary(max_size=6)))
def test_accepted_bytes_re_encode_identically(data: bytes) -> None:
    """Bytes -> message -> bytes: whatever the decoder accepts, the encoder writes back unchanged."""
    try:
        message = decode_racp(data)
    except DecodeError:
        return
    assert encode_racp(message) == data


@given(requests(), st.lists(offsets, max_size=30).map(sorted))
def test_select_indices_matches_the_operator(request: RacpRequest, stored: list[int]) -> None:
    chosen = request.select_indices(stored)
    op = request.operator
    if op is RacpOperator.ALL_RECORDS:
        assert chosen == list(range(len(stored)))
    elif op is RacpOperator.FIRST_RECORD:
        assert chosen == ([0] if stored else [])
    elif op is RacpOperator.LAST_RECORD:
        assert chosen == ([len(stored) - 1] if stored else [])
    else:
        low = 0 if request.min_time_offset_min is None else request.min_time_offset_min
        high = 0xFFFF if request.max_time_offset_min is None else request.max_time_offset_min
        assert chosen == [i for i, t in enumerate(stored) if low <= t <= high]
