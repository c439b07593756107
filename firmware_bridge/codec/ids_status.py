"""IDD Features (0x2B23), IDD Status (0x2B21), IDD Status Changed (0x2B20), IDD Annunciation Status (0x2B22).

Layouts (little-endian; ``[E2E]`` = E2E-Counter u8 + E2E-CRC u16, present when the pump's Features
have E2E-Protection, see :mod:`firmware_bridge.codec.ids_e2e`):

* IDD Features: E2E-CRC u16 | E2E-Counter u8 | Insulin Concentration SFLOAT (IU/mL) | Flags 24 bit
  [| extension octets]. The CRC comes FIRST here and covers every octet after it; when E2E is not
  supported it is 0xFFFF (and the counter 0). Flag bit 23 (Feature Extension) announces one more octet
  of flags, whose top bit again announces another, and so on.
  Captured from a commercial pump: ``ffff 00 6400 fede801f`` = no E2E, 100 IU/mL, flags 0x1F80DEFE.
* IDD Status: Therapy Control State u8 | Operational State u8 | Reservoir Remaining Amount SFLOAT (IU)
  | Flags u8 (bit 0 reservoir attached) [E2E].
* IDD Status Changed: Flags u16 [E2E].
* IDD Annunciation Status: Flags u8 | [Instance ID u16 | Type u16 | Status u8 | AuxInfo1..5 u16 each
  per flags] [E2E].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Literal

from ..errors import CrcError, EncodeError, FlagsError, LengthError
from .crc import crc16_mcrf4xx
from .ids_common import (
    ImplausibleValueError,
    NumberFormat,
    OperationalState,
    Reader,
    TherapyControlState,
    Writer,
    decode_with_number_format,
)
from .ids_e2e import E2E_COUNTER_LAST, E2ECounterChecker, E2ECounterError, frame, unframe
from .numbers import decode_sfloat

__all__ = [
    "IddFeatureBit",
    "IddFeatures",
    "decode_idd_features",
    "encode_idd_features",
    "IddStatus",
    "decode_idd_status",
    "encode_idd_status",
    "StatusChangedFlag",
    "IddStatusChanged",
    "decode_idd_status_changed",
    "encode_idd_status_changed",
    "AnnunciationType",
    "AnnunciationState",
    "Annunciation",
    "IddAnnunciationStatus",
    "decode_idd_annunciation_status",
    "encode_idd_annunciation_status",
]

FEATURES = "IDD Features"
STATUS = "IDD Status"
STATUS_CHANGED = "IDD Status Changed"
ANNUNCIATION_STATUS = "IDD Annunciation Status"


# --- IDD Features -----------------------------------------------------------------------------------


class IddFeatureBit(IntFlag):
    """IDD Features flag bits (IDS v1.0.2; bits 16..22 reserved)."""

    E2E_PROTECTION = 1 << 0
    BASAL_RATE = 1 << 1
    TBR_ABSOLUTE = 1 << 2
    TBR_RELATIVE = 1 << 3
    TBR_TEMPLATE = 1 << 4
    FAST_BOLUS = 1 << 5
    EXTENDED_BOLUS = 1 << 6
    MULTIWAVE_BOLUS = 1 << 7
    BOLUS_DELAY_TIME = 1 << 8
    BOLUS_TEMPLATE = 1 << 9
    BOLUS_ACTIVATION_TYPE = 1 << 10
    MULTIPLE_BOND = 1 << 11
    ISF_PROFILE_TEMPLATE = 1 << 12
    I2CHO_RATIO_PROFILE_TEMPLATE = 1 << 13
    TARGET_GLUCOSE_RANGE_PROFILE_TEMPLATE = 1 << 14
    INSULIN_ON_BOARD = 1 << 15
    FEATURE_EXTENSION = 1 << 23


@dataclass(frozen=True)
class IddFeatures:
    """What the pump supports. ``flags`` holds every flag bit received, extension octets included.

    Reserved bits (16..22, and bits in extension octets) are kept as received rather than rejected: they
    announce features a later revision defines, and the captured commercial value sets bits 24..28.
    Nothing is inferred from them; the known bits are :class:`IddFeatureBit`.
    """

    concentration_iu_per_ml: float
    flags: int

    def supports(self, feature: IddFeatureBit) -> bool:
        return bool(self.flags & feature)

    @property
    def e2e_protection(self) -> bool:
        return self.supports(IddFeatureBit.E2E_PROTECTION)

    @property
    def known_features(self) -> IddFeatureBit:
        return IddFeatureBit(self.flags & sum(IddFeatureBit))


def _flag_octets(flags: int) -> bytes:
    """24 flag bits, then one more octet for as long as the previous octet's top bit (extension) is set."""
    if flags < 0:
        raise EncodeError(f"{FEATURES}: flags must be non-negative")
    out = bytearray((flags & 0xFFFFFF).to_bytes(3, "little"))
    rest = flags >> 24
    while out[-1] & 0x80:
        out.append(rest & 0xFF)
        rest >>= 8
    if rest:
        raise EncodeError(f"{FEATURES}: flags 0x{flags:X} set bits beyond the announced extension octets")
    return bytes(out)


def decode_idd_features(data: bytes, *, checker: E2ECounterChecker | None = None) -> IddFeatures:
    """Decode IDD Features. When bit 0 (E2E) is set the CRC is verified (and the counter, if a checker is
    given); when it is clear the CRC field must be 0xFFFF, the specification's "not supported" value:
    anything else means the value or the E2E bit itself is corrupted, and the hub must not guess."""
    data = bytes(data)
    reader = Reader(FEATURES, data)
    crc = reader.u16("E2E-CRC")
    counter = reader.u8("E2E-Counter")
    concentration_raw = reader.u16("insulin concentration")
    flags = int.from_bytes(reader.take(3, "flags"), "little")
    shift = 24
    last_octet = flags >> 16
    while last_octet & 0x80:
        last_octet = reader.u8("feature extension octet")
        flags |= last_octet << shift
        shift += 8
    reader.end()
    if flags & IddFeatureBit.E2E_PROTECTION:
        expected = crc16_mcrf4xx(data[2:])
        if crc != expected:
            raise CrcError(FEATURES, f"E2E-CRC 0x{crc:04X} does not match 0x{expected:04X}", data)
        if counter == 0:
            raise E2ECounterError(FEATURES, "E2E-Counter 0 is not used", data)
        if checker is not None:
            checker.check(counter)
    elif crc != 0xFFFF:
        raise FlagsError(FEATURES, f"E2E not supported but the CRC field is 0x{crc:04X}, not 0xFFFF", data)
    concentration = decode_sfloat(concentration_raw, field="insulin concentration", strict=True)
    if concentration <= 0:
        raise ImplausibleValueError(FEATURES, f"insulin concentration {concentration} IU/mL is not positive", data)
    return IddFeatures(concentration_iu_per_ml=concentration, flags=flags)


def encode_idd_features(features: IddFeatures, *, e2e_counter: int | None = None) -> bytes:
    """Encode IDD Features; with E2E (flag bit 0) ``e2e_counter`` is required and the CRC is computed."""
    writer = Writer(FEATURES)
    if not features.concentration_iu_per_ml > 0:
        raise EncodeError(f"{FEATURES}: concentration must be positive")
    writer.insulin(features.concentration_iu_per_ml, "insulin concentration")
    tail = writer.bytes() + _flag_octets(features.flags)
    if features.flags & IddFeatureBit.E2E_PROTECTION:
        if e2e_counter is None or not 1 <= e2e_counter <= E2E_COUNTER_LAST:
            raise EncodeError(f"{FEATURES}: E2E protection needs an E2E-Counter in 1..255, not {e2e_counter!r}")
        covered = bytes([e2e_counter]) + tail
        return crc16_mcrf4xx(covered).to_bytes(2, "little") + covered
    return b"\xff\xff\x00" + tail


# --- IDD Status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IddStatus:
    therapy_state: TherapyControlState
    operational_state: OperationalState
    reservoir_u: float
    reservoir_attached: bool


def decode_idd_status(
    data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None, number_format: NumberFormat = "sfloat"
) -> IddStatus:
    body = unframe(STATUS, data, e2e, checker)

    def parse(r: Reader) -> IddStatus:
        therapy = r.enum8(TherapyControlState, "therapy control state")
        operational = r.enum8(OperationalState, "operational state")
        reservoir = r.insulin("reservoir remaining amount")
        flags = r.u8("flags")
        if flags & ~0x01:
            raise FlagsError(STATUS, f"reserved flag bits 0x{flags & ~0x01:02X} set", r.data)
        r.end()
        return IddStatus(therapy, operational, reservoir, bool(flags & 0x01))

    return decode_with_number_format(STATUS, body, number_format, parse)


def encode_idd_status(
    status: IddStatus, *, e2e_counter: int | None = None, number_format: Literal["sfloat", "float"] = "sfloat"
) -> bytes:
    w = Writer(STATUS, number_format)
    w.enum8(TherapyControlState, status.therapy_state, "therapy control state")
    w.enum8(OperationalState, status.operational_state, "operational state")
    w.insulin(status.reservoir_u, "reservoir remaining amount")
    w.u8(0x01 if status.reservoir_attached else 0x00, "flags")
    return frame(w.bytes(), e2e_counter)


# --- IDD Status Changed -----------------------------------------------------------------------------


class StatusChangedFlag(IntFlag):
    THERAPY_CONTROL_STATE_CHANGED = 1 << 0
    OPERATIONAL_STATE_CHANGED = 1 << 1
    RESERVOIR_STATUS_CHANGED = 1 << 2
    ANNUNCIATION_STATUS_CHANGED = 1 << 3
    TOTAL_DAILY_INSULIN_STATUS_CHANGED = 1 << 4
    ACTIVE_BASAL_RATE_STATUS_CHANGED = 1 << 5
    ACTIVE_BOLUS_STATUS_CHANGED = 1 << 6
    HISTORY_EVENT_RECORDED = 1 << 7


STATUS_CHANGED_DEFINED = 0x00FF


@dataclass(frozen=True)
class IddStatusChanged:
    flags: StatusChangedFlag


def decode_idd_status_changed(
    data: bytes, *, e2e: bool = False, checker: E2ECounterChecker | None = None
) -> IddStatusChanged:
    """Reserved bits 8..15 are ignored (defensive: a later revision may define them; nothing here doses)."""
    r = Reader(STATUS_CHANGED, unframe(STATUS_CHANGED, data, e2e, checker))
    flags = r.u16("flags")
    r.end()
    return IddStatusChanged(StatusChangedFlag(flags & STATUS_CHANGED_DEFINED))


def encode_idd_status_changed(value: IddStatusChanged, *, e2e_counter: int | None = None) -> bytes:
    w = Writer(STATUS_CHANGED)
    w.u16(int(value.flags), "flags")
    return frame(w.bytes(), e2e_counter)


# --- IDD Annunciation Status ------------------------------------------------------------------------


class AnnunciationType(IntEnum):
    SYSTEM_ISSUE = 0x000F
    MECHANICAL_ISSUE = 0x0033
    OCCLUSION_DETECTED = 0x003C
    RESERVOIR_ISSUE = 0x0055
    RESERVOIR_EMPTY = 0x005A
    RESERVOIR_LOW = 0x0066
    PRIMING_ISSUE = 0x0069
    INFUSION_SET_INCOMPLETE = 0x0096
    INFUSION_SET_DETACHED = 0x0099
    POWER_SOURCE_INSUFFICIENT = 0x00A5
    BATTERY_EMPTY = 0x00AA
    BATTERY_LOW = 0x00C3
    BATTERY_MEDIUM = 0x00CC
    BATTERY_FULL = 0x00F0
    TEMPERATURE_OUT_OF_RANGE = 0x00FF
    AIR_PRESSURE_OUT_OF_RANGE = 0x0303
    BOLUS_CANCELED = 0x030C
    TBR_OVER = 0x0330
    TBR_CANCELED = 0x033F
    MAX_DELIVERY = 0x0356
    DATE_TIME_ISSUE = 0x0359
    TEMPERATURE = 0x0365


class AnnunciationState(IntEnum):
    """The Annunciation Status field (named *state* here to tell it from the characteristic)."""

    UNDETERMINED = 0x0F
    PENDING = 0x33
    SNOOZED = 0x3C
    CONFIRMED = 0x55


AuxInfo = tuple[int | None, int | None, int | None, int | None, int | None]
_NO_AUX: AuxInfo = (None, None, None, None, None)


@dataclass(frozen=True)
class Annunciation:
    instance_id: int
    annunciation_type: AnnunciationType
    state: AnnunciationState
    aux_info: AuxInfo = field(default=_NO_AUX)  # AuxInfo1..5, None where absent (manufacturer-defined u16)


@dataclass(frozen=True)
class IddAnnunciationStatus:
    annunciation: Annunciation | None  # None: no annunciation has occurred yet


def decode_idd_annunciation_status(
    data: bytes,
    *,
    e2e: bool = False,
    checker: E2ECounterChecker | None = None,
    status_octets: Literal[1, 2, "auto"] = "auto",
) -> IddAnnunciationStatus:
    """Decode IDD Annunciation Status.

    The Annunciation Status field is a uint8 in IDS v1.0.2, but ehealthinnovation's AndroidBLEParser
    (``IddAnnunciationParser.readAnnunciation``) reads it as a uint16, and devices built against it send
    two octets. ``status_octets="auto"`` decides by length: with the flags known, the two layouts
    differ by exactly one octet, so the value's length identifies the one that was sent.
    """
    body = unframe(ANNUNCIATION_STATUS, data, e2e, checker)
    if status_octets not in (1, 2, "auto"):
        raise ValueError(f"status_octets must be 1, 2 or 'auto', not {status_octets!r}")
    if not body:
        raise LengthError(ANNUNCIATION_STATUS, "empty value", data)
    flags = body[0]
    if flags & ~0x3F:
        raise FlagsError(ANNUNCIATION_STATUS, f"reserved flag bits 0x{flags & ~0x3F:02X} set", data)
    if not flags & 0x01:
        if flags & 0x3E:
            raise FlagsError(ANNUNCIATION_STATUS, "AuxInfo flagged without an annunciation", data)
        Reader(ANNUNCIATION_STATUS, body[1:]).end()
        return IddAnnunciationStatus(None)
    aux_count = bin(flags & 0x3E).count("1")
    if status_octets == "auto":
        size_one = 1 + 2 + 2 + 1 + 2 * aux_count
        size = 1 if len(body) == size_one else 2 if len(body) == size_one + 1 else 1
    else:
        size = status_octets
    r = Reader(ANNUNCIATION_STATUS, body)
    r.u8("flags")
    instance_id = r.u16("annunciation instance id")
    kind = r.enum16(AnnunciationType, "annunciation type")
    state = r.enum8(AnnunciationState, "annunciation status") if size == 1 else r.enum16(AnnunciationState, "annunciation status")
    aux = tuple(r.u16(f"AuxInfo{i}") if flags & (1 << i) else None for i in range(1, 6))
    r.end()
    return IddAnnunciationStatus(Annunciation(instance_id, kind, state, aux))  # type: ignore[arg-type]


def encode_idd_annunciation_status(
    value: IddAnnunciationStatus, *, e2e_counter: int | None = None, status_octets: Literal[1, 2] = 1
) -> bytes:
    """``status_octets=2`` emulates the AndroidBLEParser-style pumps (see the decoder)."""
    w = Writer(ANNUNCIATION_STATUS)
    a = value.annunciation
    if a is None:
        w.u8(0, "flags")
        return frame(w.bytes(), e2e_counter)
    if len(a.aux_info) != 5:
        raise EncodeError(f"{ANNUNCIATION_STATUS}: aux_info must have 5 entries (None where absent)")
    flags = 0x01 | sum(1 << (i + 1) for i, aux in enumerate(a.aux_info) if aux is not None)
    w.u8(flags, "flags")
    w.u16(a.instance_id, "annunciation instance id")
    w.enum16(AnnunciationType, a.annunciation_type, "annunciation type")
    if status_octets == 2:
        w.enum16(AnnunciationState, a.state, "annunciation status")
    else:
        w.enum8(AnnunciationState, a.state, "annunciation status")
    for i, aux in enumerate(a.aux_info, start=1):
        if aux is not None:
            w.u16(aux, f"AuxInfo{i}")
    return frame(w.bytes(), e2e_counter)
