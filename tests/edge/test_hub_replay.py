"""Bulk replay (edge.agent.replay) on a real SQLite file: exactly once, idempotent, synced, resumable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.envelope import SummaryPayload
from cloud_sync.outbox import Outbox
from edge.agent.pipeline import HubPipeline
from edge.agent.replay import ReplayError, replay, twin_window_start_ms
from edge.bench_hub import hub_config, readings
from edge.store import HubStore


def _outbox_readings(outbox: Outbox) -> list[tuple[int, int]]:
    out = []
    for record in outbox.read_batch(max_records=10_000):
        payload = SummaryPayload.from_bytes(record.payload)
        assert payload.readings is not None
        out += [(r.time_ms, int(r.data["glucose_mg_dl"])) for r in payload.readings.records()]
    return out


def test_replay_stores_every_reading_once_with_one_outbox_record_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    history = list(readings(3 * 288 + 17))
    with HubStore(path) as store:
        outbox = Outbox(sqlite_utils.Database(store.conn))
        result, twin = replay(store, hub_config(path), history, outbox=outbox)
        assert (result.stored, result.duplicates, result.batches, result.outbox_records) == (881, 0, 4, 4)
        assert result.twin_updates == len(history) and twin.filter.kind == "ekf"
        stored = store.readings_between(0, 2**62)
        assert [(r.time_offset_min, r.glucose_mg_dl) for r in stored] == [
            (r.time_offset_min, r.glucose_mg_dl) for r in history]
        assert _outbox_readings(outbox) == [(r.timestamp_ms, round(r.glucose_mg_dl)) for r in history]
        saved = store.latest_twin_state()
        assert saved is not None and saved[0] == history[-1].timestamp_ms

        again, _ = replay(store, hub_config(path), history, outbox=outbox)  # idempotent: nothing new, nothing sent
        assert (again.stored, again.duplicates, again.outbox_records) == (0, len(history), 0)
        assert store.count_readings() == len(history)


def test_a_hub_started_after_a_replay_resumes_from_the_replayed_twin(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    history = list(readings(2 * 288))
    with HubStore(path) as store:
        _, twin = replay(store, hub_config(path), history)
        expected_minute = twin.last_minute
    with HubStore(path) as store:
        pipeline = HubPipeline(store, hub_config(path), now_ms=lambda: history[-1].timestamp_ms + 300_000)
        assert pipeline.twin.last_minute == expected_minute
        nxt = next(readings(1, first_offset=len(history)))
        outcome = pipeline.on_reading(nxt)
        assert outcome.stored and outcome.estimate is not None
        assert outcome.estimate.at_minute == nxt.timestamp_ms / 60_000


def test_the_twin_window_runs_the_twin_only_over_the_last_days(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    history = list(readings(5 * 288))
    with HubStore(path) as store:
        result, _ = replay(store, hub_config(path), history, twin_from_ms=twin_window_start_ms(history, 2.0))
        assert store.count_readings() == len(history)
    assert result.twin_updates == 2 * 288 + 1  # readings at or after the window's first minute


def test_out_of_order_readings_are_refused_and_the_batch_is_not_half_stored(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    history = list(readings(10))
    history[6] = replace(history[6], timestamp_ms=history[2].timestamp_ms)
    with HubStore(path) as store:
        with pytest.raises(ReplayError):
            replay(store, hub_config(path), history, batch_size=5)
        assert store.count_readings() == 5  # the first batch committed, the refused one did not


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=4),
       batch_size=st.integers(min_value=2, max_value=40))
def test_replaying_overlapping_slices_equals_replaying_once(tmp_path_factory, cuts: list[int], batch_size: int) -> None:
    """However a history arrives (in overlapping, repeated slices; any batch size), the store ends the same."""
    path = tmp_path_factory.mktemp("replay") / "hub.sqlite"
    history = list(readings(60))
    twin_from = history[-1].timestamp_ms  # the twin is not what this property is about
    with HubStore(path) as store:
        outbox = Outbox(sqlite_utils.Database(store.conn))
        for cut in sorted(cuts):
            replay(store, hub_config(path), history[:cut], outbox=outbox, batch_size=batch_size, twin_from_ms=twin_from)
        replay(store, hub_config(path), history, outbox=outbox, batch_size=batch_size, twin_from_ms=twin_from)
        assert [r.time_offset_min for r in store.readings_between(0, 2**62)] == [r.time_offset_min for r in history]
        assert sorted(_outbox_readings(outbox)) == [(r.timestamp_ms, round(r.glucose_mg_dl)) for r in history]
