"""Insulin Delivery Service (IDS, 0x183A) codecs: one import for the whole public API.

Pure functions, bytes in and typed dataclasses out, and back; no I/O. Split by characteristic:

* :mod:`.ids_e2e` - E2E-Counter / E2E-CRC framing; :class:`E2ECounter` (sender), :class:`E2ECounterChecker`
  (receiver, rejects repeated / out-of-sequence counters with :class:`E2ECounterError`), :class:`E2ECounterBank`.
* :mod:`.ids_common` - Hamming-coded enumerations shared by several characteristics, number formats.
* :mod:`.ids_status` - IDD Features, IDD Status, IDD Status Changed, IDD Annunciation Status.
* :mod:`.ids_status_reader` - IDD Status Reader Control Point requests and responses.
* :mod:`.ids_commands` - IDD Command Control Point requests and responses.
* :mod:`.ids_history` - IDD Record Access Control Point and IDD History Data.

Conventions shared by every codec:

* ``encode_*(message, *, e2e_counter=None)``: with a counter (1..255) the E2E trailer is appended.
* ``decode_*(data, *, e2e=False, checker=None)``: with ``e2e`` the CRC is verified, then the counter
  (by ``checker`` when given). Decoders raise only :class:`firmware_bridge.errors.DecodeError`
  subclasses; encoders raise :class:`firmware_bridge.errors.EncodeError` for values the wire cannot carry.
* ``number_format="sfloat" | "float" | "auto"`` on decoders of values with insulin numbers: "auto"
  accepts a pump that sends 32-bit FLOAT where the specification has SFLOAT, judged by length.
  Insulin quantities are strict: NaN, infinities and negatives are :class:`ImplausibleValueError`, and
  encoders refuse values the format would round.
"""

from __future__ import annotations

from . import ids_commands, ids_common, ids_e2e, ids_history, ids_status, ids_status_reader
from .ids_commands import *  # noqa: F401,F403
from .ids_common import *  # noqa: F401,F403
from .ids_e2e import *  # noqa: F401,F403
from .ids_history import *  # noqa: F401,F403
from .ids_status import *  # noqa: F401,F403
from .ids_status_reader import *  # noqa: F401,F403

__all__ = [
    *ids_e2e.__all__,
    *ids_common.__all__,
    *ids_status.__all__,
    *ids_status_reader.__all__,
    *ids_commands.__all__,
    *ids_history.__all__,
]
