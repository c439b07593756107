"""Typed errors of the BLE protocol layer.

Every decoder raises a subclass of :class:`DecodeError` for malformed input, naming the characteristic
and what was wrong, so that a corrupted packet is logged and dropped instead of becoming an IndexError or,
worse, a silently wrong glucose value.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error raised by firmware_bridge."""


class DecodeError(BridgeError, ValueError):
    """A value received over the air cannot be decoded."""

    def __init__(self, characteristic: str, reason: str, data: bytes | None = None) -> None:
        self.characteristic = characteristic
        self.reason = reason
        self.data = bytes(data) if data is not None else None
        shown = f" (data={self.data.hex()})" if self.data is not None else ""
        super().__init__(f"{characteristic}: {reason}{shown}")


class LengthError(DecodeError):
    """The value is shorter or longer than its flags and size field say."""


class FlagsError(DecodeError):
    """Reserved flag bits are set, or flags contradict each other."""


class CrcError(DecodeError):
    """The E2E-CRC does not match the octets it covers."""


class ReservedValueError(DecodeError):
    """A field holds a value the specification reserves (or an unknown enumeration code)."""


class EncodeError(BridgeError, ValueError):
    """A value cannot be represented on the wire (out of range, not finite, too many octets)."""
