"""IDS end-to-end (E2E) protection: the E2E-Counter and E2E-CRC framing of every IDS value.

When the pump's IDD Features have bit 0 (E2E-Protection Supported) set, every IDS characteristic value
(except IDD Features itself, which has its own layout, and History Data, see below) ends with::

    ... fields ... | E2E-Counter (uint8) | E2E-CRC (uint16, little-endian, CRC-16/MCRF4XX over all
                                                     octets before it, counter included)

The counter is kept per connection and per characteristic and per direction: the sender starts at 1,
increments by one per value and wraps from 255 back to 1; 0 is never used (IDS v1.0.2, 3.x "E2E-Counter";
/work/shared/reference/ble.md). :class:`E2ECounter` is the sender's side, :class:`E2ECounterChecker` the
receiver's side: it rejects a repeated counter (replay) and a counter that skips ahead (a lost or
injected value) with :class:`E2ECounterError`.

History Data carries an E2E-CRC but no counter in the specification (IDS v1.0.2, 3.10.4.5); see
:mod:`firmware_bridge.codec.ids_history` for the variant with a counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DecodeError, EncodeError, LengthError
from .crc import append_crc, check_and_strip_crc

__all__ = [
    "E2E_COUNTER_FIRST",
    "E2E_COUNTER_LAST",
    "E2ECounterError",
    "next_e2e_counter",
    "E2ECounter",
    "E2ECounterChecker",
    "E2ECounterBank",
    "e2e_wrap",
    "e2e_unwrap",
    "frame",
    "unframe",
]

E2E_COUNTER_FIRST = 1
E2E_COUNTER_LAST = 255


class E2ECounterError(DecodeError):
    """An E2E-Counter is invalid (0 or out of range), repeated, or out of sequence."""


def next_e2e_counter(counter: int) -> int:
    """The counter following ``counter``: 1, 2, ..., 255, 1, ... (0 is never used)."""
    if not E2E_COUNTER_FIRST <= counter <= E2E_COUNTER_LAST:
        raise ValueError(f"E2E-Counter {counter} is outside 1..255")
    return E2E_COUNTER_FIRST if counter == E2E_COUNTER_LAST else counter + 1


@dataclass
class E2ECounter:
    """Sender's counter for one characteristic on one connection: ``next()`` gives 1, 2, ..., 255, 1, ..."""

    last: int | None = None

    def next(self) -> int:
        self.last = E2E_COUNTER_FIRST if self.last is None else next_e2e_counter(self.last)
        return self.last

    def reset(self) -> None:
        """Call at each new connection."""
        self.last = None


@dataclass
class E2ECounterChecker:
    """Receiver's check of one characteristic's counters on one connection.

    ``first_expected``: the counter the first value must carry after :meth:`reset` (the specification
    starts at 1). ``None`` accepts any valid first counter, for a hub that subscribes after the pump
    has already sent values on this connection.

    After a rejected *repeat* nothing changes (the replayed value is dropped). After a counter that
    skips ahead, the error is raised and the checker re-synchronises on the received counter, so one
    lost value does not lock the session out; the caller decides what the gap means.
    """

    characteristic: str = "IDS"
    first_expected: int | None = E2E_COUNTER_FIRST
    last: int | None = None

    def expected(self) -> int | None:
        """The counter the next value must carry (``None``: any valid counter)."""
        if self.last is None:
            return self.first_expected
        return next_e2e_counter(self.last)

    def check(self, counter: int) -> None:
        if not E2E_COUNTER_FIRST <= counter <= E2E_COUNTER_LAST:
            raise E2ECounterError(self.characteristic, f"E2E-Counter {counter} is not used (valid: 1..255)")
        expected = self.expected()
        if self.last is not None and counter == self.last:
            raise E2ECounterError(self.characteristic, f"E2E-Counter {counter} repeated (expected {expected})")
        if expected is not None and counter != expected:
            self.last = counter
            raise E2ECounterError(self.characteristic, f"E2E-Counter {counter} out of sequence (expected {expected})")
        self.last = counter

    def reset(self) -> None:
        """Call at each new connection."""
        self.last = None


@dataclass
class E2ECounterBank:
    """One sender counter and one receiver checker per characteristic name, for one connection."""

    first_expected: int | None = E2E_COUNTER_FIRST
    senders: dict[str, E2ECounter] = field(default_factory=dict)
    checkers: dict[str, E2ECounterChecker] = field(default_factory=dict)

    def sender(self, characteristic: str) -> E2ECounter:
        return self.senders.setdefault(characteristic, E2ECounter())

    def checker(self, characteristic: str) -> E2ECounterChecker:
        if characteristic not in self.checkers:
            self.checkers[characteristic] = E2ECounterChecker(characteristic, self.first_expected)
        return self.checkers[characteristic]

    def next(self, characteristic: str) -> int:
        return self.sender(characteristic).next()

    def check(self, characteristic: str, counter: int) -> None:
        self.checker(characteristic).check(counter)

    def reset(self) -> None:
        self.senders.clear()
        self.checkers.clear()


def e2e_wrap(body: bytes, counter: int) -> bytes:
    """``body | counter | CRC(body | counter)``."""
    if isinstance(counter, bool) or not isinstance(counter, int) or not E2E_COUNTER_FIRST <= counter <= E2E_COUNTER_LAST:
        raise EncodeError(f"E2E-Counter must be an int in 1..255, not {counter!r}")
    return append_crc(bytes(body) + bytes([counter]))


def e2e_unwrap(characteristic: str, data: bytes, checker: E2ECounterChecker | None = None) -> tuple[bytes, int]:
    """Verify the CRC, then the counter; return ``(body, counter)``.

    The CRC is verified first, so a corrupted value never advances the counter checker.
    Raises :class:`CrcError`, :class:`LengthError` or :class:`E2ECounterError`.
    """
    covered = check_and_strip_crc(characteristic, bytes(data))
    if not covered:
        raise LengthError(characteristic, "too short to carry an E2E-Counter", data)
    body, counter = covered[:-1], covered[-1]
    if counter == 0:
        raise E2ECounterError(characteristic, "E2E-Counter 0 is not used", data)
    if checker is not None:
        checker.check(counter)
    return body, counter


def frame(body: bytes, e2e_counter: int | None) -> bytes:
    """Append the E2E trailer when ``e2e_counter`` is given, otherwise return ``body`` unchanged."""
    return bytes(body) if e2e_counter is None else e2e_wrap(body, e2e_counter)


def unframe(characteristic: str, data: bytes, e2e: bool, checker: E2ECounterChecker | None = None) -> bytes:
    """Strip (and verify) the E2E trailer when ``e2e`` is set; return the body."""
    if not e2e:
        return bytes(data)
    return e2e_unwrap(characteristic, data, checker)[0]
