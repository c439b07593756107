"""SFLOAT / FLOAT and the E2E-CRC against published examples and as round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.codec.crc import append_crc, check_and_strip_crc, crc16_mcrf4xx
from firmware_bridge.codec.numbers import (
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)
from firmware_bridge.errors import CrcError, DecodeError, EncodeError, ReservedValueError


@pytest.mark.parametrize(
    ("raw", "value"),
    [(0x0064, 100.0), (0xF037, 5.5), (0x0118, 280.0), (0x0000, 0.0), (0x0FFF, -1.0), (0xE7D0, 20.00)],
)
def test_sfloat_published_examples(raw: int, value: float) -> None:
    assert decode_sfloat(raw) == value


def test_sfloat_specials() -> None:
    assert math.isnan(decode_sfloat(0x07FF))
    assert math.isnan(decode_sfloat(0x0800))
    assert decode_sfloat(0x07FE) == math.inf
    assert decode_sfloat(0x0802) == -math.inf
    with pytest.raises(ReservedValueError):
        decode_sfloat(0x07FF, strict=True)
    assert encode_sfloat(math.nan) == 0x07FF


def test_sfloat_encodes_whole_numbers_with_exponent_zero() -> None:
    assert encode_sfloat(100) == 0x0064
    assert encode_sfloat(5.5) == 0xF037


def test_sfloat_too_large_is_an_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_sfloat(1e12)


@given(st.integers(min_value=-2045, max_value=2045), st.integers(min_value=-8, max_value=7))
def test_sfloat_round_trip_exact(mantissa: int, exponent: int) -> None:
    value = float(f"{mantissa}e{exponent}")
    assert decode_sfloat(encode_sfloat(value)) == pytest.approx(value, rel=1e-12, abs=0)


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_sfloat_decode_encode_decode_is_stable(raw: int) -> None:
    value = decode_sfloat(raw)
    if math.isnan(value):
        return
    assert decode_sfloat(encode_sfloat(value)) == value


@given(st.integers(min_value=-(2**23) + 3, max_value=2**23 - 3), st.integers(min_value=-20, max_value=20))
def test_float_round_trip_exact(mantissa: int, exponent: int) -> None:
    value = float(f"{mantissa}e{exponent}")
    assert decode_float(encode_float(value)) == pytest.approx(value, rel=1e-12, abs=0)


def test_crc_check_value() -> None:
    assert crc16_mcrf4xx(b"123456789") == 0x6F91


@given(st.binary(max_size=64))
def test_crc_round_trip_and_single_bit_errors_are_caught(data: bytes) -> None:
    framed = append_crc(data)
    assert check_and_strip_crc("test", framed) == data
    for bit in range(len(framed) * 8):
        corrupted = bytearray(framed)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CrcError):
            check_and_strip_crc("test", bytes(corrupted))


def test_crc_too_short_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        check_and_strip_crc("test", b"\x01")
