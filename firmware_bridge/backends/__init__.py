"""bleak backends over Google's bumble host: the hub keeps the plain bleak API on an emulated or USB radio.

Select them through :class:`firmware_bridge.radio.Radio` (``radio.scanner_kwargs()`` / ``radio.client_kwargs()``),
never by importing them in hub code.
"""

from firmware_bridge.backends.bumble_client import BumbleClientBackend
from firmware_bridge.backends.bumble_scanner import BumbleScannerBackend, advertisement_data_from_bytes

__all__ = ["BumbleClientBackend", "BumbleScannerBackend", "advertisement_data_from_bytes"]
