"""The hub store on a real SQLite file: migrations, dedupe, transactions, corruption, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.store import CarbEntry, CorruptStoreError, HubStore, InsulinEvent, StoreError, StoredReading
from edge.store.schema import SCHEMA_VERSION

DAY_MS = 86_400_000


def reading(offset: int, glucose: float = 120.0, session: str = "s1", start_ms: int = 0) -> StoredReading:
    return StoredReading(session, offset, start_ms + offset * 60_000, glucose)


def test_new_file_is_migrated_to_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.integrity_check() == "ok"


def test_readings_deduplicate_by_session_and_time_offset(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        assert store.add_reading(reading(5)) is True
        assert store.add_reading(reading(5, glucose=999.0)) is False
        assert store.add_reading(reading(5, session="s2")) is True
        assert store.count_readings() == 2
        assert store.last_time_offset("s1") == 5
        assert store.readings_between(0, DAY_MS)[0].glucose_mg_dl == 120.0


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    with HubStore(path) as store:
        for offset in range(0, 60, 5):
            store.add_reading(reading(offset))
        store.add_insulin(InsulinEvent(1_000, "bolus", insulin_u=2.5, pump_sequence=7))
        store.add_insulin(InsulinEvent(1_000, "bolus", insulin_u=2.5, pump_sequence=7))
        store.add_carbs(CarbEntry(2_000, 45.0))
        store.save_twin_state(3_000, {"theta": 0.1})
    with HubStore(path) as store:
        assert store.count_readings() == 12
        assert len(store.insulin_since(0)) == 1
        assert store.carbs_since(0)[0].carbs_g == 45.0
        assert store.latest_twin_state() == (3_000, {"theta": 0.1})


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.add_reading(reading(5))
                raise RuntimeError("power cut in the middle")
        assert store.count_readings() == 0


def test_invalid_rows_are_refused(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        with pytest.raises(StoreError):
            store.add_carbs(CarbEntry(0, -5.0))
        with pytest.raises(StoreError):
            store.add_insulin(InsulinEvent(0, "teleport"))


def test_a_corrupted_file_raises_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    with HubStore(path) as store:
        for offset in range(0, 2000, 5):
            store.add_reading(reading(offset))
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 512] = b"\xff" * 512  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError):
        HubStore(path)


def test_garbage_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptStoreError):
        HubStore(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    HubStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        HubStore(path)


def test_recommendations_have_one_open_at_a_time(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        first = store.add_recommendation(1, "bolus", {"bolus_u": 2.0})
        second = store.add_recommendation(2, "bolus", {"bolus_u": 1.0})
        assert store.recommendation(first)["status"] == "superseded"
        assert store.open_recommendation()["id"] == second
        store.decide_recommendation(second, "confirmed", 3)
        assert store.open_recommendation() is None
        with pytest.raises(StoreError):
            store.decide_recommendation(second, "declined", 4)


def test_alerts_open_snooze_and_clear(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        store.raise_alert("low", "warning", "Glucose 65 mg/dL", 1)
        store.snooze_alert("low", 1_000)
        assert store.open_alerts()[0]["snoozed_until_ms"] == 1_000
        store.clear_alert("low", 2)
        assert store.open_alerts() == []


def test_compaction_keeps_whole_days_as_summaries(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        for offset in range(0, 3 * 24 * 60, 5):
            store.add_reading(reading(offset, glucose=100.0 + offset % 50))
        removed = store.compact_before(2 * DAY_MS + 3_600_000, lambda values: {"mean": sum(values) / len(values)})
        assert removed == 2 * 288
        assert store.count_readings() == 288
        summaries = store.daily_summaries()
        assert sorted(summaries) == ["1970-01-01", "1970-01-02"]
        assert summaries["1970-01-01"]["reading_count"] == 288


def test_only_the_latest_twin_state_is_kept_and_parameters_are_history(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.sqlite") as store:
        for t in range(5):
            store.save_twin_state(t, {"t": t})
            store.add_twin_parameters(t * 3_600_000, {"sensitivity_ratio": 1.0 + t / 10})
        assert store.conn.execute("SELECT COUNT(*) FROM twin_states").fetchone()[0] == 1
        assert store.latest_twin_state() == (4, {"t": 4})
        history = store.twin_parameters_between(0, 10 * 3_600_000)
        assert [p["sensitivity_ratio"] for _, p in history] == [1.0, 1.1, 1.2, 1.3, 1.4]


def test_a_version_one_file_is_migrated(tmp_path: Path) -> None:
    from edge.store.schema import MIGRATIONS

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO twin_states VALUES (1, '{}'), (2, '{}')")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with HubStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.conn.execute("SELECT COUNT(*) FROM twin_states").fetchone()[0] == 1
