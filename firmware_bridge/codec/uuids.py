"""Bluetooth SIG 16-bit UUIDs of the services and characteristics the hub uses, as 128-bit strings."""

from __future__ import annotations


def sig_uuid(short: int) -> str:
    """Expand a 16-bit SIG-assigned number to the 128-bit UUID string bleak uses."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


# Continuous Glucose Monitoring Service
CGM_SERVICE = sig_uuid(0x181F)
CGM_MEASUREMENT = sig_uuid(0x2AA7)
CGM_FEATURE = sig_uuid(0x2AA8)
CGM_STATUS = sig_uuid(0x2AA9)
CGM_SESSION_START_TIME = sig_uuid(0x2AAA)
CGM_SESSION_RUN_TIME = sig_uuid(0x2AAB)
RECORD_ACCESS_CONTROL_POINT = sig_uuid(0x2A52)
CGM_SPECIFIC_OPS_CONTROL_POINT = sig_uuid(0x2AAC)

# Insulin Delivery Service
IDS_SERVICE = sig_uuid(0x183A)
IDD_STATUS_CHANGED = sig_uuid(0x2B20)
IDD_STATUS = sig_uuid(0x2B21)
IDD_ANNUNCIATION_STATUS = sig_uuid(0x2B22)
IDD_FEATURES = sig_uuid(0x2B23)
IDD_STATUS_READER_CONTROL_POINT = sig_uuid(0x2B24)
IDD_COMMAND_CONTROL_POINT = sig_uuid(0x2B25)
IDD_COMMAND_DATA = sig_uuid(0x2B26)
IDD_RECORD_ACCESS_CONTROL_POINT = sig_uuid(0x2B27)
IDD_HISTORY_DATA = sig_uuid(0x2B28)

# Generic
DEVICE_INFORMATION_SERVICE = sig_uuid(0x180A)
BATTERY_SERVICE = sig_uuid(0x180F)
BATTERY_LEVEL = sig_uuid(0x2A19)
