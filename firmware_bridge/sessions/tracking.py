"""Pure bookkeeping of a CGM session: gap detection, de-duplication and ordering by time offset.

A CGM sensor numbers its readings by *time offset* (minutes since session start). The hub receives them from
two paths that interleave: live notifications and RACP backfills ("report records >= last time offset").
Packets can be lost, corrupted (dropped by the decoder), duplicated or reordered. :class:`ReadingTracker`
turns that into a stream where each reading is delivered exactly once, in increasing time offset:

* a reading at or before the last delivered offset is a duplicate and is dropped;
* a reading at most one measurement interval after the last delivered one is delivered at once (and any
  held readings that now follow on without a gap are released behind it);
* a reading further ahead opens a *gap*: it is held back and :attr:`ReadingTracker.needs_backfill` becomes
  true, so the session asks the sensor for the records it missed;
* a session with nothing delivered yet anchors on the sensor's *first* stored record (RACP "report first
  record"), :meth:`ReadingTracker.anchor`; from there every backfill makes progress even when some of its
  packets are lost, because readings one interval apart are delivered as they arrive;
* when a backfill completes *cleanly* (the sensor indicated its RACP response and no packet of the backfill
  was dropped), :meth:`ReadingTracker.backfill_complete` releases whatever is held, in order: the sensor has
  confirmed it holds nothing else in between, so waiting longer could only stall the stream.

Before the anchor (or a clean backfill) nothing is delivered, because the hub cannot know what the sensor
stored before it connected. No I/O and no clock: the session drives it, the tests fuzz it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class HasTimeOffset(Protocol):
    @property
    def time_offset_min(self) -> int: ...


R = TypeVar("R", bound=HasTimeOffset)


@dataclass(frozen=True)
class Reading:
    """One CGM reading as the hub hands it on (decoded, checked, de-duplicated)."""

    time_offset_min: int
    glucose_mg_dl: float
    trend_mg_dl_min: float | None = None
    quality_pct: float | None = None
    annunciations: frozenset[str] = frozenset()
    via: str = "live"  # "backfill": received while an RACP backfill ran (a live one may coincide), else "live"
    session_start_iso: str | None = None
    """The sensor session's start (CGM Session Start Time, ISO 8601 with offset) when the sensor gives it:
    the reading was taken at session start + time offset. Offsets restart with each new session."""

    def as_json_dict(self) -> dict[str, object]:
        return {
            "time_offset_min": self.time_offset_min,
            "session_start": self.session_start_iso,
            "glucose_mg_dl": self.glucose_mg_dl,
            "trend_mg_dl_min": self.trend_mg_dl_min,
            "quality_pct": self.quality_pct,
            "annunciations": sorted(self.annunciations),
            "via": self.via,
        }


@dataclass
class TrackerStats:
    delivered: int = 0
    duplicates_dropped: int = 0
    gaps_opened: int = 0
    backfills_completed: int = 0


@dataclass
class ReadingTracker(Generic[R]):
    """Exactly-once, in-order delivery of readings keyed by time offset (see the module docstring).

    ``interval_min`` is the sensor's measurement interval: two readings further apart than that have a gap
    between them. If unsure, err low: a too-small interval costs extra backfills, never a lost reading.
    """

    interval_min: int = 5
    last_delivered_offset: int | None = None
    synced: bool = False
    stats: TrackerStats = field(default_factory=TrackerStats)
    _held: dict[int, R] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.interval_min < 1:
            raise ValueError("interval_min must be at least 1 minute")

    @property
    def held_offsets(self) -> list[int]:
        return sorted(self._held)

    def held(self, offset: int) -> R | None:
        """The reading held back at ``offset``, if any."""
        return self._held.get(offset)

    @property
    def needs_backfill(self) -> bool:
        """True until the first clean backfill, and whenever a reading is held behind a gap."""
        return not self.synced or bool(self._held)

    def backfill_from_offset(self) -> int | None:
        """Operand for "report records >= offset": the last delivered offset, or None for all records."""
        return self.last_delivered_offset

    def offer(self, reading: R) -> list[R]:
        """Take one received reading; return the readings now deliverable, in order (maybe none)."""
        offset = reading.time_offset_min
        if self.last_delivered_offset is not None and offset <= self.last_delivered_offset:
            self.stats.duplicates_dropped += 1
            return []
        if offset in self._held:
            self.stats.duplicates_dropped += 1
            return []
        if self.synced and self._follows_on(offset):
            out = [reading]
            self._deliver(offset)
            out.extend(self._release_contiguous())
            return out
        if self.synced and not self._held:
            self.stats.gaps_opened += 1
        self._held[offset] = reading
        return []

    def anchor(self, first: R) -> list[R]:
        """Deliver the sensor's first stored record (nothing can come before it) and what follows on."""
        if self.last_delivered_offset is not None:
            return self.offer(first)
        self.synced = True
        self._held.pop(first.time_offset_min, None)
        out = [self._held.pop(offset) for offset in sorted(self._held) if offset < first.time_offset_min]
        out.append(first)
        self._deliver(first.time_offset_min, count=len(out))
        out.extend(self._release_contiguous())
        return out

    def backfill_complete(self) -> list[R]:
        """The sensor finished a backfill without any dropped packet: release everything held, in order."""
        self.synced = True
        self.stats.backfills_completed += 1
        out = [self._held.pop(offset) for offset in sorted(self._held)]
        if out:
            self._deliver(out[-1].time_offset_min, count=len(out))
        return out

    def confirm_range(self, low_offset: int, high_offset: int, stored_count: int) -> list[R]:
        """The sensor says it stores ``stored_count`` records with offsets in [low, high] (RACP "report
        number of records", range operator). If the hub already knows that many distinct offsets there (the
        last delivered one plus those held), nothing is missing: release the held readings up to ``high``.

        This lets a session get past a reading the sensor never took even when no backfill is ever clean.
        """
        known = {offset for offset in self._held if low_offset <= offset <= high_offset}
        last = self.last_delivered_offset
        if last is not None and low_offset <= last <= high_offset:
            known.add(last)
        if len(known) != stored_count or last is None:
            return []
        out = [self._held.pop(offset) for offset in sorted(self._held) if offset <= high_offset]
        if out:
            self._deliver(out[-1].time_offset_min, count=len(out))
            out.extend(self._release_contiguous())
        return out

    def _follows_on(self, offset: int) -> bool:
        # With nothing delivered yet there is no anchor: hold and let a backfill of all records decide.
        return self.last_delivered_offset is not None and offset - self.last_delivered_offset <= self.interval_min

    def _deliver(self, offset: int, count: int = 1) -> None:
        self.last_delivered_offset = offset
        self.stats.delivered += count

    def _release_contiguous(self) -> list[R]:
        out: list[R] = []
        while self._held:
            first = min(self._held)
            if not self._follows_on(first):
                break
            out.append(self._held.pop(first))
            self._deliver(first)
        return out
