"""The hub's outbox: records waiting to be sent, one cursor per destination (pure storage, no network).

Loss-free rules (see shared/reference/cloud.md):
* ``enqueue`` runs on the caller's connection, inside the caller's transaction, so a record and its outbox
  row commit or roll back together (pass ``conn=``; the hub's store and the outbox share one SQLite file).
* Sequence numbers come from ``INTEGER PRIMARY KEY AUTOINCREMENT``: never reused, even after ``prune``; a
  rolled-back enqueue leaves no gap because the counter rolls back with it.
* ``read_batch`` returns records after the destination's cursor, in order, bounded by count and bytes.
* ``acknowledge`` moves a destination's cursor to the contiguous high-water mark the receiver confirmed; it
  never moves backwards (``rewind`` does, explicitly, when a receiver lost data) nor past the last record.
* The file is a real SQLite database in WAL mode with ``synchronous=FULL`` (a committed record survives
  power loss) and a busy timeout, so the real-time writer and the background sender do not block each other.

Example::

    outbox = Outbox.open("hub.db")
    with outbox.db.conn:                                   # the caller's transaction
        outbox.db.conn.execute("INSERT INTO readings ...")
        seq = outbox.enqueue(payload_bytes, conn=outbox.db.conn)
    batch = outbox.read_batch("cloud", max_records=100)
    outbox.acknowledge("cloud", batch[-1].seq)
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

__all__ = ["Outbox", "OutboxRecord", "configure_connection", "DEFAULT_DESTINATION"]

DEFAULT_DESTINATION = "cloud"


def configure_connection(conn: sqlite3.Connection) -> None:
    """WAL, synchronous=FULL, 5 s busy timeout: call on every connection that writes the hub database."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    record_type: str
    payload: bytes
    created_ms: int


class Outbox:
    def __init__(self, db: sqlite_utils.Database, destinations: Sequence[str] = (DEFAULT_DESTINATION,)) -> None:
        self.db = db
        self._lock = threading.RLock()
        configure_connection(db.conn)
        self.ensure_schema()
        for destination in destinations:
            self.add_destination(destination)

    @classmethod
    def open(cls, path: str | Path, destinations: Sequence[str] = (DEFAULT_DESTINATION,)) -> Outbox:
        """Open (creating) the outbox in the SQLite file ``path``; the connection may be used from any thread."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
        return cls(sqlite_utils.Database(conn), destinations)

    def ensure_schema(self) -> None:
        with self._lock, self.db.conn:
            self.db.conn.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, record_type TEXT NOT NULL, "
                "payload BLOB NOT NULL, created_ms INTEGER NOT NULL)")
            self.db.conn.execute(
                "CREATE TABLE IF NOT EXISTS outbox_cursors (destination TEXT PRIMARY KEY, acked_seq INTEGER NOT NULL, "
                "updated_ms INTEGER NOT NULL)")

    def add_destination(self, destination: str, start_seq: int = 0) -> None:
        """Register a destination (idempotent); a new one starts after ``start_seq``."""
        with self._lock, self.db.conn:
            self.db.conn.execute("INSERT OR IGNORE INTO outbox_cursors (destination, acked_seq, updated_ms) "
                                 "VALUES (?, ?, ?)", (destination, start_seq, _now_ms()))

    @property
    def destinations(self) -> list[str]:
        return [row[0] for row in self.db.conn.execute("SELECT destination FROM outbox_cursors ORDER BY destination")]

    # --- writer side -------------------------------------------------------------------------------------
    def enqueue(self, payload: bytes, record_type: str = "summary", *, conn: sqlite3.Connection | None = None,
                created_ms: int | None = None) -> int:
        """Add a record; return its sequence number.

        With ``conn`` the insert joins that connection's open transaction and the caller commits (``with
        conn:``); the connection must be on the same database file. Without it, the outbox commits alone.
        """
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            raise ValueError("payload must be non-empty bytes")
        row = (record_type, bytes(payload), created_ms if created_ms is not None else _now_ms())
        sql = "INSERT INTO outbox (record_type, payload, created_ms) VALUES (?, ?, ?)"
        if conn is not None:
            return int(conn.execute(sql, row).lastrowid)
        with self._lock, self.db.conn:
            return int(self.db.conn.execute(sql, row).lastrowid)

    # --- sender side -------------------------------------------------------------------------------------
    def cursor(self, destination: str = DEFAULT_DESTINATION) -> int:
        """The destination's acknowledged high-water mark (every seq <= it was confirmed)."""
        with self._lock:
            row = self.db.conn.execute("SELECT acked_seq FROM outbox_cursors WHERE destination = ?",
                                       (destination,)).fetchone()
        if row is None:
            raise KeyError(f"unknown outbox destination {destination!r}")
        return int(row[0])

    def last_seq(self) -> int:
        """The largest sequence number ever issued (0 if none), including pruned records."""
        with self._lock:
            row = self.db.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

    def read_batch(self, destination: str = DEFAULT_DESTINATION, max_records: int = 100,
                   max_bytes: int = 1_000_000, after_seq: int | None = None) -> list[OutboxRecord]:
        """Records after the cursor (or ``after_seq``), in order; at least one record even if it alone is
        bigger than ``max_bytes``."""
        start = self.cursor(destination) if after_seq is None else after_seq
        out: list[OutboxRecord] = []
        size = 0
        with self._lock:
            rows = self.db.conn.execute(
                "SELECT seq, record_type, payload, created_ms FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (start, max_records)).fetchall()
        for seq, record_type, payload, created_ms in rows:
            if out and size + len(payload) > max_bytes:
                break
            out.append(OutboxRecord(seq, record_type, bytes(payload), created_ms))
            size += len(payload)
        return out

    def pending_count(self, destination: str = DEFAULT_DESTINATION) -> int:
        cursor = self.cursor(destination)
        with self._lock:
            return int(self.db.conn.execute("SELECT COUNT(*) FROM outbox WHERE seq > ?", (cursor,)).fetchone()[0])

    def acknowledge(self, destination: str, high_water_seq: int) -> int:
        """Advance the cursor to ``high_water_seq`` (clamped to ``last_seq``; never backwards). Returns it."""
        target = min(int(high_water_seq), self.last_seq())
        with self._lock, self.db.conn:
            self.db.conn.execute(
                "UPDATE outbox_cursors SET acked_seq = MAX(acked_seq, ?), updated_ms = ? WHERE destination = ?",
                (target, _now_ms(), destination))
        return self.cursor(destination)

    def rewind(self, destination: str, seq: int) -> int:
        """Move the cursor back (the receiver lost data, e.g. restored a backup). Refused if records after
        ``seq`` were already pruned: they cannot be re-sent."""
        with self._lock, self.db.conn:
            oldest = self.db.conn.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
            cursor = self.cursor(destination)
            if seq < cursor and (oldest is None or oldest > seq + 1):
                raise ValueError(f"cannot rewind {destination} to {seq}: records were pruned")
            self.db.conn.execute("UPDATE outbox_cursors SET acked_seq = ?, updated_ms = ? WHERE destination = ?",
                                 (max(0, seq), _now_ms(), destination))
        return self.cursor(destination)

    def reserve_through(self, seq: int) -> int:
        """Make every future sequence number larger than ``seq``; returns ``last_seq()``.

        For a hub restored from an old backup: the receiver already holds numbers this file never issued, and
        reusing them for new records would be refused as replays. Skipped numbers are acknowledged as well."""
        with self._lock, self.db.conn:
            row = self.db.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            if row is None:
                self.db.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (seq,))
            elif row[0] < seq:
                self.db.conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'", (seq,))
        return self.last_seq()

    def prune(self, keep_last: int = 0) -> int:
        """Delete records every destination acknowledged (except the newest ``keep_last`` of them)."""
        with self._lock, self.db.conn:
            row = self.db.conn.execute("SELECT MIN(acked_seq) FROM outbox_cursors").fetchone()
            if row is None or row[0] is None:
                return 0
            return self.db.conn.execute("DELETE FROM outbox WHERE seq <= ?", (int(row[0]) - keep_last,)).rowcount

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
