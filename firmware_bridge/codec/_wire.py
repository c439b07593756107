"""Bounds-checked little-endian reading and writing shared by the CGMS, RACP and IDS codecs (private).

Every read goes through :class:`Reader`, so a short value becomes a :class:`LengthError` naming the
characteristic and the field, never an ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import math

from ..errors import EncodeError, LengthError, ReservedValueError
from .numbers import decode_sfloat, encode_sfloat


class Reader:
    """Sequential reader over one characteristic value."""

    def __init__(self, characteristic: str, data: bytes) -> None:
        self.characteristic = characteristic
        self.data = bytes(data)
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, count: int, field: str) -> bytes:
        if self.remaining < count:
            raise LengthError(
                self.characteristic,
                f"{field} needs {count} octet(s) at offset {self.offset}, only {self.remaining} left",
                self.data,
            )
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def s8(self, field: str) -> int:
        value = self.u8(field)
        return value - 0x100 if value >= 0x80 else value

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "little")

    def u24(self, field: str) -> int:
        return int.from_bytes(self.take(3, field), "little")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "little")

    def sfloat(self, field: str) -> float:
        """A finite SFLOAT; specials (NaN, NRes, ±INF, reserved) raise :class:`ReservedValueError`."""
        raw = self.u16(field)
        try:
            return decode_sfloat(raw, field=field, strict=True)
        except ReservedValueError as error:
            raise ReservedValueError(self.characteristic, error.reason, self.data) from None

    def sfloat_raw(self, field: str) -> int:
        return self.u16(field)

    def end(self) -> None:
        """Assert that every octet was consumed."""
        if self.remaining:
            raise LengthError(
                self.characteristic,
                f"{self.remaining} unexpected trailing octet(s) after offset {self.offset}",
                self.data,
            )


def uint_bytes(value: int, size: int, field: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"{field}: {value!r} is not an integer")
    if not 0 <= value < (1 << (8 * size)):
        raise EncodeError(f"{field}: {value} does not fit an unsigned {8 * size}-bit field")
    return value.to_bytes(size, "little")


def sint8_byte(value: int, field: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 127:
        raise EncodeError(f"{field}: {value!r} does not fit a signed 8-bit field")
    return (value & 0xFF).to_bytes(1, "little")


def finite_sfloat_bytes(value: float, field: str) -> bytes:
    """Encode a finite number as SFLOAT (rounded to 4 significant digits); NaN/inf raise EncodeError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EncodeError(f"{field}: {value!r} is not a finite number")
    return encode_sfloat(float(value), field=field).to_bytes(2, "little")
