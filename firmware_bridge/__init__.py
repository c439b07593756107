"""The BLE protocol layer: Bluetooth SIG CGMS / IDS codecs, the bleak backends, and device sessions."""
