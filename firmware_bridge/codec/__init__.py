"""Pure codecs for the Bluetooth SIG CGM Service (0x181F) and Insulin Delivery Service (0x183A).

No I/O here: bytes in, typed dataclasses out, and back. Decoders raise
:class:`firmware_bridge.errors.DecodeError` subclasses and nothing else.
"""
