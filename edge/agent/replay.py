"""Bulk replay: load a long history of CGM readings into the hub fast (an import, a restore, a benchmark).

The live :class:`~edge.agent.pipeline.HubPipeline` spends ~20 ms per reading on a Pi-class machine: one
durable commit (fsync) per reading, a twin update with the UKF and a 48-sample what-if forecast for alerts and
advice. None of that is useful for history: alerts and advice are about *now*. Replay keeps what matters and
drops the rest:

* readings are stored exactly as the live path stores them (same table, same (session, offset) key, duplicates
  ignored), in one transaction per ``batch_size`` readings (a day by default), so a year is 365 fsyncs, not
  105,120; a crash loses at most the batch in flight, and replaying again is idempotent;
* each batch gets ONE outbox record (a :class:`~cloud_sync.envelope.SummaryPayload` whose ReadingSeries holds
  the batch's new readings), written in the same transaction;
* the twin runs the EKF (about 3x cheaper per update than the UKF) with no forecast, and its state is saved
  with each batch, so a hub started afterwards resumes from it (``HubPipeline`` restores the latest state);
* ``twin_window_days`` (optional) runs the twin only over the last days of the history: the twin's fast
  states forget within hours and its sensitivity adapts within days, so a warm start from the last weeks is
  what a year-long replay would give, for a fraction of the cost.

Only the store's and the twin's public interfaces are used; readings must be in time order (as a sensor's
records are).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from cloud_sync.envelope import ReadingSeries, SummaryPayload
from cloud_sync.outbox import Outbox
from models.twin.twin import DigitalTwin

from ..config import HubConfig
from ..store import HubStore, StoredReading

MS_PER_MIN = 60_000
DEFAULT_BATCH = 288  # a day of 5-minute readings


class ReplayError(ValueError):
    """The readings to replay are not in time order."""


@dataclass
class ReplayResult:
    readings_in: int = 0
    stored: int = 0
    duplicates: int = 0
    twin_updates: int = 0
    outbox_records: int = 0
    batches: int = 0
    store_s: float = 0.0
    twin_s: float = 0.0
    total_s: float = 0.0


def _batches(readings: Iterable[StoredReading], size: int) -> Iterator[list[StoredReading]]:
    iterator = iter(readings)
    while batch := list(islice(iterator, size)):
        yield batch


def replay(store: HubStore, config: HubConfig, readings: Iterable[StoredReading], *, outbox: Outbox | None = None,
           batch_size: int = DEFAULT_BATCH, twin: DigitalTwin | None = None, twin_from_ms: int | None = None,
           basal_u_per_h: float | None = None) -> tuple[ReplayResult, DigitalTwin]:
    """Store ``readings`` (time-ordered) in batches and run the EKF twin over those at or after ``twin_from_ms``.

    Returns the counts and timings, and the twin (also saved in the store after each batch that moved it).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    twin = twin or DigitalTwin.from_therapy_settings(config.therapy, filter_kind="ekf")
    basal = config.therapy.basal_u_per_h if basal_u_per_h is None else basal_u_per_h
    result = ReplayResult()
    began = time.perf_counter()
    last_ms: int | None = None
    for batch in _batches(readings, batch_size):
        result.batches += 1
        result.readings_in += len(batch)
        started = time.perf_counter()
        for reading in batch:
            if last_ms is not None and reading.timestamp_ms < last_ms:
                raise ReplayError(f"reading at {reading.timestamp_ms} ms comes after one at {last_ms} ms")
            last_ms = reading.timestamp_ms
            if twin_from_ms is not None and reading.timestamp_ms < twin_from_ms:
                continue
            at_min = reading.timestamp_ms / MS_PER_MIN
            if twin.last_minute is None or at_min >= twin.last_minute:
                twin.update(reading.glucose_mg_dl, at_min, basal_u_per_h=basal)
                result.twin_updates += 1
        twin_moved = twin.last_minute is not None and twin.last_minute >= batch[0].timestamp_ms / MS_PER_MIN
        state = twin.to_dict() if twin_moved else None
        result.twin_s += time.perf_counter() - started
        started = time.perf_counter()
        with store.transaction() as conn:
            new = [reading for reading in batch if store.add_reading(reading)]
            if new and outbox is not None:
                series = ReadingSeries.from_pairs([(r.timestamp_ms, round(r.glucose_mg_dl)) for r in new])
                payload = SummaryPayload(new[0].timestamp_ms, new[-1].timestamp_ms, readings=series)
                outbox.enqueue(payload.to_bytes(), "summary", conn=conn)
                result.outbox_records += 1
            if state is not None:
                store.save_twin_state(int(twin.last_minute * MS_PER_MIN), state)  # type: ignore[operator]
        result.store_s += time.perf_counter() - started
        result.stored += len(new)
        result.duplicates += len(batch) - len(new)
    result.total_s = time.perf_counter() - began
    return result, twin


def twin_window_start_ms(readings: Sequence[StoredReading], window_days: float | None) -> int | None:
    """The first timestamp the twin should see to cover the last ``window_days`` of ``readings`` (None: all)."""
    if window_days is None or not readings:
        return None
    return readings[-1].timestamp_ms - int(window_days * 1440 * MS_PER_MIN)


__all__ = ["DEFAULT_BATCH", "ReplayError", "ReplayResult", "replay", "twin_window_start_ms"]
