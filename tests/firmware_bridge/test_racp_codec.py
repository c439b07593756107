"""RACP (0x2A52) as CGMS uses it: hand-built requests/responses and hypothesis round trips."""

from __future__ import annotations

from firmware_bridge.codec.racp import RacpRequest, decode_racp, encode_racp


def test_records_at_or_after_by_hand() -> None:
    # Report stored records (1), operator >= (3), filter type time offset (1), operand 100 min.
    data = bytes([0x01, 0x03, 0x01, 0x64, 0x00])
    assert decode_racp(data) == RacpRequest.report_at_or_after(100)
    assert encode_racp(RacpRequest.report_at_or_after(100)) == data
