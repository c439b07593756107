"""IDS codecs: captured and hand-built values, round trips of every message both ways (with and without
E2E), the E2E counter rules, the robustness variants public implementations disagree on, safety rules."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from enum import IntEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codec.crc import append_crc, crc16_mcrf4xx
from firmware_bridge.codec.ids import (
    ActiveBasalRateDeliveryResponse,
    ActiveBolusDeliveryResponse,
    ActiveBolusIdsResponse,
    ActiveTbr,
    Annunciation,
    AnnunciationChangedPart1,
    AnnunciationChangedPart2,
    AnnunciationState,
    AnnunciationType,
    BasalDeliveryContext,
    BasalRateChanged,
    BolusActivationType,
    BolusDeliveredPart2,
    BolusEndReason,
    BolusPart1,
    BolusProgrammedPart2,
    BolusType,
    BolusValueSelection,
    CancelBolus,
    CancelBolusResponse,
    CancelTbr,
    CommandOpcode,
    CommandResponseCode,
    ConfirmAnnunciation,
    ConfirmAnnunciationResponse,
    DeliveredInsulinResponse,
    E2ECounter,
    E2ECounterBank,
    E2ECounterChecker,
    E2ECounterError,
    GetActiveBasalRateDelivery,
    GetActiveBolusDelivery,
    GetActiveBolusIds,
    GetDeliveredInsulin,
    GetInsulinOnBoard,
    GetTotalDailyInsulinStatus,
    HAMMING_CODES,
    HistoryEvent,
    HistoryEventType,
    IdsDialect,
    IddAnnunciationStatus,
    IddFeatureBit,
    IddFeatures,
    IddStatus,
    IddStatusChanged,
    ImplausibleValueError,
    InsulinOnBoardResponse,
    OperationalState,
    OperationalStateChanged,
    RacpFilterType,
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpResponseCode,
    RacpResult,
    RawEventData,
    RecordingReason,
    ReferenceTime,
    ReservoirRemainingChanged,
    ResetStatus,
    ResponseCode,
    SetBolus,
    SetBolusResponse,
    SetTbr,
    SetTherapyControlState,
    SnoozeAnnunciation,
    SnoozeAnnunciationResponse,
    StatusChangedFlag,
    StatusReaderOpcode,
    StatusReaderResponseCode,
    TbrDeliveryContext,
    TbrEnded,
    TbrEndReason,
    TbrStarted,
    TbrType,
    TherapyControlState,
    TherapyStateChanged,
    TotalDailyInsulinResponse,
    decode_command_request,
    decode_command_response,
    decode_history_data,
    decode_idd_annunciation_status,
    decode_idd_features,
    decode_idd_status,
    decode_idd_status_changed,
    decode_racp_request,
    decode_racp_response,
    decode_status_reader_request,
    decode_status_reader_response,
    e2e_unwrap,
    e2e_wrap,
    encode_command_request,
    encode_command_response,
    encode_history_data,
    encode_idd_annunciation_status,
    encode_idd_features,
    encode_idd_status,
    encode_idd_status_changed,
    encode_racp_request,
    encode_racp_response,
    encode_status_reader_request,
    encode_status_reader_response,
    next_e2e_counter,
    is_hamming_code,
    racp_request_problem,
)
from firmware_bridge.codec import ids
from firmware_bridge.codec.numbers import sfloat_bytes
from firmware_bridge.errors import CrcError, DecodeError, EncodeError, FlagsError, LengthError, ReservedValueError

FAST = settings(max_examples=60, deadline=None)

# --- strategies ---------------------------------------------------------------------------------------


def _exact(mantissa: int, exponent: int) -> float:
    return float(Decimal(mantissa).scaleb(exponent))


# Insulin quantities SFLOAT (and therefore FLOAT) carries exactly: 0..20.00 U in 0.01 steps, whole units...
insulin = st.builds(_exact, st.integers(0, 2000), st.integers(-3, 1))
positive_insulin = st.builds(_exact, st.integers(1, 2000), st.integers(-3, 0))
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
counters = st.one_of(st.none(), st.integers(1, 255))
formats = st.sampled_from(["sfloat", "float"])


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


@st.composite
def bolus_amounts(draw: st.DrawFn) -> tuple[BolusType, float, float, int]:
    kind = draw(st.sampled_from([BolusType.FAST, BolusType.EXTENDED, BolusType.MULTIWAVE]))
    if kind == BolusType.FAST:
        return kind, draw(positive_insulin), 0.0, 0
    if kind == BolusType.EXTENDED:
        return kind, 0.0, draw(positive_insulin), draw(st.integers(1, 0xFFFF))
    return kind, draw(positive_insulin), draw(positive_insulin), draw(st.integers(1, 0xFFFF))


@st.composite
def set_bolus(draw: st.DrawFn) -> SetBolus:
    kind, fast, extended, duration = draw(bolus_amounts())
    return SetBolus(
        kind, fast, extended, duration, draw(optional(u16)), draw(optional(u8)),
        draw(optional(st.sampled_from(BolusActivationType))), draw(st.booleans()), draw(st.booleans()),
    )


@st.composite
def active_bolus(draw: st.DrawFn) -> ActiveBolusDeliveryResponse:
    b = draw(set_bolus())
    return ActiveBolusDeliveryResponse(
        draw(u16), b.bolus_type, b.fast_u, b.extended_u, b.duration_min, b.delay_min, b.template_number,
        b.activation_type, b.reason_correction, b.reason_meal,
    )


set_tbr = st.builds(
    SetTbr, st.sampled_from([TbrType.ABSOLUTE, TbrType.RELATIVE]), insulin, st.integers(1, 0xFFFF),
    optional(u8), optional(st.sampled_from(TbrDeliveryContext)), st.booleans(),
)
command_requests = st.one_of(
    set_bolus(), set_tbr, st.builds(CancelBolus, u16), st.just(CancelTbr()),
    st.builds(SetTherapyControlState, st.sampled_from(TherapyControlState)),
    st.builds(SnoozeAnnunciation, u16), st.builds(ConfirmAnnunciation, u16),
)
command_responses = st.one_of(
    st.builds(CommandResponseCode, st.sampled_from(CommandOpcode), st.sampled_from(ResponseCode)),
    st.builds(SetBolusResponse, u16), st.builds(CancelBolusResponse, u16),
    st.builds(SnoozeAnnunciationResponse, u16), st.builds(ConfirmAnnunciationResponse, u16),
)
status_reader_requests = st.one_of(
    st.builds(ResetStatus, st.builds(StatusChangedFlag, u8)),
    st.just(GetActiveBolusIds()), st.builds(GetActiveBolusDelivery, u16, st.sampled_from(BolusValueSelection)),
    st.just(GetActiveBasalRateDelivery()), st.just(GetTotalDailyInsulinStatus()), st.just(GetDeliveredInsulin()),
    st.just(GetInsulinOnBoard()),
)


@st.composite
def active_basal(draw: st.DrawFn) -> ActiveBasalRateDeliveryResponse:
    tbr = draw(optional(st.builds(ActiveTbr, st.sampled_from([TbrType.ABSOLUTE, TbrType.RELATIVE]), insulin, u16, u16)))
    return ActiveBasalRateDeliveryResponse(
        draw(u8), draw(insulin), tbr, draw(optional(u8)) if tbr else None, draw(optional(st.sampled_from(BasalDeliveryContext)))
    )


status_reader_responses = st.one_of(
    st.builds(StatusReaderResponseCode, st.sampled_from(StatusReaderOpcode), st.sampled_from(ResponseCode)),
    st.builds(ActiveBolusIdsResponse, st.lists(u16, max_size=7).map(tuple)),
    active_bolus(),
    active_basal(),
    st.builds(TotalDailyInsulinResponse, insulin, insulin, insulin),
    st.builds(DeliveredInsulinResponse, st.builds(_exact, st.integers(0, 8_388_605), st.integers(-3, 0)),
              st.builds(_exact, st.integers(0, 8_388_605), st.integers(-3, 0))),
    st.builds(InsulinOnBoardResponse, insulin, optional(u16)),
)
idd_status = st.builds(IddStatus, st.sampled_from(TherapyControlState), st.sampled_from(OperationalState), insulin, st.booleans())
aux_info = st.tuples(*[optional(u16)] * 5)
annunciation_status = st.builds(
    IddAnnunciationStatus,
    optional(st.builds(Annunciation, u16, st.sampled_from(AnnunciationType), st.sampled_from(AnnunciationState), aux_info)),
)


@st.composite
def racp_requests(draw: st.DrawFn) -> RacpRequest:
    opcode = draw(st.sampled_from([RacpOpcode.REPORT_STORED_RECORDS, RacpOpcode.DELETE_STORED_RECORDS,
                                   RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS]))
    operator = draw(st.sampled_from([o for o in RacpOperator if o != RacpOperator.NULL]))
    if opcode == RacpOpcode.REPORT_STORED_RECORDS and draw(st.booleans()):
        return RacpRequest.abort()
    minimum = draw(u32) if operator in (RacpOperator.GREATER_OR_EQUAL, RacpOperator.WITHIN_RANGE) else None
    maximum = draw(u32) if operator in (RacpOperator.LESS_OR_EQUAL, RacpOperator.WITHIN_RANGE) else None
    if minimum is not None and maximum is not None and minimum > maximum:
        minimum, maximum = maximum, minimum
    filter_type = draw(st.sampled_from(RacpFilterType)) if minimum is not None or maximum is not None else None
    return RacpRequest(opcode, operator, filter_type, minimum, maximum)


racp_responses = st.one_of(
    st.builds(RacpResponseCode, st.sampled_from(RacpOpcode), st.sampled_from(RacpResult)),
    st.builds(RacpNumberOfRecords, u32),
)


@st.composite
def history_events(draw: st.DrawFn) -> HistoryEvent:
    T = HistoryEventType
    kind = draw(st.sampled_from(list(T)))
    if kind == T.REFERENCE_TIME:
        moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)))
        data = ReferenceTime(draw(st.sampled_from(RecordingReason)), moment.year, moment.month, moment.day, moment.hour,
                             moment.minute, moment.second, draw(st.integers(-48, 56) | st.just(-128)),
                             draw(st.sampled_from([0, 2, 4, 8, 255])))
    elif kind in (T.BOLUS_PROGRAMMED_PART_1_OF_2, T.BOLUS_DELIVERED_PART_1_OF_2):
        b, f, e, d = draw(bolus_amounts())
        data = BolusPart1(draw(u16), b, f, e, d)
    elif kind == T.BOLUS_PROGRAMMED_PART_2_OF_2:
        data = BolusProgrammedPart2(draw(optional(u16)), draw(optional(u8)), draw(optional(st.sampled_from(BolusActivationType))),
                                    draw(st.booleans()), draw(st.booleans()))
    elif kind == T.BOLUS_DELIVERED_PART_2_OF_2:
        data = BolusDeliveredPart2(draw(u32), draw(optional(st.sampled_from(BolusActivationType))),
                                   draw(optional(st.sampled_from(BolusEndReason))), draw(optional(u16)))
    elif kind == T.DELIVERED_BASAL_RATE_CHANGED:
        data = BasalRateChanged(draw(insulin), draw(insulin), draw(optional(st.sampled_from(BasalDeliveryContext))))
    elif kind == T.TBR_ADJUSTMENT_STARTED:
        data = TbrStarted(draw(st.sampled_from(TbrType)), draw(insulin), draw(u16), draw(optional(u8)))
    elif kind == T.TBR_ADJUSTMENT_ENDED:
        data = TbrEnded(draw(st.sampled_from(TbrType)), draw(u16), draw(st.sampled_from(TbrEndReason)), draw(optional(u8)), draw(optional(u16)))
    elif kind == T.THERAPY_CONTROL_STATE_CHANGED:
        data = TherapyStateChanged(draw(st.sampled_from(TherapyControlState)), draw(st.sampled_from(TherapyControlState)))
    elif kind == T.OPERATIONAL_STATE_CHANGED:
        data = OperationalStateChanged(draw(st.sampled_from(OperationalState)), draw(st.sampled_from(OperationalState)))
    elif kind == T.RESERVOIR_REMAINING_AMOUNT_CHANGED:
        data = ReservoirRemainingChanged(draw(insulin))
    elif kind == T.ANNUNCIATION_STATUS_CHANGED_PART_1_OF_2:
        data = AnnunciationChangedPart1(draw(u16), draw(st.sampled_from(AnnunciationType)), draw(st.sampled_from(AnnunciationState)),
                                        draw(optional(u16)), draw(optional(u16)))
    elif kind == T.ANNUNCIATION_STATUS_CHANGED_PART_2_OF_2:
        data = AnnunciationChangedPart2(draw(optional(u16)), draw(optional(u16)), draw(optional(u16)))
    else:
        data = RawEventData(draw(st.binary(max_size=12)))
    return HistoryEvent(kind, draw(u32), draw(u16), data)


# --- captured and hand-built values -------------------------------------------------------------------


def test_captured_commercial_features_value() -> None:
    features = decode_idd_features(bytes.fromhex("ffff006400fede801f"))
    assert features.concentration_iu_per_ml == 100.0
    assert features.flags == 0x1F80DEFE  # 24 bits + one extension octet announced by bit 23
    assert not features.e2e_protection  # CRC field 0xFFFF: E2E not supported
    for bit in (IddFeatureBit.BASAL_RATE, IddFeatureBit.TBR_ABSOLUTE, IddFeatureBit.TBR_RELATIVE,
                IddFeatureBit.TBR_TEMPLATE, IddFeatureBit.FAST_BOLUS, IddFeatureBit.EXTENDED_BOLUS,
                IddFeatureBit.MULTIWAVE_BOLUS, IddFeatureBit.BOLUS_TEMPLATE, IddFeatureBit.BOLUS_ACTIVATION_TYPE,
                IddFeatureBit.MULTIPLE_BOND, IddFeatureBit.ISF_PROFILE_TEMPLATE,
                IddFeatureBit.TARGET_GLUCOSE_RANGE_PROFILE_TEMPLATE, IddFeatureBit.INSULIN_ON_BOARD,
                IddFeatureBit.FEATURE_EXTENSION):
        assert features.supports(bit), bit
    for bit in (IddFeatureBit.E2E_PROTECTION, IddFeatureBit.BOLUS_DELAY_TIME, IddFeatureBit.I2CHO_RATIO_PROFILE_TEMPLATE):
        assert not features.supports(bit), bit
    assert encode_idd_features(features) == bytes.fromhex("ffff006400fede801f")


def test_features_with_e2e_checks_the_leading_crc() -> None:
    covered = bytes([7]) + bytes.fromhex("6400") + bytes.fromhex("210000")  # counter 7, 100 IU/mL, E2E + fast bolus
    value = crc16_mcrf4xx(covered).to_bytes(2, "little") + covered
    features = decode_idd_features(value)
    assert features.e2e_protection and features.supports(IddFeatureBit.FAST_BOLUS)
    assert encode_idd_features(features, e2e_counter=7) == value
    corrupted = bytearray(value)
    corrupted[4] ^= 0x01
    with pytest.raises(CrcError):
        decode_idd_features(bytes(corrupted))
    with pytest.raises(FlagsError):  # E2E bit clear but a CRC that is not 0xFFFF: the bit itself is suspect
        decode_idd_features(bytes.fromhex("1234006400fe0000"))
    with pytest.raises(LengthError):  # extension bit set, extension octet missing
        decode_idd_features(bytes.fromhex("ffff006400fede80"))


def test_status_hand_built() -> None:
    value = bytes([0x55, 0x96, 0xE1, 0xF5, 0x01])  # run, ready, 1505e-1 = 150.5 IU, reservoir attached
    status = IddStatus(TherapyControlState.RUN, OperationalState.READY, 150.5, True)
    assert decode_idd_status(value) == status
    assert encode_idd_status(status) == value
    protected = append_crc(value + bytes([1]))
    assert decode_idd_status(protected, e2e=True) == status
    assert encode_idd_status(status, e2e_counter=1) == protected
    assert decode_idd_status(bytes([0x3C, 0x3C, 0x00, 0x00, 0x00])).therapy_state == TherapyControlState.PAUSE


def test_status_changed_and_annunciation_hand_built() -> None:
    assert decode_idd_status_changed(bytes([0x81, 0x00])).flags == (
        StatusChangedFlag.THERAPY_CONTROL_STATE_CHANGED | StatusChangedFlag.HISTORY_EVENT_RECORDED
    )
    # flags: present + AuxInfo1; id 0x0102; type reservoir low 0x0066; status pending; aux 0x0A0B
    value = bytes([0x03, 0x02, 0x01, 0x66, 0x00, 0x33, 0x0B, 0x0A])
    decoded = decode_idd_annunciation_status(value)
    assert decoded == IddAnnunciationStatus(
        Annunciation(0x0102, AnnunciationType.RESERVOIR_LOW, AnnunciationState.PENDING, (0x0A0B, None, None, None, None))
    )
    assert encode_idd_annunciation_status(decoded) == value
    assert decode_idd_annunciation_status(b"\x00") == IddAnnunciationStatus(None)


def test_command_cp_hand_built() -> None:
    # Set Bolus: flags correction|meal, fast, 5 IU (0x0005), no extended part
    value = bytes([0x4B, 0x11, 0x18, 0x33, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00])
    request = SetBolus(BolusType.FAST, 5.0, reason_correction=True, reason_meal=True)
    assert decode_command_request(value) == request
    assert encode_command_request(request) == value
    # Set TBR: absolute 0.8 IU/h (8e-1 = 0xF008) for 30 min
    tbr = bytes([0xFF, 0x0F, 0x00, 0x33, 0x08, 0xF0, 0x1E, 0x00])
    assert decode_command_request(tbr) == SetTbr.absolute(0.8, 30)
    assert encode_command_request(SetTbr.relative(1.5, 60)) == bytes([0xFF, 0x0F, 0x00, 0x3C, 0x0F, 0xF0, 0x3C, 0x00])
    assert encode_command_request(CancelTbr()) == bytes([0x11, 0x11])
    assert encode_command_request(CancelBolus(0x0203)) == bytes([0x78, 0x11, 0x03, 0x02])
    assert decode_command_response(bytes([0x77, 0x11, 0x02, 0x01])) == SetBolusResponse(0x0102)
    response = decode_command_response(bytes([0x55, 0x0F, 0x4B, 0x11, 0x75]))
    assert response == CommandResponseCode(CommandOpcode.SET_BOLUS, ResponseCode.PLAUSIBILITY_CHECK_FAILED)
    assert not response.ok


def test_status_reader_hand_built() -> None:
    assert encode_status_reader_request(GetActiveBolusIds()) == bytes([0x30, 0x03])
    assert encode_status_reader_request(GetActiveBolusDelivery(0x0102, BolusValueSelection.REMAINING)) == bytes(
        [0x56, 0x03, 0x02, 0x01, 0x33]
    )
    ok = decode_status_reader_response(bytes([0x03, 0x03, 0x30, 0x03, 0x0F]))
    assert ok == StatusReaderResponseCode(StatusReaderOpcode.GET_ACTIVE_BOLUS_IDS, ResponseCode.SUCCESS) and ok.ok
    assert decode_status_reader_response(bytes([0x3F, 0x03, 0x02, 0x01, 0x00, 0x02, 0x00])) == ActiveBolusIdsResponse((1, 2))
    iob = bytes([0xFC, 0x03, 0x01, 0x0C, 0xF0, 0xB4, 0x00])  # 12e-1 IU, 180 min left
    assert decode_status_reader_response(iob) == InsulinOnBoardResponse(1.2, 180)
    tdi = bytes([0x9A, 0x03, 0x0C, 0x00, 0x12, 0x00, 0x1E, 0x00])  # 12 + 18 = 30 IU
    assert decode_status_reader_response(tdi) == TotalDailyInsulinResponse(12.0, 18.0, 30.0)
    delivered = bytes([0xCF, 0x03, 0x39, 0x30, 0x00, 0xFF, 0x2C, 0x01, 0x00, 0x00])  # FLOAT 12345e-1, 300
    assert decode_status_reader_response(delivered) == DeliveredInsulinResponse(1234.5, 300.0)


def test_racp_and_history_hand_built() -> None:
    assert encode_racp_request(RacpRequest.report_from(100)) == bytes([0x33, 0x55, 0x0F, 0x64, 0, 0, 0])
    assert encode_racp_request(RacpRequest.report_all()) == bytes([0x33, 0x33])
    assert encode_racp_request(RacpRequest.abort()) == bytes([0x55, 0x0F])
    assert decode_racp_response(bytes([0x0F, 0x0F, 0x33, 0xF0])) == RacpResponseCode(RacpOpcode.REPORT_STORED_RECORDS, RacpResult.SUCCESS)
    assert decode_racp_response(bytes([0x66, 0x0F, 0x2A, 0, 0, 0])) == RacpNumberOfRecords(42)
    # therapy state STOP -> RUN, sequence 1, 60 s after the reference time
    value = bytes([0x03, 0x03, 1, 0, 0, 0, 0x3C, 0x00, 0x33, 0x55])
    event = HistoryEvent(HistoryEventType.THERAPY_CONTROL_STATE_CHANGED, 1, 60,
                         TherapyStateChanged(TherapyControlState.STOP, TherapyControlState.RUN))
    assert decode_history_data(value) == event
    assert encode_history_data(event) == value
    assert decode_history_data(append_crc(value), e2e=True) == event


# --- round trips: every message, both directions, with and without E2E ------------------------------


def _both_ways(encoded: bytes, decoded: object, original: object, reencoded: bytes) -> None:
    assert decoded == original
    assert reencoded == encoded


@FAST
@given(features=st.builds(IddFeatures, st.builds(_exact, st.integers(1, 2000), st.integers(-1, 1)),
                          st.integers(0, 0x7FFFFF)), counter=st.integers(1, 255))
def test_features_round_trip(features: IddFeatures, counter: int) -> None:
    data = encode_idd_features(features, e2e_counter=counter)
    assert decode_idd_features(data) == features
    assert encode_idd_features(decode_idd_features(data), e2e_counter=counter) == data


@FAST
@given(status=idd_status, counter=counters, fmt=formats)
def test_status_round_trip(status: IddStatus, counter: int | None, fmt: str) -> None:
    data = encode_idd_status(status, e2e_counter=counter, number_format=fmt)  # type: ignore[arg-type]
    for decode_format in (fmt, "auto"):
        decoded = decode_idd_status(data, e2e=counter is not None, number_format=decode_format)  # type: ignore[arg-type]
        _both_ways(data, decoded, status, encode_idd_status(decoded, e2e_counter=counter, number_format=fmt))  # type: ignore[arg-type]


@FAST
@given(flags=u16, counter=counters)
def test_status_changed_round_trip(flags: int, counter: int | None) -> None:
    value = IddStatusChanged(StatusChangedFlag(flags & 0xFF))
    data = encode_idd_status_changed(value, e2e_counter=counter)
    assert decode_idd_status_changed(data, e2e=counter is not None) == value


@FAST
@given(value=annunciation_status, counter=counters, octets=st.sampled_from([1, 2]))
def test_annunciation_status_round_trip(value: IddAnnunciationStatus, counter: int | None, octets: int) -> None:
    data = encode_idd_annunciation_status(value, e2e_counter=counter, status_octets=octets)  # type: ignore[arg-type]
    for mode in (octets, "auto"):
        decoded = decode_idd_annunciation_status(data, e2e=counter is not None, status_octets=mode)  # type: ignore[arg-type]
        _both_ways(data, decoded, value, encode_idd_annunciation_status(decoded, e2e_counter=counter, status_octets=octets))  # type: ignore[arg-type]


@FAST
@given(request=status_reader_requests, counter=counters)
def test_status_reader_request_round_trip(request: object, counter: int | None) -> None:
    data = encode_status_reader_request(request, e2e_counter=counter)  # type: ignore[arg-type]
    decoded = decode_status_reader_request(data, e2e=counter is not None)
    _both_ways(data, decoded, request, encode_status_reader_request(decoded, e2e_counter=counter))


@settings(max_examples=120, deadline=None)
@given(response=status_reader_responses, counter=counters, fmt=formats)
def test_status_reader_response_round_trip(response: object, counter: int | None, fmt: str) -> None:
    data = encode_status_reader_response(response, e2e_counter=counter, number_format=fmt)  # type: ignore[arg-type]
    for decode_format in (fmt, "auto"):
        decoded = decode_status_reader_response(data, e2e=counter is not None, number_format=decode_format)  # type: ignore[arg-type]
        _both_ways(data, decoded, response, encode_status_reader_response(decoded, e2e_counter=counter, number_format=fmt))  # type: ignore[arg-type]


@settings(max_examples=120, deadline=None)
@given(request=command_requests, counter=counters, fmt=formats)
def test_command_request_round_trip(request: object, counter: int | None, fmt: str) -> None:
    data = encode_command_request(request, e2e_counter=counter, number_format=fmt)  # type: ignore[arg-type]
    for decode_format in (fmt, "auto"):
        decoded = decode_command_request(data, e2e=counter is not None, number_format=decode_format)  # type: ignore[arg-type]
        _both_ways(data, decoded, request, encode_command_request(decoded, e2e_counter=counter, number_format=fmt))  # type: ignore[arg-type]


@FAST
@given(response=command_responses, counter=counters)
def test_command_response_round_trip(response: object, counter: int | None) -> None:
    data = encode_command_response(response, e2e_counter=counter)  # type: ignore[arg-type]
    decoded = decode_command_response(data, e2e=counter is not None)
    _both_ways(data, decoded, response, encode_command_response(decoded, e2e_counter=counter))


@FAST
@given(request=racp_requests(), counter=counters)
def test_racp_request_round_trip(request: RacpRequest, counter: int | None) -> None:
    data = encode_racp_request(request, e2e_counter=counter)
    decoded = decode_racp_request(data, e2e=counter is not None)
    _both_ways(data, decoded, request, encode_racp_request(decoded, e2e_counter=counter))
    assert racp_request_problem(decoded) is None


@FAST
@given(response=racp_responses, counter=counters, include_operator=st.booleans())
def test_racp_response_round_trip(response: object, counter: int | None, include_operator: bool) -> None:
    data = encode_racp_response(response, e2e_counter=counter, include_operator=include_operator)  # type: ignore[arg-type]
    decoded = decode_racp_response(data, e2e=counter is not None)
    _both_ways(data, decoded, response, encode_racp_response(decoded, e2e_counter=counter, include_operator=include_operator))


@settings(max_examples=150, deadline=None)
@given(event=history_events(), e2e=st.booleans(), counter=st.integers(1, 255), with_counter=st.booleans(), fmt=formats)
def test_history_round_trip(event: HistoryEvent, e2e: bool, counter: int, with_counter: bool, fmt: str) -> None:
    sent_counter = counter if e2e and with_counter else None
    data = encode_history_data(event, e2e=e2e, counter=sent_counter, number_format=fmt)  # type: ignore[arg-type]
    raw_tail = isinstance(event.data, RawEventData) and sent_counter is not None
    for decode_format in (fmt, "auto"):
        mode = "present" if raw_tail else "auto"  # raw event data cannot tell a counter from data
        decoded = decode_history_data(data, e2e=e2e, counter=mode, number_format=decode_format)  # type: ignore[arg-type]
        _both_ways(data, decoded, event, encode_history_data(decoded, e2e=e2e, counter=sent_counter, number_format=fmt))  # type: ignore[arg-type]


# --- E2E counters and CRC ------------------------------------------------------------------------------


def test_counter_sequence_wraps_from_255_to_1_and_never_uses_0() -> None:
    sender = E2ECounter()
    values = [sender.next() for _ in range(600)]
    assert values[:3] == [1, 2, 3] and values[254:257] == [255, 1, 2]
    assert 0 not in values
    assert next_e2e_counter(255) == 1
    sender.reset()
    assert sender.next() == 1


def test_checker_accepts_a_whole_cycle_and_rejects_repeats_and_gaps() -> None:
    checker = E2ECounterChecker("IDD Status")
    sender = E2ECounter()
    for _ in range(300):
        checker.check(sender.next())
    with pytest.raises(E2ECounterError, match="repeated"):
        checker.check(sender.last)  # type: ignore[arg-type]
    with pytest.raises(E2ECounterError, match="out of sequence"):
        checker.check(next_e2e_counter(next_e2e_counter(sender.last)))  # type: ignore[arg-type]
    with pytest.raises(E2ECounterError):
        checker.check(0)
    fresh = E2ECounterChecker("x")
    with pytest.raises(E2ECounterError):  # the specification starts at 1
        fresh.check(5)
    late = E2ECounterChecker("x", first_expected=None)
    late.check(200)
    late.check(201)


def test_decoder_with_checker_rejects_a_replayed_value_but_not_its_successor() -> None:
    bank = E2ECounterBank()
    status = IddStatus(TherapyControlState.RUN, OperationalState.READY, 100.0, True)
    first = encode_idd_status(status, e2e_counter=bank.next("status"))
    second = encode_idd_status(status, e2e_counter=bank.next("status"))
    checker = E2ECounterChecker("IDD Status")
    assert decode_idd_status(first, e2e=True, checker=checker) == status
    with pytest.raises(E2ECounterError):
        decode_idd_status(first, e2e=True, checker=checker)
    assert decode_idd_status(second, e2e=True, checker=checker) == status


def test_counter_zero_in_a_frame_is_rejected() -> None:
    with pytest.raises(E2ECounterError):
        e2e_unwrap("IDD Status", append_crc(bytes([0x55, 0x96, 0, 0, 1, 0])))
    with pytest.raises(EncodeError):
        e2e_wrap(b"\x01", 0)
    with pytest.raises(EncodeError):
        e2e_wrap(b"\x01", 256)


@FAST
@given(status=idd_status, counter=st.integers(1, 255), data=st.data())
def test_any_single_bit_error_is_a_crc_error(status: IddStatus, counter: int, data: st.DataObject) -> None:
    value = bytearray(encode_idd_status(status, e2e_counter=counter))
    bit = data.draw(st.integers(0, len(value) * 8 - 1))
    value[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CrcError):
        decode_idd_status(bytes(value), e2e=True)


@pytest.mark.parametrize(
    ("encoded", "decode"),
    [
        (encode_command_request(SetBolus(BolusType.FAST, 1.0), e2e_counter=9), lambda d: decode_command_request(d, e2e=True)),
        (encode_command_response(SetBolusResponse(3), e2e_counter=9), lambda d: decode_command_response(d, e2e=True)),
        (encode_status_reader_request(GetInsulinOnBoard(), e2e_counter=9), lambda d: decode_status_reader_request(d, e2e=True)),
        (encode_status_reader_response(InsulinOnBoardResponse(1.0), e2e_counter=9), lambda d: decode_status_reader_response(d, e2e=True)),
        (encode_racp_request(RacpRequest.report_all(), e2e_counter=9), lambda d: decode_racp_request(d, e2e=True)),
        (encode_racp_response(RacpNumberOfRecords(3), e2e_counter=9), lambda d: decode_racp_response(d, e2e=True)),
        (encode_idd_status_changed(IddStatusChanged(StatusChangedFlag(1)), e2e_counter=9), lambda d: decode_idd_status_changed(d, e2e=True)),
        (encode_idd_annunciation_status(IddAnnunciationStatus(None), e2e_counter=9), lambda d: decode_idd_annunciation_status(d, e2e=True)),
    ],
)
def test_corrupted_crc_on_every_characteristic(encoded: bytes, decode) -> None:  # type: ignore[no-untyped-def]
    decode(encoded)
    corrupted = encoded[:-1] + bytes([encoded[-1] ^ 0x40])
    with pytest.raises(CrcError):
        decode(corrupted)


# --- robustness variants (ble.md, "Known disagreements") -------------------------------------------


def test_racp_response_with_and_without_operator_byte() -> None:
    expected = RacpResponseCode(RacpOpcode.REPORT_STORED_RECORDS, RacpResult.NO_RECORDS_FOUND)
    assert decode_racp_response(bytes([0x0F, 0x0F, 0x33, 0x5A])) == expected  # specification
    assert decode_racp_response(bytes([0x0F, 0x33, 0x5A])) == expected  # BLEIDSSim
    assert decode_racp_response(append_crc(bytes([0x0F, 0x33, 0xF0, 4])), e2e=True).ok
    with pytest.raises(ReservedValueError):  # an operator other than null
        decode_racp_response(bytes([0x0F, 0x33, 0x33, 0x5A]))


def test_filter_byte_after_all_records_is_tolerated() -> None:
    assert decode_racp_request(bytes([0x33, 0x33, 0x0F])) == RacpRequest.report_all()
    assert decode_racp_request(bytes([0x5A, 0x33, 0x0F])) == RacpRequest.count_all()
    with pytest.raises(ReservedValueError):  # not a filter type
        decode_racp_request(bytes([0x33, 0x33, 0x01]))
    with pytest.raises(LengthError):
        decode_racp_request(bytes([0x33, 0x33, 0x0F, 0x00]))


def test_history_with_and_without_counter() -> None:
    event = HistoryEvent(HistoryEventType.RESERVOIR_REMAINING_AMOUNT_CHANGED, 12, 30, ReservoirRemainingChanged(150.5))
    spec = encode_history_data(event, e2e=True)
    variant = encode_history_data(event, e2e=True, counter=1)
    assert len(variant) == len(spec) + 1
    for mode in ("auto",):
        assert decode_history_data(spec, e2e=True, counter=mode) == event
        assert decode_history_data(variant, e2e=True, counter=mode) == event
    assert decode_history_data(spec, e2e=True, counter="absent") == event
    assert decode_history_data(variant, e2e=True, counter="present") == event
    with pytest.raises(LengthError):
        decode_history_data(variant, e2e=True, counter="absent")
    checker = E2ECounterChecker("IDD History Data")
    assert decode_history_data(variant, e2e=True, checker=checker) == event
    with pytest.raises(E2ECounterError):  # the same counter again: replay
        decode_history_data(variant, e2e=True, checker=checker)
    with pytest.raises(E2ECounterError):  # BLEIDSSim sends counter 0, which IDS never uses
        decode_history_data(append_crc(encode_history_data(event) + b"\x00"), e2e=True)


def test_annunciation_status_field_one_or_two_octets() -> None:
    one = bytes([0x01, 0x05, 0x00, 0x3C, 0x00, 0x33])  # occlusion detected, pending
    two = bytes([0x01, 0x05, 0x00, 0x3C, 0x00, 0x33, 0x00])  # AndroidBLEParser reads a uint16 here
    expected = IddAnnunciationStatus(Annunciation(5, AnnunciationType.OCCLUSION_DETECTED, AnnunciationState.PENDING))
    assert decode_idd_annunciation_status(one) == expected
    assert decode_idd_annunciation_status(two) == expected
    assert decode_idd_annunciation_status(two, status_octets=2) == expected
    with pytest.raises(LengthError):
        decode_idd_annunciation_status(two, status_octets=1)
    with pytest.raises(ReservedValueError):  # high octet of a 2-octet status must leave a valid code
        decode_idd_annunciation_status(bytes([0x01, 0x05, 0x00, 0x3C, 0x00, 0x33, 0x01]))


def test_pump_sending_32_bit_float_where_the_spec_has_sfloat() -> None:
    status = IddStatus(TherapyControlState.RUN, OperationalState.READY, 123.45, True)
    as_float = encode_idd_status(status, number_format="float")
    assert len(as_float) == 7
    assert decode_idd_status(as_float, number_format="auto") == status
    assert decode_idd_status(as_float, number_format="float") == status
    with pytest.raises(LengthError):
        decode_idd_status(as_float)  # the specification's SFLOAT layout does not fit
    bolus = SetBolus(BolusType.MULTIWAVE, 2.0, 3.5, 90)
    assert decode_command_request(encode_command_request(bolus, number_format="float"), number_format="auto") == bolus
    iob = InsulinOnBoardResponse(2.25, 120)
    assert decode_status_reader_response(encode_status_reader_response(iob, number_format="float"), number_format="auto") == iob


# --- strictness where safety needs it ------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1.2345, -1.0, math.nan, math.inf, 1e12])
def test_bolus_amount_that_cannot_be_sent_exactly_is_refused(amount: float) -> None:
    with pytest.raises(EncodeError):
        encode_command_request(SetBolus(BolusType.FAST, amount))


@pytest.mark.parametrize(
    "bolus",
    [
        SetBolus(BolusType.FAST, 1.0, 1.0, 0),  # fast bolus with an extended part
        SetBolus(BolusType.FAST, 1.0, 0.0, 30),  # fast bolus with a duration
        SetBolus(BolusType.EXTENDED, 1.0, 1.0, 30),  # extended bolus with a fast part
        SetBolus(BolusType.EXTENDED, 0.0, 1.0, 0),  # extended bolus without duration
        SetBolus(BolusType.MULTIWAVE, 1.0, 1.0, 0),
        SetBolus(BolusType.FAST, 0.0),  # nothing to deliver
        SetBolus(BolusType.UNDETERMINED, 1.0),
    ],
)
def test_bolus_contradicting_its_type_is_refused_both_ways(bolus: SetBolus) -> None:
    with pytest.raises(EncodeError):
        encode_command_request(bolus)
    # hand-build the same bolus to check that the decoder applies the same rule
    value = (
        bytes([0x4B, 0x11, 0x00, int(bolus.bolus_type)])
        + sfloat_bytes(bolus.fast_u)
        + sfloat_bytes(bolus.extended_u)
        + bolus.duration_min.to_bytes(2, "little")
    )
    with pytest.raises(ImplausibleValueError):
        decode_command_request(value)


@pytest.mark.parametrize("raw", [0x07FF, 0x0800, 0x07FE, 0x0802, 0x0FFF])  # NaN, NRes, +INF, -INF, -1
def test_special_or_negative_insulin_numbers_are_rejected(raw: int) -> None:
    value = bytes([0x4B, 0x11, 0x00, 0x33]) + raw.to_bytes(2, "little") + bytes(4)
    with pytest.raises(ImplausibleValueError):
        decode_command_request(value)
    with pytest.raises(ImplausibleValueError):
        decode_idd_status(bytes([0x55, 0x96]) + raw.to_bytes(2, "little") + b"\x01")


def test_unknown_hamming_codes_and_reserved_flags_are_typed_errors() -> None:
    with pytest.raises(ReservedValueError):
        decode_idd_status(bytes([0x56, 0x96, 0, 0, 1]))  # one bit away from RUN
    with pytest.raises(ReservedValueError):
        decode_command_request(bytes([0x4C, 0x11]))  # one bit away from Set Bolus
    with pytest.raises(FlagsError):
        decode_idd_status(bytes([0x55, 0x96, 0, 0, 0x03]))
    with pytest.raises(ReservedValueError):
        decode_status_reader_request(bytes([0x03, 0x03, 0x30, 0x03, 0x0F]))  # a response is not a request
    with pytest.raises(DecodeError):
        decode_command_response(b"")


# --- Hamming codes, reference time, dialects ---------------------------------------------------------


def test_every_enumeration_code_is_a_hamming_codeword_at_distance_4() -> None:
    codes = sorted(HAMMING_CODES)
    assert codes[:16] == [0x0F, 0x33, 0x3C, 0x55, 0x5A, 0x66, 0x69, 0x96, 0x99, 0xA5, 0xAA, 0xC3, 0xCC, 0xF0, 0xFF, 0x0303]
    sample = codes[:64]
    assert min(bin(a ^ b).count("1") for a in sample for b in sample if a != b) == 4
    enums = [getattr(ids, name) for name in ids.__all__]
    enums = [e for e in enums if isinstance(e, type) and issubclass(e, IntEnum) and e is not ResponseCode]
    assert len(enums) >= 20
    for enum_cls in enums:
        for member in enum_cls:
            assert is_hamming_code(member.value), (enum_cls.__name__, member.name)
    assert ResponseCode.SUCCESS in HAMMING_CODES and not is_hamming_code(ResponseCode.INVALID_OPERAND)
    assert not is_hamming_code(0x114C) and not is_hamming_code(0)


def test_reference_time_event() -> None:
    value = bytes([0x0F, 0x00, 0, 0, 0, 0, 0, 0, 0x3C, 0xE9, 0x07, 11, 23, 6, 30, 5, 4, 4])
    event = decode_history_data(value)
    assert event.data == ReferenceTime(RecordingReason.PERIODIC_RECORDING, 2025, 11, 23, 6, 30, 5, 4, 4)
    assert event.data.local_datetime() == datetime(2025, 11, 23, 6, 30, 5)  # type: ignore[union-attr]
    assert encode_history_data(event) == value
    with pytest.raises(ReservedValueError):  # 30 February
        decode_history_data(value[:10] + bytes([2, 30]) + value[12:])
    with pytest.raises(ReservedValueError):  # DST code 3 does not exist
        decode_history_data(value[:-1] + b"\x03")


def test_encoders_refuse_codes_outside_the_enumerations() -> None:
    with pytest.raises(EncodeError):
        encode_idd_status(IddStatus(0x56, OperationalState.READY, 1.0, True))  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode_command_request(SetBolus(0x34, 1.0))  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode_command_request(SetTbr(TbrType.ABSOLUTE, 1.0, 0))  # a TBR needs a duration
    with pytest.raises(EncodeError):
        encode_command_request(CancelBolus(0x1_0000))


def test_a_dialect_drives_the_encoders_and_auto_decoding_reads_every_dialect() :
    dialects = [IdsDialect(), IdsDialect(e2e=True, number_format="float", annunciation_status_octets=2,
                                         racp_response_operator=False, history_counter=True)]
    status = IddStatus(TherapyControlState.RUN, OperationalState.READY, 80.0, True)
    annunciation = IddAnnunciationStatus(Annunciation(9, AnnunciationType.BATTERY_LOW, AnnunciationState.PENDING))
    event = HistoryEvent(HistoryEventType.RESERVOIR_REMAINING_AMOUNT_CHANGED, 3, 10, ReservoirRemainingChanged(80.0))
    done = RacpResponseCode(RacpOpcode.REPORT_STORED_RECORDS, RacpResult.SUCCESS)
    for d in dialects:
        counter = 1 if d.e2e else None
        assert decode_idd_status(encode_idd_status(status, e2e_counter=counter, number_format=d.number_format),
                                 e2e=d.e2e, number_format="auto") == status
        assert decode_idd_annunciation_status(encode_idd_annunciation_status(
            annunciation, e2e_counter=counter, status_octets=d.annunciation_status_octets), e2e=d.e2e) == annunciation
        assert decode_racp_response(encode_racp_response(done, e2e_counter=counter, include_operator=d.racp_response_operator),
                                    e2e=d.e2e) == done
        history_counter = counter if d.history_counter else None
        assert decode_history_data(encode_history_data(event, e2e=d.e2e, counter=history_counter, number_format=d.number_format),
                                   e2e=d.e2e, number_format="auto") == event
