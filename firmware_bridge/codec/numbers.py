"""IEEE 11073-20601 numbers: 16-bit SFLOAT and 32-bit FLOAT.

SFLOAT: high nibble = signed exponent e (-8..7), low 12 bits = two's-complement mantissa m (-2048..2047),
value = m * 10**e. FLOAT: high octet = signed exponent (-128..127), low 24 bits = mantissa. Reserved mantissa
values encode specials (NaN, NRes, +INF, -INF, reserved). Examples: SFLOAT 0x0064 = 100, 0xF037 = 5.5.

Decoding returns a ``float`` (``math.nan`` / ``±math.inf`` for the specials) or, with ``strict=True``, raises
:class:`ReservedValueError` for any special, which is what clinical fields such as a glucose
concentration need: a NaN glucose is not a reading.
"""

from __future__ import annotations

import math
from decimal import Decimal

from ..errors import EncodeError, LengthError, ReservedValueError

# Specials (mantissa values) for SFLOAT, exponent 0.
SFLOAT_NAN = 0x07FF
SFLOAT_NRES = 0x0800
SFLOAT_POSITIVE_INFINITY = 0x07FE
SFLOAT_NEGATIVE_INFINITY = 0x0802
SFLOAT_RESERVED = 0x0801

FLOAT_NAN = 0x007FFFFF
FLOAT_NRES = 0x00800000
FLOAT_POSITIVE_INFINITY = 0x007FFFFE
FLOAT_NEGATIVE_INFINITY = 0x00800002
FLOAT_RESERVED = 0x00800001


def _special_value(raw_mantissa: int, nan: int, nres: int, pinf: int, ninf: int, reserved: int) -> float | None:
    if raw_mantissa in (nan, nres, reserved):
        return math.nan
    if raw_mantissa == pinf:
        return math.inf
    if raw_mantissa == ninf:
        return -math.inf
    return None


def decode_sfloat(raw: int, *, field: str = "SFLOAT", strict: bool = False) -> float:
    """Decode a 16-bit SFLOAT held in ``raw`` (an unsigned int 0..0xFFFF)."""
    if not 0 <= raw <= 0xFFFF:
        raise LengthError(field, f"SFLOAT raw value {raw} does not fit 16 bits")
    raw_mantissa = raw & 0x0FFF
    exponent = raw >> 12
    if exponent >= 8:
        exponent -= 16
    if 0x07FE <= raw_mantissa <= 0x0802:
        # Specials are defined with exponent 0; other exponents with these mantissas are reserved too.
        if strict:
            raise ReservedValueError(field, f"special SFLOAT 0x{raw:04X} where a number is required")
        special = _special_value(
            raw_mantissa, SFLOAT_NAN, SFLOAT_NRES, SFLOAT_POSITIVE_INFINITY, SFLOAT_NEGATIVE_INFINITY, SFLOAT_RESERVED
        )
        assert special is not None
        return special
    mantissa = raw_mantissa - 0x1000 if raw_mantissa >= 0x0800 else raw_mantissa
    return float(Decimal(mantissa).scaleb(exponent))


def decode_float(raw: int, *, field: str = "FLOAT", strict: bool = False) -> float:
    """Decode a 32-bit FLOAT held in ``raw`` (an unsigned int 0..0xFFFFFFFF)."""
    if not 0 <= raw <= 0xFFFFFFFF:
        raise LengthError(field, f"FLOAT raw value {raw} does not fit 32 bits")
    raw_mantissa = raw & 0x00FFFFFF
    exponent = raw >> 24
    if exponent >= 128:
        exponent -= 256
    if 0x007FFFFE <= raw_mantissa <= 0x00800002:
        if strict:
            raise ReservedValueError(field, f"special FLOAT 0x{raw:08X} where a number is required")
        special = _special_value(
            raw_mantissa, FLOAT_NAN, FLOAT_NRES, FLOAT_POSITIVE_INFINITY, FLOAT_NEGATIVE_INFINITY, FLOAT_RESERVED
        )
        assert special is not None
        return special
    mantissa = raw_mantissa - 0x01000000 if raw_mantissa >= 0x00800000 else raw_mantissa
    return float(Decimal(mantissa).scaleb(exponent))


def _encode(value: float, mantissa_bits: int, exponent_bits: int, field: str, specials: tuple[int, int, int]) -> int:
    nan, pinf, ninf = specials
    mantissa_mask = (1 << mantissa_bits) - 1
    if math.isnan(value):
        return nan
    if math.isinf(value):
        return pinf if value > 0 else ninf
    max_mantissa = (1 << (mantissa_bits - 1)) - 3  # keep clear of the specials at the top of the range
    min_mantissa = -max_mantissa
    min_exponent = -(1 << (exponent_bits - 1))
    max_exponent = (1 << (exponent_bits - 1)) - 1
    decimal_value = Decimal(repr(float(value))).normalize()
    if decimal_value == 0:
        return 0
    sign, digits, exponent = decimal_value.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)))
    # Too many significant digits: round to the precision the format can carry.
    while mantissa > max_mantissa:
        mantissa = int((Decimal(mantissa) / 10).quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))
        exponent += 1
    # Exponent below the format's range: give up digits (losing precision) rather than fail.
    while exponent < min_exponent and mantissa:
        mantissa = int((Decimal(mantissa) / 10).quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))
        exponent += 1
    if mantissa == 0:
        return 0
    # Prefer exponent 0 for whole numbers that fit (100 -> 0x0064, as devices send it); this also
    # brings an exponent above the format's range back into it when the mantissa has room.
    while exponent > 0 and mantissa * 10 <= max_mantissa:
        mantissa *= 10
        exponent -= 1
    if exponent > max_exponent:
        raise EncodeError(f"{field}: {value!r} is too large for this format")
    signed = -mantissa if sign else mantissa
    assert min_mantissa <= signed <= max_mantissa
    return ((exponent & ((1 << exponent_bits) - 1)) << mantissa_bits) | (signed & mantissa_mask)


def encode_sfloat(value: float, *, field: str = "SFLOAT") -> int:
    """Encode ``value`` as a 16-bit SFLOAT (rounded to 4 significant digits at most; NaN and ±inf allowed)."""
    return _encode(value, 12, 4, field, (SFLOAT_NAN, SFLOAT_POSITIVE_INFINITY, SFLOAT_NEGATIVE_INFINITY))


def encode_float(value: float, *, field: str = "FLOAT") -> int:
    """Encode ``value`` as a 32-bit FLOAT (7 significant digits at most; NaN and ±inf allowed)."""
    return _encode(value, 24, 8, field, (FLOAT_NAN, FLOAT_POSITIVE_INFINITY, FLOAT_NEGATIVE_INFINITY))


def sfloat_bytes(value: float, *, field: str = "SFLOAT") -> bytes:
    return encode_sfloat(value, field=field).to_bytes(2, "little")


def float_bytes(value: float, *, field: str = "FLOAT") -> bytes:
    return encode_float(value, field=field).to_bytes(4, "little")
