"""The per-reading pipeline on a real SQLite file: store + outbox atomically, twin, alerts, advice."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlite_utils

from cloud_sync.envelope import SummaryPayload
from cloud_sync.outbox import Outbox
from edge.agent.pipeline import HubPipeline
from edge.config import config_from_dict
from edge.store import CarbEntry, HubStore, InsulinEvent, StoredReading

START_MS = 1_790_000_000_000
CONFIG = config_from_dict({"therapy": {
    "age_group": "adult", "body_weight_kg": 70, "basal_u_per_h": 1.0,
    "insulin_sensitivity_mg_dl_per_u": 50, "carb_ratio_g_per_u": 10}})


def make(tmp_path: Path, clock: list[int]) -> tuple[HubStore, Outbox, HubPipeline]:
    store = HubStore(tmp_path / "hub.sqlite")
    outbox = Outbox(sqlite_utils.Database(store.conn))
    return store, outbox, HubPipeline(store, CONFIG, outbox=outbox, now_ms=lambda: clock[0])


def reading(offset_min: int, glucose: float) -> StoredReading:
    return StoredReading("session-1", offset_min, START_MS + offset_min * 60_000, glucose, trend_mg_dl_min=0.0)


def glucose_at(minute: int) -> float:
    return 120 + 60 * math.sin(minute / 180)


def test_a_day_of_readings_is_stored_synced_and_tracked(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    for minute in range(0, 24 * 60, 5):
        clock[0] = START_MS + minute * 60_000 + 30_000
        outcome = pipeline.on_reading(reading(minute, glucose_at(minute)))
        assert outcome.stored
        assert outcome.estimate is not None and math.isfinite(outcome.estimate.plasma_glucose_mg_dl.value)
    assert store.count_readings() == 288
    records = outbox.read_batch(max_records=10_000)
    readings_synced = sum(1 for r in records if SummaryPayload.from_bytes(r.payload).readings is not None)
    assert readings_synced == 288
    assert any(SummaryPayload.from_bytes(r.payload).twin_parameters for r in records)
    assert abs(pipeline.latest_estimate.plasma_glucose_mg_dl.value - glucose_at(24 * 60 - 5)) < 25


def test_duplicates_are_not_stored_twice_nor_synced_twice(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    assert pipeline.on_reading(reading(0, 100)).stored
    assert not pipeline.on_reading(reading(0, 100)).stored
    assert store.count_readings() == 1
    synced = [SummaryPayload.from_bytes(r.payload).readings for r in outbox.read_batch(max_records=100)]
    assert len([series for series in synced if series is not None]) == 1


def test_low_glucose_raises_an_alert_and_rescue_advice(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    for minute, glucose in enumerate([110, 100, 90, 80, 72, 66, 62]):
        clock[0] = START_MS + minute * 5 * 60_000
        outcome = pipeline.on_reading(reading(minute * 5, glucose))
    kinds = {alert["kind"] for alert in store.open_alerts()}
    assert "low" in kinds
    assert outcome.advice is not None or store.open_recommendation() is not None
    advice = store.open_recommendation()
    assert advice["kind"] in ("rescue_carbs", "suspend", "no_insulin")
    assert advice["payload"]["bolus_u"] == 0.0


def test_automatic_advice_is_committed_with_its_reading_and_a_failing_recommender_costs_nothing(
        tmp_path: Path, monkeypatch) -> None:
    clock = [START_MS]
    store, _outbox, pipeline = make(tmp_path, clock)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    for minute, glucose in enumerate([110, 100, 90, 80, 72, 66, 62]):
        clock[0] = START_MS + minute * 5 * 60_000
        statements.clear()
        outcome = pipeline.on_reading(reading(minute * 5, glucose))
        if outcome.advice is not None:
            break
    store.conn.set_trace_callback(None)
    assert outcome.advice is not None
    advice_id = outcome.advice.numbers["recommendation_id"]
    assert store.recommendation(advice_id)["created_at_ms"] == clock[0]
    assert sum(1 for sql in statements if sql.strip().upper() == "COMMIT") == 1  # reading + advice: one fsync

    def broken(*_args, **_kwargs):
        raise RuntimeError("recommender bug")

    monkeypatch.setattr(pipeline, "_recommend", broken)
    monkeypatch.setattr(pipeline, "_last_advice_min", -math.inf)
    clock[0] += 5 * 60_000
    outcome = pipeline.on_reading(reading(35, 58))
    assert outcome.stored and outcome.advice is None
    assert store.has_reading("session-1", 35)


def test_meal_advice_is_recorded_and_the_decision_synced(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    for minute in range(0, 60, 5):
        clock[0] = START_MS + minute * 60_000
        pipeline.on_reading(reading(minute, 140))
    advice = pipeline.advise(announced_carbs_g=50)
    assert advice.dose.bolus_u > 0
    rec_id = advice.numbers["recommendation_id"]
    pipeline.decide(rec_id, followed=True)
    assert store.recommendation(rec_id)["status"] == "confirmed"
    outcomes = [SummaryPayload.from_bytes(r.payload).recommendations for r in outbox.read_batch(max_records=1000)]
    assert any(o and o[0].followed for o in outcomes)


def test_insulin_and_carbs_reach_the_twin_and_the_store(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    pipeline.on_reading(reading(0, 120))
    pipeline.on_carbs(CarbEntry(START_MS + 60_000, 40))
    assert pipeline.on_insulin(InsulinEvent(START_MS + 60_000, "bolus", insulin_u=4.0, pump_sequence=1))
    assert not pipeline.on_insulin(InsulinEvent(START_MS + 60_000, "bolus", insulin_u=4.0, pump_sequence=1))
    estimate = pipeline.on_reading(reading(5, 125)).estimate
    assert estimate.insulin_on_board_u > 3.5
    assert estimate.carbs_on_board_g > 30


def test_restart_restores_the_twin_from_the_store(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    for minute in range(0, 120, 5):
        pipeline.on_reading(reading(minute, 150))
    before = pipeline.twin.to_dict()
    store.close()
    store2 = HubStore(tmp_path / "hub.sqlite")
    again = HubPipeline(store2, CONFIG, now_ms=lambda: clock[0])
    assert again.twin.to_dict() == before


def test_signal_loss_is_raised_by_the_timer_and_cleared_by_the_next_reading(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    pipeline.on_reading(reading(0, 120))
    clock[0] = START_MS + 10 * 60_000
    assert not pipeline.check_staleness()
    clock[0] = START_MS + 25 * 60_000
    assert [e.action for e in pipeline.check_staleness()] == ["raise"]
    assert "stale_data" in {a["kind"] for a in store.open_alerts()}
    pipeline.on_reading(reading(25, 125))
    assert "stale_data" not in {a["kind"] for a in store.open_alerts()}


def test_old_backfilled_readings_raise_no_alerts(tmp_path: Path) -> None:
    clock = [START_MS + 6 * 3_600_000]
    store, outbox, pipeline = make(tmp_path, clock)
    pipeline.on_reading(reading(0, 50))  # urgent low, but six hours ago
    assert store.open_alerts() == []


def test_a_failed_commit_leaves_the_twin_as_the_store_has_it(tmp_path: Path) -> None:
    from edge.store import StoreFullError

    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    for minute in range(0, 30, 5):
        pipeline.on_reading(reading(minute, 150))
    pipeline.on_carbs(CarbEntry(START_MS + 31 * 60_000, 30))
    before = pipeline.twin.to_dict()
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages}")
    failed = False
    for attempt in range(50):  # fill the last free pages until a commit fails
        try:
            pipeline.on_reading(reading(35 + attempt * 5, 150))
            before = pipeline.twin.to_dict()
        except StoreFullError:
            failed = True
            break
    assert failed
    assert pipeline.twin.to_dict() == before
    assert pipeline._pending_carbs_g in (0.0, 30.0)


def test_resume_starts_from_the_first_hole(tmp_path: Path) -> None:
    from edge.agent.service import first_gap_offset

    with HubStore(tmp_path / "hub.sqlite") as store:
        for offset in (0, 5, 10, 25, 30):
            store.add_reading(StoredReading("s", offset, START_MS + offset * 60_000, 120))
        assert first_gap_offset(store, "s") == 10
        store.add_reading(StoredReading("s", 15, START_MS + 15 * 60_000, 120))
        store.add_reading(StoredReading("s", 20, START_MS + 20 * 60_000, 120))
        assert first_gap_offset(store, "s") == 30
        assert first_gap_offset(store, "other") is None


def test_a_pump_fault_seen_by_the_timer_is_stored_not_swallowed(tmp_path: Path) -> None:
    clock = [START_MS]
    store, outbox, pipeline = make(tmp_path, clock)
    pipeline.on_reading(reading(0, 120))
    pipeline.note_pump_status(reservoir_u=100.0, occlusion=True)
    clock[0] = START_MS + 2 * 60_000
    pipeline.check_staleness()
    assert "pump_occlusion" in {a["kind"] for a in store.open_alerts()}


def test_total_daily_insulin_comes_from_stored_pump_history_once_the_hub_has_a_day(tmp_path: Path) -> None:
    hour_ms = 3_600_000
    clock = [START_MS]
    store, _outbox, pipeline = make(tmp_path, clock)
    pipeline.on_reading(reading(0, 120))
    pipeline.on_insulin(InsulinEvent(START_MS + 2 * hour_ms, "bolus", insulin_u=5.0, pump_sequence=1))
    pipeline.on_insulin(InsulinEvent(START_MS + 5 * hour_ms, "temp_basal", rate_u_per_h=3.0, duration_min=60,
                                     pump_sequence=2))
    clock[0] = START_MS + 23 * hour_ms
    assert pipeline.total_daily_insulin_u(clock[0]) is None  # less than a day held: no TDD yet
    assert pipeline.snapshot().total_daily_insulin_u is None
    clock[0] = START_MS + 25 * hour_ms
    # the last 24 h: 24 h of 1 U/h basal, the 5 U bolus, and 1 h of a 3 U/h temp (2 U more)
    assert pipeline.total_daily_insulin_u(clock[0]) == pytest.approx(24.0 + 5.0 + 2.0)
    assert pipeline.snapshot().total_daily_insulin_u == pytest.approx(31.0)


def test_meal_insulin_withheld_at_a_low_is_offered_once_glucose_has_recovered(tmp_path: Path) -> None:
    clock = [START_MS]
    store, _outbox, pipeline = make(tmp_path, clock)

    def at(minute: int, glucose: float):
        clock[0] = START_MS + minute * 60_000
        return pipeline.on_reading(reading(minute, glucose))

    for minute in range(0, 30, 5):
        at(minute, 66)
    meal = pipeline.advise(announced_carbs_g=50)
    assert meal.dose.bolus_u == 0.0  # glucose below the suspend threshold: no insulin now
    pipeline.on_carbs(CarbEntry(clock[0], 50))
    offers = []
    for minute, glucose in zip(range(30, 90, 5), (72, 80, 90, 100, 108, 116, 124, 132, 140, 148, 156, 164)):
        advice = at(minute, glucose).advice
        if advice is not None and "withheld_meal_bolus_u" in advice.numbers:
            offers.append((minute, glucose, advice))
    assert offers, "no offer of the withheld meal insulin"
    minute, glucose, offer = offers[0]
    assert glucose >= CONFIG.limits.suspend_threshold_mg_dl + 40  # not before glucose has recovered
    assert offer.kind.value == "meal_bolus" and "the meal eaten earlier" in offer.summary
    assert offer.numbers["withheld_meal_bolus_u"] == pytest.approx(5.0)
    assert 0 < offer.dose.bolus_u <= 5.0
    # once the person has taken it, nothing is owed any more
    pipeline.on_insulin(InsulinEvent(clock[0], "bolus", insulin_u=5.0, pump_sequence=7))
    assert pipeline.snapshot().withheld_meal_bolus_u == 0.0
