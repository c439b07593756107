"""The world on the far side of the radio: virtual patients and emulated BLE CGM and pump devices.

Nothing in edge/, models/ or cloud_sync/ imports this package.
"""
