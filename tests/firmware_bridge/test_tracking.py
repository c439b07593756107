"""ReadingTracker: exactly-once, in-order delivery under loss, duplication, reordering and backfills."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.sessions.tracking import Reading, ReadingTracker


def reading(offset: int) -> Reading:
    return Reading(time_offset_min=offset, glucose_mg_dl=100.0 + offset % 50)


def offsets_of(readings: list[Reading]) -> list[int]:
    return [r.time_offset_min for r in readings]


def test_nothing_is_delivered_before_the_first_clean_backfill() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    assert tracker.needs_backfill
    assert tracker.offer(reading(10)) == []
    assert tracker.offer(reading(15)) == []
    assert tracker.backfill_from_offset() is None  # ask for all records
    # the backfill brings the older records, then completes
    assert tracker.offer(reading(0)) == []
    assert tracker.offer(reading(5)) == []
    released = tracker.backfill_complete()
    assert offsets_of(released) == [0, 5, 10, 15]
    assert not tracker.needs_backfill
    assert offsets_of(tracker.offer(reading(20))) == [20]


def test_gap_holds_readings_until_backfill_fills_it() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    tracker.offer(reading(0))
    tracker.backfill_complete()
    assert offsets_of(tracker.offer(reading(5))) == [5]
    assert tracker.offer(reading(20)) == []  # 10 and 15 missing
    assert tracker.needs_backfill and tracker.stats.gaps_opened == 1
    assert tracker.backfill_from_offset() == 5
    assert tracker.offer(reading(5)) == []  # ">= last" repeats the last one: a duplicate
    assert offsets_of(tracker.offer(reading(10))) == [10]
    assert offsets_of(tracker.offer(reading(15))) == [15, 20]  # releases the held one behind it
    assert not tracker.needs_backfill
    assert tracker.stats.duplicates_dropped == 1


def test_clean_backfill_releases_held_readings_when_the_sensor_has_nothing_in_between() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    tracker.offer(reading(0))
    tracker.backfill_complete()
    tracker.offer(reading(30))  # the sensor skipped 5..25 (e.g. a sensor error)
    assert tracker.needs_backfill
    assert offsets_of(tracker.backfill_complete()) == [30]
    assert tracker.last_delivered_offset == 30


def test_held_readings_can_be_looked_up_by_offset() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    tracker.offer(reading(10))
    held = tracker.held(10)
    assert held is not None and held.time_offset_min == 10 and tracker.held(5) is None
    tracker.anchor(held)
    assert tracker.held(10) is None and tracker.last_delivered_offset == 10


def test_anchor_on_first_record_lets_a_lossy_backfill_make_progress() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    tracker.offer(reading(40))  # live, before any sync: held
    assert offsets_of(tracker.anchor(reading(0))) == [0]
    assert offsets_of(tracker.offer(reading(5))) == [5]
    # 10 lost in the backfill: 15 and later are held, the backfill is not clean, so no release
    assert tracker.offer(reading(15)) == []
    assert tracker.needs_backfill and tracker.backfill_from_offset() == 5
    assert offsets_of(tracker.offer(reading(10))) == [10, 15]
    assert offsets_of(tracker.offer(reading(20))) == [20]
    assert offsets_of(tracker.backfill_complete()) == [40]


def test_confirm_range_releases_past_a_skipped_reading_only_when_counts_match() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    tracker.anchor(reading(0))
    tracker.offer(reading(15))
    tracker.offer(reading(25))  # held: 15, 25; the sensor never took 5 and 10, but 20 exists and was lost
    assert tracker.confirm_range(0, 25, stored_count=4) == []  # 0, 15, 20, 25: one unknown
    tracker.offer(reading(20))
    assert offsets_of(tracker.confirm_range(0, 25, stored_count=4)) == [15, 20, 25]
    assert tracker.last_delivered_offset == 25 and not tracker.needs_backfill


def test_duplicates_of_held_and_delivered_readings_are_dropped() -> None:
    tracker: ReadingTracker[Reading] = ReadingTracker()
    tracker.offer(reading(0))
    tracker.offer(reading(0))
    tracker.backfill_complete()
    tracker.offer(reading(10))
    tracker.offer(reading(10))
    assert tracker.held_offsets == [10]
    assert tracker.stats.duplicates_dropped == 2


def test_interval_must_be_positive() -> None:
    try:
        ReadingTracker(interval_min=0)
    except ValueError:
        pass
    else:
        raise AssertionError("interval 0 accepted")


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=120),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    loss=st.floats(min_value=0.0, max_value=0.6),
    duplication=st.floats(min_value=0.0, max_value=0.3),
    reorder=st.floats(min_value=0.0, max_value=0.3),
    backfill_corruption=st.floats(min_value=0.0, max_value=0.3),
    skipped=st.sets(st.integers(min_value=0, max_value=119), max_size=10),
)
def test_every_stored_reading_is_delivered_exactly_once_in_order(
    count: int,
    seed: int,
    loss: float,
    duplication: float,
    reorder: float,
    backfill_corruption: float,
    skipped: set[int],
) -> None:
    """A sensor stores readings every 5 min (some never measured); the link loses, duplicates and reorders
    live packets; backfills may themselves lose packets (then they are not "clean" and get retried)."""
    rng = random.Random(seed)
    stored: list[int] = []
    tracker: ReadingTracker[Reading] = ReadingTracker(interval_min=5)
    delivered: list[int] = []
    live_queue: list[int] = []

    def run_backfill() -> None:
        operand = tracker.backfill_from_offset()
        if operand is None and stored:  # anchor on the first stored record
            if rng.random() < backfill_corruption:
                return
            delivered.extend(offsets_of(tracker.anchor(reading(stored[0]))))
            operand = tracker.backfill_from_offset()
        clean = True
        for offset in stored:
            if operand is not None and offset < operand:
                continue
            if rng.random() < backfill_corruption:
                clean = False  # the session saw a DecodeError during the backfill
                continue
            delivered.extend(offsets_of(tracker.offer(reading(offset))))
        if clean:
            delivered.extend(offsets_of(tracker.backfill_complete()))
        elif tracker.held_offsets and rng.random() >= backfill_corruption:
            low, high = tracker.backfill_from_offset(), tracker.held_offsets[-1]
            assert low is not None
            count_in_range = sum(1 for offset in stored if low <= offset <= high)
            delivered.extend(offsets_of(tracker.confirm_range(low, high, count_in_range)))

    for index in range(count):
        offset = index * 5
        if index not in skipped:
            stored.append(offset)
            if rng.random() >= loss:
                live_queue.append(offset)
                if rng.random() < duplication:
                    live_queue.append(offset)
        # the link delivers what is queued, sometimes swapping neighbours
        if len(live_queue) >= 2 and rng.random() < reorder:
            live_queue[-1], live_queue[-2] = live_queue[-2], live_queue[-1]
        if rng.random() < 0.7:
            for queued in live_queue:
                delivered.extend(offsets_of(tracker.offer(reading(queued))))
            live_queue.clear()
        if tracker.needs_backfill and rng.random() < 0.5:
            run_backfill()
        # invariant at every step: strictly increasing, only stored readings
        assert delivered == sorted(set(delivered))
        assert set(delivered) <= set(stored)

    # the session keeps backfilling until a clean one; with corruption < 1 this terminates
    for queued in live_queue:
        delivered.extend(offsets_of(tracker.offer(reading(queued))))
    attempts = 0
    while tracker.needs_backfill or (stored and tracker.last_delivered_offset != stored[-1]):
        run_backfill()
        attempts += 1
        assert attempts < 500
    assert delivered == stored
    assert tracker.stats.delivered == len(stored)
