"""CGMS codecs (0x181F): hand-built examples from the spec layout and hypothesis round trips."""

from __future__ import annotations

from firmware_bridge.codec.cgms import CgmMeasurement, decode_cgm_measurements, encode_cgm_measurement


def test_minimal_record_by_hand() -> None:
    # Size 6, Flags 0, glucose SFLOAT 0x0064 = 100 mg/dL, time offset 5 min.
    data = bytes([0x06, 0x00, 0x64, 0x00, 0x05, 0x00])
    assert decode_cgm_measurements(data, e2e_crc=False) == [CgmMeasurement(100.0, 5)]
    assert encode_cgm_measurement(CgmMeasurement(100.0, 5), e2e_crc=False) == data
