"""Versioned schema. Each migration runs once, in order, inside a transaction; PRAGMA user_version records it.

Never edit a shipped migration: add a new one. Times are UTC epoch milliseconds.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the first schema
    (
        """CREATE TABLE readings (
            sensor_session TEXT NOT NULL,
            time_offset_min INTEGER NOT NULL,
            timestamp_ms INTEGER NOT NULL,
            glucose_mg_dl REAL NOT NULL,
            trend_mg_dl_min REAL,
            annunciations INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            received_at_ms INTEGER NOT NULL,
            PRIMARY KEY (sensor_session, time_offset_min)
        ) WITHOUT ROWID""",
        "CREATE INDEX readings_by_time ON readings (timestamp_ms)",
        """CREATE TABLE insulin (
            id INTEGER PRIMARY KEY,
            timestamp_ms INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('bolus', 'temp_basal', 'basal', 'suspend')),
            insulin_u REAL,
            rate_u_per_h REAL,
            duration_min REAL,
            pump_sequence INTEGER UNIQUE,
            source TEXT NOT NULL
        )""",
        "CREATE INDEX insulin_by_time ON insulin (timestamp_ms)",
        """CREATE TABLE carbs (
            id INTEGER PRIMARY KEY,
            timestamp_ms INTEGER NOT NULL,
            carbs_g REAL NOT NULL CHECK (carbs_g >= 0),
            absorption_min REAL NOT NULL,
            source TEXT NOT NULL
        )""",
        "CREATE INDEX carbs_by_time ON carbs (timestamp_ms)",
        """CREATE TABLE twin_states (
            timestamp_ms INTEGER PRIMARY KEY,
            state_json TEXT NOT NULL
        )""",
        """CREATE TABLE recommendations (
            id INTEGER PRIMARY KEY,
            created_at_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            payload_json TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'confirmed', 'declined', 'expired', 'superseded')),
            decided_at_ms INTEGER
        )""",
        "CREATE INDEX recommendations_by_time ON recommendations (created_at_ms)",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            message TEXT NOT NULL,
            raised_at_ms INTEGER NOT NULL,
            cleared_at_ms INTEGER,
            snoozed_until_ms INTEGER
        )""",
        "CREATE INDEX alerts_open ON alerts (kind) WHERE cleared_at_ms IS NULL",
        """CREATE TABLE daily_summaries (
            day TEXT PRIMARY KEY,
            summary_json TEXT NOT NULL
        )""",
    ),
    # 2: keep only the latest twin state (it is several KB); hourly parameter snapshots for the settings review
    (
        """CREATE TABLE twin_parameters (
            timestamp_ms INTEGER PRIMARY KEY,
            parameters_json TEXT NOT NULL
        )""",
        "DELETE FROM twin_states WHERE timestamp_ms < (SELECT MAX(timestamp_ms) FROM twin_states)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
