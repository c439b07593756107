"""HubStore: the hub's one SQLite file, opened for crash safety.

WAL with ``synchronous=FULL``: a write is acknowledged only after it is durable, so a power cut or kill -9
loses nothing that was acknowledged. Readings are keyed by (sensor session, time offset) and inserted with
ON CONFLICT DO NOTHING (never OR IGNORE, which would also swallow CHECK failures), so backfilled duplicates disappear at the storage layer too. Callers that must write a record
and its outbox row atomically use :meth:`HubStore.transaction`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from .records import CarbEntry, InsulinEvent, StoredReading
from .schema import MIGRATIONS, SCHEMA_VERSION


class StoreError(RuntimeError):
    """The store cannot do what was asked; the message says why."""


class CorruptStoreError(StoreError):
    """The database file failed its integrity check or is not a database."""


class StoreFullError(StoreError):
    """The disk (or the database's size limit) is full: nothing was written."""


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _translate(error: sqlite3.Error) -> StoreError:
    text = str(error).lower()
    if "full" in text:
        return StoreFullError(f"storage is full: {error}")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return CorruptStoreError(f"database is corrupted: {error}")
    return StoreError(str(error))


class HubStore:
    """The hub's local database. One instance per process; not shared across threads without care."""

    def __init__(self, path: str | Path, *, check_integrity: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            if check_integrity:
                result = conn.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    conn.close()
                    raise CorruptStoreError(f"{self.path}: integrity check failed: {result}")
        except sqlite3.DatabaseError as error:
            raise _translate(error) from error
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._migrate()

    # --- lifecycle -----------------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this hub ({SCHEMA_VERSION})")
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as conn:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any error. Nested use joins the outer transaction."""
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLITE_FULL/IOERR/NOMEM may already have rolled it back
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as error:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise _translate(error) from error

    def integrity_check(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    # --- readings ------------------------------------------------------------------------------------

    def add_reading(self, reading: StoredReading, *, received_at_ms: int | None = None) -> bool:
        """Store a reading; returns False when it was already stored (a duplicate)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO readings (sensor_session, time_offset_min, timestamp_ms, glucose_mg_dl, "
                "trend_mg_dl_min, annunciations, source, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (sensor_session, time_offset_min) DO NOTHING",
                (
                    reading.sensor_session,
                    reading.time_offset_min,
                    reading.timestamp_ms,
                    reading.glucose_mg_dl,
                    reading.trend_mg_dl_min,
                    reading.annunciations,
                    reading.source,
                    received_at_ms if received_at_ms is not None else _now_ms(),
                ),
            )
            return cursor.rowcount == 1

    def has_reading(self, sensor_session: str, time_offset_min: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM readings WHERE sensor_session = ? AND time_offset_min = ?", (sensor_session, time_offset_min)
        ).fetchone()
        return row is not None

    def readings_between(self, start_ms: int, end_ms: int) -> list[StoredReading]:
        rows = self.conn.execute(
            "SELECT sensor_session, time_offset_min, timestamp_ms, glucose_mg_dl, trend_mg_dl_min, annunciations, "
            "source FROM readings WHERE timestamp_ms >= ? AND timestamp_ms < ? ORDER BY timestamp_ms",
            (start_ms, end_ms),
        ).fetchall()
        return [StoredReading(*row) for row in rows]

    def latest_reading(self) -> StoredReading | None:
        row = self.conn.execute(
            "SELECT sensor_session, time_offset_min, timestamp_ms, glucose_mg_dl, trend_mg_dl_min, annunciations, "
            "source FROM readings ORDER BY timestamp_ms DESC LIMIT 1"
        ).fetchone()
        return StoredReading(*row) if row else None

    def earliest_reading_ms(self) -> int | None:
        row = self.conn.execute("SELECT MIN(timestamp_ms) FROM readings").fetchone()
        return None if row[0] is None else int(row[0])

    def last_time_offset(self, sensor_session: str) -> int | None:
        row = self.conn.execute(
            "SELECT MAX(time_offset_min) FROM readings WHERE sensor_session = ?", (sensor_session,)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def count_readings(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])

    # --- insulin and carbs ---------------------------------------------------------------------------

    def add_insulin(self, event: InsulinEvent) -> bool:
        """Store an insulin event; an event with a pump sequence number already stored is ignored."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO insulin (timestamp_ms, kind, insulin_u, rate_u_per_h, duration_min, "
                "pump_sequence, source) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pump_sequence) DO NOTHING",
                (
                    event.timestamp_ms,
                    event.kind,
                    event.insulin_u,
                    event.rate_u_per_h,
                    event.duration_min,
                    event.pump_sequence,
                    event.source,
                ),
            )
            return cursor.rowcount == 1

    def insulin_since(self, start_ms: int) -> list[InsulinEvent]:
        rows = self.conn.execute(
            "SELECT timestamp_ms, kind, insulin_u, rate_u_per_h, duration_min, pump_sequence, source FROM insulin "
            "WHERE timestamp_ms >= ? ORDER BY timestamp_ms, id",
            (start_ms,),
        ).fetchall()
        return [InsulinEvent(*row) for row in rows]

    def add_carbs(self, entry: CarbEntry) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO carbs (timestamp_ms, carbs_g, absorption_min, source) VALUES (?, ?, ?, ?)",
                (entry.timestamp_ms, entry.carbs_g, entry.absorption_min, entry.source),
            )
            return int(cursor.lastrowid or 0)

    def carbs_since(self, start_ms: int) -> list[CarbEntry]:
        rows = self.conn.execute(
            "SELECT timestamp_ms, carbs_g, absorption_min, source FROM carbs WHERE timestamp_ms >= ? "
            "ORDER BY timestamp_ms, id",
            (start_ms,),
        ).fetchall()
        return [CarbEntry(*row) for row in rows]

    # --- twin state, recommendations, alerts ---------------------------------------------------------

    def save_twin_state(self, timestamp_ms: int, state: dict[str, Any]) -> None:
        """Keep the latest twin state only (enough to resume after a restart)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM twin_states WHERE timestamp_ms <> ?", (timestamp_ms,))
            conn.execute(
                "INSERT OR REPLACE INTO twin_states (timestamp_ms, state_json) VALUES (?, ?)",
                (timestamp_ms, json.dumps(state, separators=(",", ":"))),
            )

    def add_twin_parameters(self, timestamp_ms: int, parameters: dict[str, float]) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO twin_parameters (timestamp_ms, parameters_json) VALUES (?, ?)",
                         (timestamp_ms, json.dumps(parameters, separators=(",", ":"))))

    def twin_parameters_between(self, start_ms: int, end_ms: int) -> list[tuple[int, dict[str, float]]]:
        rows = self.conn.execute(
            "SELECT timestamp_ms, parameters_json FROM twin_parameters WHERE timestamp_ms >= ? AND timestamp_ms < ? "
            "ORDER BY timestamp_ms", (start_ms, end_ms)).fetchall()
        return [(int(t), json.loads(text)) for t, text in rows]

    def latest_twin_state(self) -> tuple[int, dict[str, Any]] | None:
        row = self.conn.execute(
            "SELECT timestamp_ms, state_json FROM twin_states ORDER BY timestamp_ms DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def add_recommendation(self, created_at_ms: int, kind: str, payload: dict[str, Any]) -> int:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE recommendations SET status = 'superseded', decided_at_ms = ? WHERE status = 'open'",
                (created_at_ms,),
            )
            cursor = conn.execute(
                "INSERT INTO recommendations (created_at_ms, kind, payload_json) VALUES (?, ?, ?)",
                (created_at_ms, kind, json.dumps(payload, separators=(",", ":"))),
            )
            return int(cursor.lastrowid or 0)

    def decide_recommendation(self, recommendation_id: int, status: str, decided_at_ms: int) -> None:
        if status not in ("confirmed", "declined", "expired"):
            raise StoreError(f"a recommendation cannot be {status!r}")
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE recommendations SET status = ?, decided_at_ms = ? WHERE id = ? AND status = 'open'",
                (status, decided_at_ms, recommendation_id),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"recommendation {recommendation_id} is not open")

    def recommendation(self, recommendation_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT id, created_at_ms, kind, payload_json, status, decided_at_ms FROM recommendations WHERE id = ?",
            (recommendation_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "id": row[0],
            "created_at_ms": row[1],
            "kind": row[2],
            "payload": json.loads(row[3]),
            "status": row[4],
            "decided_at_ms": row[5],
        }

    def open_recommendation(self) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT id FROM recommendations WHERE status = 'open' ORDER BY id DESC LIMIT 1")
        found = row.fetchone()
        return self.recommendation(found[0]) if found else None

    def raise_alert(self, kind: str, severity: str, message: str, raised_at_ms: int) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO alerts (kind, severity, message, raised_at_ms) VALUES (?, ?, ?, ?)",
                (kind, severity, message, raised_at_ms),
            )
            return int(cursor.lastrowid or 0)

    def clear_alert(self, kind: str, cleared_at_ms: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE alerts SET cleared_at_ms = ? WHERE kind = ? AND cleared_at_ms IS NULL", (cleared_at_ms, kind)
            )

    def snooze_alert(self, kind: str, until_ms: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE alerts SET snoozed_until_ms = ? WHERE kind = ? AND cleared_at_ms IS NULL", (until_ms, kind)
            )

    def open_alerts(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, kind, severity, message, raised_at_ms, snoozed_until_ms FROM alerts "
            "WHERE cleared_at_ms IS NULL ORDER BY raised_at_ms"
        ).fetchall()
        keys = ("id", "kind", "severity", "message", "raised_at_ms", "snoozed_until_ms")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # --- retention -----------------------------------------------------------------------------------

    def compact_before(self, cutoff_ms: int, summarise: Any) -> int:
        """Replace raw readings older than ``cutoff_ms`` by one summary per UTC day; returns rows removed.

        ``summarise(glucose_mg_dl: list[float]) -> dict`` computes a day's summary (the hub passes the glycemic
        metrics). Days are only compacted whole, so a summary never covers half a day.
        """
        cutoff_day_ms = cutoff_ms - cutoff_ms % 86_400_000
        rows = self.conn.execute(
            "SELECT timestamp_ms, glucose_mg_dl FROM readings WHERE timestamp_ms < ? ORDER BY timestamp_ms",
            (cutoff_day_ms,),
        ).fetchall()
        if not rows:
            return 0
        by_day: dict[str, list[float]] = {}
        for timestamp_ms, glucose in rows:
            day = datetime.fromtimestamp(timestamp_ms / 1000, UTC).date().isoformat()
            by_day.setdefault(day, []).append(float(glucose))
        with self.transaction() as conn:
            for day, values in by_day.items():
                existing = conn.execute("SELECT summary_json FROM daily_summaries WHERE day = ?", (day,)).fetchone()
                summary = dict(summarise(values), reading_count=len(values))
                if existing:  # late (backfilled) readings for a day already compacted: kept as a separate batch
                    merged = json.loads(existing[0])
                    merged.setdefault("late_batches", []).append(summary)
                    summary = merged
                conn.execute(
                    "INSERT OR REPLACE INTO daily_summaries (day, summary_json) VALUES (?, ?)",
                    (day, json.dumps(summary, separators=(",", ":"))),
                )
            cursor = conn.execute("DELETE FROM readings WHERE timestamp_ms < ?", (cutoff_day_ms,))
            removed = cursor.rowcount
        return int(removed)

    def daily_summaries(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT day, summary_json FROM daily_summaries ORDER BY day").fetchall()
        return {day: json.loads(text) for day, text in rows}
