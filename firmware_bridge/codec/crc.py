"""E2E-CRC used by CGMS and IDS: CRC-16/MCRF4XX.

Polynomial 0x1021 reflected (0x8408), initial value 0xFFFF, reflected in and out, no final XOR.
Check value: ``crc16_mcrf4xx(b"123456789") == 0x6F91``. On the wire the CRC follows the octets it covers,
as a little-endian uint16.
"""

from __future__ import annotations

from ..errors import CrcError, LengthError


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_mcrf4xx(data: bytes, initial: int = 0xFFFF) -> int:
    """Return the CRC-16/MCRF4XX of ``data``."""
    crc = initial
    for octet in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ octet) & 0xFF]
    return crc


def append_crc(data: bytes) -> bytes:
    """Return ``data`` followed by its CRC (little-endian)."""
    return bytes(data) + crc16_mcrf4xx(data).to_bytes(2, "little")


def check_and_strip_crc(characteristic: str, data: bytes) -> bytes:
    """Verify the trailing CRC of ``data`` and return the octets it covers.

    Raises :class:`CrcError` when it does not match, :class:`LengthError` when there is no room for it.
    """
    if len(data) < 2:
        raise LengthError(characteristic, "too short to carry an E2E-CRC", data)
    body, received = data[:-2], int.from_bytes(data[-2:], "little")
    expected = crc16_mcrf4xx(body)
    if received != expected:
        raise CrcError(characteristic, f"E2E-CRC 0x{received:04X} does not match 0x{expected:04X}", data)
    return bytes(body)
