"""Shared pieces of the Insulin Delivery Service (IDS, 0x183A) codecs.

* Hamming-distance enumerations used by several IDS characteristics (therapy / operational state,
  bolus and TBR types, response codes...). IDS assigns enumeration values from a fixed list of codes
  with a Hamming distance of at least 4 between them (0x0F, 0x33, 0x3C, 0x55, 0x5A, 0x66, 0x69, 0x96,
  0x99, 0xA5, 0xAA, 0xC3, 0xCC, 0xF0, 0xFF, then 16-bit 0x0303, 0x030C, ...), so a single corrupted bit
  never turns one valid code into another. Decoding an unknown code raises :class:`ReservedValueError`.
* :class:`Reader` / :class:`Writer`: bounds-checked little-endian field access. A short value becomes a
  :class:`LengthError` naming the characteristic and field, never an ``IndexError``.
* Insulin numbers. The specification carries insulin amounts and rates as SFLOAT (16 bit); at least one
  commercial pump sends 32-bit FLOAT in the same places (reservoir, IOB, basal, bolus amounts; see
  /work/shared/reference/ble.md, "Known disagreements"). Decoders take ``number_format``:
  ``"sfloat"`` (specification, default), ``"float"`` or ``"auto"`` (judged by the value's length: the
  SFLOAT layout is tried first and must consume the value exactly, then the FLOAT layout).
  Insulin numbers are decoded STRICTLY: NaN, infinities, reserved values and negative amounts are
  :class:`ImplausibleValueError`, never a number a dose calculation could use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeVar

from ..errors import DecodeError, EncodeError, FlagsError, LengthError, ReservedValueError
from ._wire import Reader as _WireReader
from .numbers import decode_float, decode_sfloat, encode_float, encode_sfloat

__all__ = [
    "NumberFormat",
    "ImplausibleValueError",
    "TherapyControlState",
    "OperationalState",
    "BolusType",
    "BolusActivationType",
    "BolusValueSelection",
    "BolusEndReason",
    "TbrType",
    "TbrDeliveryContext",
    "BasalDeliveryContext",
    "TbrEndReason",
    "ResponseCode",
    "Reader",
    "Writer",
    "decode_enum",
    "decode_with_number_format",
    "peek_u16",
    "bolus_problem",
    "is_hamming_code",
    "HAMMING_CODES",
    "IdsDialect",
]

NumberFormat = Literal["sfloat", "float", "auto"]
_NUMBER_FORMATS = ("sfloat", "float", "auto")

E = TypeVar("E", bound=IntEnum)
T = TypeVar("T")


class ImplausibleValueError(ReservedValueError):
    """A safety-relevant field holds a value that is not a usable quantity (NaN, infinite, negative,
    or contradicting another field, e.g. a fast bolus with an extended amount)."""


# --- Hamming-coded enumerations (values from IDS v1.0; names as in the specification) ---------------


class TherapyControlState(IntEnum):
    UNDETERMINED = 0x0F
    STOP = 0x33
    PAUSE = 0x3C
    RUN = 0x55


class OperationalState(IntEnum):
    UNDETERMINED = 0x0F
    OFF = 0x33
    STANDBY = 0x3C
    PREPARING = 0x55
    PRIMING = 0x5A
    WAITING = 0x66
    READY = 0x96


class BolusType(IntEnum):
    UNDETERMINED = 0x0F
    FAST = 0x33
    EXTENDED = 0x3C
    MULTIWAVE = 0x55


class BolusActivationType(IntEnum):
    UNDETERMINED = 0x0F
    MANUAL = 0x33
    RECOMMENDED = 0x3C
    MANUALLY_CHANGED_RECOMMENDED = 0x55
    COMMANDED = 0x5A


class BolusValueSelection(IntEnum):
    PROGRAMMED = 0x0F
    REMAINING = 0x33
    DELIVERED = 0x3C


class BolusEndReason(IntEnum):
    UNDETERMINED = 0x0F
    PROGRAMMED_DURATION_OVER = 0x33
    CANCELED = 0x3C
    ERROR_ABORT = 0x55


class TbrType(IntEnum):
    UNDETERMINED = 0x0F
    ABSOLUTE = 0x33  # adjustment value is a rate in IU/h
    RELATIVE = 0x3C  # adjustment value is a dimensionless factor of the programmed basal (1.5 = 150 %)


class TbrDeliveryContext(IntEnum):
    UNDETERMINED = 0x0F
    DEVICE_BASED = 0x33
    REMOTE_CONTROL = 0x3C
    AP_CONTROLLER = 0x55


# The basal delivery context uses the same codes and meanings as the TBR delivery context.
BasalDeliveryContext = TbrDeliveryContext


class TbrEndReason(IntEnum):
    UNDETERMINED = 0x0F
    PROGRAMMED_DURATION_OVER = 0x33
    CANCELED = 0x3C
    ERROR_ABORT = 0x55


class ResponseCode(IntEnum):
    """Result of a Status Reader CP or Command CP procedure (0x75 and 0x76 are Command CP only)."""

    SUCCESS = 0x0F
    OP_CODE_NOT_SUPPORTED = 0x70
    INVALID_OPERAND = 0x71
    PROCEDURE_NOT_COMPLETED = 0x72
    PARAMETER_OUT_OF_RANGE = 0x73
    PROCEDURE_NOT_APPLICABLE = 0x74
    PLAUSIBILITY_CHECK_FAILED = 0x75
    MAXIMUM_BOLUS_NUMBER_REACHED = 0x76


# The IDS codes are the codewords of the binary lexicode of length 16 and minimum distance 4 (the
# [16, 11, 4] extended Hamming code): 0x000F, 0x0033, 0x003C, ..., 0x00FF, 0x0303, 0x030C, ... The 8-bit
# codes are its codewords below 0x100. Spanned by these 11 generators (found greedily, in order):
_HAMMING_GENERATORS = (0x000F, 0x0033, 0x0055, 0x0096, 0x0303, 0x0505, 0x0906, 0x1111, 0x2112, 0x4114, 0x8117)


def _span(generators: tuple[int, ...]) -> frozenset[int]:
    words = {0}
    for generator in generators:
        words |= {word ^ generator for word in words}
    return frozenset(words)


HAMMING_CODES: frozenset[int] = _span(_HAMMING_GENERATORS) - {0}


def is_hamming_code(value: int) -> bool:
    """True for a value IDS may assign to an enumeration or op code (0 excluded).

    A pump answers a valid-looking but unsupported op code with "op code not supported", and drops a
    value that is not a codeword at all (a corrupted write) without any response
    (/work/shared/reference/ble.md). Note: the Status Reader / Command CP response codes 0x70..0x76 are
    plain numbers in the specification, not codewords.
    """
    return value in HAMMING_CODES


def decode_enum(enum_cls: type[E], raw: int, characteristic: str, field: str, data: bytes | None = None) -> E:
    """Map ``raw`` to ``enum_cls`` or raise :class:`ReservedValueError` (unknown Hamming code)."""
    try:
        return enum_cls(raw)
    except ValueError:
        raise ReservedValueError(characteristic, f"{field}: unknown code 0x{raw:02X}", data) from None


def _check_number_format(number_format: str) -> None:
    if number_format not in _NUMBER_FORMATS:
        raise ValueError(f"number_format must be one of {_NUMBER_FORMATS}, not {number_format!r}")


# --- bounds-checked reading and writing -----------------------------------------------------------


class Reader(_WireReader):
    """Sequential little-endian reader over one IDS value (after E2E stripping), in the pump's number format."""

    def __init__(self, characteristic: str, data: bytes, number_format: str = "sfloat") -> None:
        if number_format not in ("sfloat", "float"):
            raise ValueError(f"Reader needs a concrete number format, not {number_format!r}")
        super().__init__(characteristic, data)
        self.number_format = number_format

    def enum8(self, enum_cls: type[E], field: str) -> E:
        return decode_enum(enum_cls, self.u8(field), self.characteristic, field, self.data)

    def enum16(self, enum_cls: type[E], field: str) -> E:
        return decode_enum(enum_cls, self.u16(field), self.characteristic, field, self.data)

    def insulin(self, field: str) -> float:
        """An insulin amount, rate or factor in the reader's number format; strict and non-negative."""
        if self.number_format == "float":
            value = decode_float(self.u32(field), field=field, strict=False)
        else:
            value = decode_sfloat(self.u16(field), field=field, strict=False)
        return self._plausible(value, field)

    def float32(self, field: str) -> float:
        """A field the specification defines as 32-bit FLOAT (e.g. delivered-insulin totals)."""
        return self._plausible(decode_float(self.u32(field), field=field, strict=False), field)

    def _plausible(self, value: float, field: str) -> float:
        if not math.isfinite(value):
            raise ImplausibleValueError(self.characteristic, f"{field}: special value {value} is not a quantity", self.data)
        if value < 0:
            raise ImplausibleValueError(self.characteristic, f"{field}: negative value {value}", self.data)
        return value

class Writer:
    """Little-endian writer; every out-of-range value is an :class:`EncodeError`."""

    def __init__(self, characteristic: str, number_format: str = "sfloat") -> None:
        if number_format not in ("sfloat", "float"):
            raise ValueError(f"Writer needs a concrete number format, not {number_format!r}")
        self.characteristic = characteristic
        self.number_format = number_format
        self.buffer = bytearray()

    def _int(self, value: int, size: int, field: str, signed: bool = False) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EncodeError(f"{self.characteristic}: {field} must be an int, not {value!r}")
        try:
            self.buffer += value.to_bytes(size, "little", signed=signed)
        except OverflowError:
            raise EncodeError(f"{self.characteristic}: {field}={value} does not fit {size * 8} bits") from None

    def u8(self, value: int, field: str) -> None:
        self._int(value, 1, field)

    def s8(self, value: int, field: str) -> None:
        self._int(value, 1, field, signed=True)

    def u16(self, value: int, field: str) -> None:
        self._int(value, 2, field)

    def u32(self, value: int, field: str) -> None:
        self._int(value, 4, field)

    def _member(self, enum_cls: type[E], value: int, field: str) -> int:
        try:
            return int(enum_cls(value))
        except ValueError:
            raise EncodeError(f"{self.characteristic}: {field}: {value!r} is not a {enum_cls.__name__}") from None

    def enum8(self, enum_cls: type[E], value: int, field: str) -> None:
        self.u8(self._member(enum_cls, value, field), field)

    def enum16(self, enum_cls: type[E], value: int, field: str) -> None:
        self.u16(self._member(enum_cls, value, field), field)

    def insulin(self, value: float, field: str) -> None:
        """Write an insulin quantity EXACTLY: a value the format would round is refused, never altered."""
        if self.number_format == "float":
            raw = self._exact(value, field, encode_float, decode_float)
            self.u32(raw, field)
        else:
            raw = self._exact(value, field, encode_sfloat, decode_sfloat)
            self.u16(raw, field)

    def float32(self, value: float, field: str) -> None:
        self.u32(self._exact(value, field, encode_float, decode_float), field)

    def _exact(
        self, value: float, field: str, encode: Callable[..., int], decode: Callable[..., float]
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EncodeError(f"{self.characteristic}: {field} must be a number, not {value!r}")
        if not math.isfinite(value) or value < 0:
            raise EncodeError(f"{self.characteristic}: {field}={value!r} is not a non-negative finite quantity")
        raw = encode(float(value), field=field)
        back = decode(raw, field=field)
        if not math.isclose(back, value, rel_tol=1e-9, abs_tol=1e-12):
            raise EncodeError(
                f"{self.characteristic}: {field}={value!r} cannot be carried exactly "
                f"(would become {back!r}); round it explicitly first"
            )
        return raw

    def raw(self, data: bytes) -> None:
        self.buffer += data

    def bytes(self) -> bytes:
        return bytes(self.buffer)


# Bolus flags shared by Set Bolus, Active Bolus Delivery and Bolus Programmed history events.
BOLUS_DELAY_PRESENT = 0x01
BOLUS_TEMPLATE_PRESENT = 0x02
BOLUS_ACTIVATION_PRESENT = 0x04
BOLUS_REASON_CORRECTION = 0x08
BOLUS_REASON_MEAL = 0x10


def bolus_problem(bolus_type: BolusType, fast_u: float, extended_u: float, duration_min: int, *, programmed: bool) -> str | None:
    """Safety rule for a bolus on the wire: its amounts must agree with its type; ``None`` when they do.

    Always: a fast bolus has no extended amount, an extended bolus no fast amount, the type is known.
    For a bolus being programmed (Set Bolus, Bolus Programmed) also: a fast bolus has no duration, an
    extended or multiwave bolus has one, and the total is positive. A contradiction is refused, never
    guessed at.
    """
    if bolus_type == BolusType.UNDETERMINED:
        return "undetermined bolus type"
    if bolus_type == BolusType.FAST and extended_u != 0:
        return "fast bolus with an extended amount"
    if bolus_type == BolusType.EXTENDED and fast_u != 0:
        return "extended bolus with a fast amount"
    if programmed:
        if bolus_type == BolusType.FAST and duration_min != 0:
            return "fast bolus with a duration"
        if bolus_type in (BolusType.EXTENDED, BolusType.MULTIWAVE) and duration_min == 0:
            return f"{bolus_type.name.lower()} bolus without a duration"
        if fast_u + extended_u <= 0:
            return "bolus of 0 IU"
    return None


def check_bolus_decoded(r: Reader, bolus_type: BolusType, fast_u: float, extended_u: float, duration_min: int, *, programmed: bool) -> None:
    problem = bolus_problem(bolus_type, fast_u, extended_u, duration_min, programmed=programmed)
    if problem:
        raise ImplausibleValueError(r.characteristic, problem, r.data)


def check_bolus_encoded(characteristic: str, bolus_type: BolusType, fast_u: float, extended_u: float, duration_min: int, *, programmed: bool) -> None:
    if bolus_type not in list(BolusType):
        raise EncodeError(f"{characteristic}: {bolus_type!r} is not a BolusType")
    problem = bolus_problem(BolusType(bolus_type), fast_u, extended_u, duration_min, programmed=programmed)
    if problem:
        raise EncodeError(f"{characteristic}: {problem}")


def write_bolus_flags(w: Writer, delay_min: int | None, template: int | None, activation: object, correction: bool, meal: bool) -> None:
    flags = (
        (BOLUS_DELAY_PRESENT if delay_min is not None else 0)
        | (BOLUS_TEMPLATE_PRESENT if template is not None else 0)
        | (BOLUS_ACTIVATION_PRESENT if activation is not None else 0)
        | (BOLUS_REASON_CORRECTION if correction else 0)
        | (BOLUS_REASON_MEAL if meal else 0)
    )
    w.u8(flags, "flags")


def write_bolus_options(w: Writer, delay_min: int | None, template: int | None, activation: BolusActivationType | None) -> None:
    if delay_min is not None:
        w.u16(delay_min, "bolus delay time")
    if template is not None:
        w.u8(template, "bolus template number")
    if activation is not None:
        w.enum8(BolusActivationType, activation, "bolus activation type")


def read_bolus_options(r: Reader, flags: int) -> tuple[int | None, int | None, BolusActivationType | None]:
    if flags & ~0x1F:
        raise FlagsError(r.characteristic, f"reserved bolus flag bits 0x{flags & ~0x1F:02X} set", r.data)
    delay = r.u16("bolus delay time") if flags & BOLUS_DELAY_PRESENT else None
    template = r.u8("bolus template number") if flags & BOLUS_TEMPLATE_PRESENT else None
    activation = r.enum8(BolusActivationType, "bolus activation type") if flags & BOLUS_ACTIVATION_PRESENT else None
    return delay, template, activation


def decode_with_number_format(
    characteristic: str, data: bytes, number_format: str, parse: Callable[[Reader], T]
) -> T:
    """Run ``parse`` over ``data`` with the requested number format; ``"auto"`` tries SFLOAT, then FLOAT.

    ``parse`` must call :meth:`Reader.end`, so that only a layout consuming the value exactly is accepted:
    the length decides between the specification's SFLOAT and a pump's 32-bit FLOAT.
    """
    _check_number_format(number_format)
    if number_format != "auto":
        return parse(Reader(characteristic, data, number_format))
    try:
        return parse(Reader(characteristic, data, "sfloat"))
    except DecodeError as sfloat_error:
        # Any failure of the SFLOAT layout (usually a length mismatch) lets the FLOAT layout try; if that
        # fails too, the SFLOAT error is reported, since SFLOAT is what the specification defines.
        try:
            return parse(Reader(characteristic, data, "float"))
        except DecodeError:
            raise sfloat_error from None


def peek_u16(characteristic: str, data: bytes) -> int:
    """The first two octets as a little-endian uint16 (a control point's op code)."""
    if len(data) < 2:
        raise LengthError(characteristic, "too short to hold a 16-bit op code", data)
    return int.from_bytes(data[:2], "little")


@dataclass(frozen=True)
class IdsDialect:
    """How one pump puts IDS on the wire where public implementations disagree (see ble.md).

    The default is the specification. An emulated pump passes these to the encoders to imitate a real
    one; a hub may decode with the ``"auto"`` options instead, or with a dialect it has identified.
    """

    e2e: bool = False  # IDD Features bit 0; every value then carries E2E-Counter + E2E-CRC
    number_format: Literal["sfloat", "float"] = "sfloat"  # "float": 32-bit FLOAT for insulin amounts
    annunciation_status_octets: Literal[1, 2] = 1  # 2: AndroidBLEParser-style uint16 status field
    racp_response_operator: bool = True  # False: RACP responses without the null operator (BLEIDSSim)
    history_counter: bool = False  # True: History Data carries an E2E-Counter (BLEIDSSim, a commercial pump)
