"""Relational storage for the cloud service: SQLite (embedded default, WAL) or PostgreSQL (psycopg 3).

One schema, written once with ``?`` placeholders and portable types, and a tiny dialect layer that rewrites
what differs (placeholders, ``BLOB``/``BYTEA``, row locks, hash partitions). Health data tables are keyed by
``patient_id`` first; on PostgreSQL ``envelopes`` and ``records`` are ``PARTITION BY HASH (patient_id)`` so
the same shard key carries over to Citus or a distributed Postgres.

Usage::

    db = Database.sqlite("cloud.db")            # or Database.postgres("host=127.0.0.1 port=5433 dbname=x")
    db.create_schema()
    with db.transaction() as tx:                # commits on success, rolls back on exception
        tx.execute("INSERT INTO clinics (clinic_id, name, created_ms) VALUES (?, ?, ?)", ("c1", "Clinic", 0))
        row = tx.one("SELECT name FROM clinics WHERE clinic_id = ?", ("c1",))

``tx.one``/``tx.all`` return plain tuples. ``tx.for_update`` is `` FOR UPDATE`` on PostgreSQL and empty on
SQLite (where a transaction already holds the database's single write lock).
"""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Database", "Tx", "SCHEMA", "PARTITIONED_TABLES"]

PARTITIONED_TABLES = ("envelopes", "records")
PG_HASH_PARTITIONS = 8

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS clinics (
        clinic_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS clinicians (
        clinician_id TEXT PRIMARY KEY, clinic_id TEXT NOT NULL REFERENCES clinics(clinic_id),
        email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, created_ms BIGINT NOT NULL,
        disabled_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        token_hash TEXT PRIMARY KEY, role TEXT NOT NULL, subject_id TEXT NOT NULL, clinic_id TEXT,
        patient_id TEXT, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, revoked_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS patients (
        patient_id TEXT PRIMARY KEY, display_name TEXT, created_ms BIGINT NOT NULL, erased_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS consents (
        patient_id TEXT NOT NULL, clinic_id TEXT NOT NULL, granted_ms BIGINT NOT NULL, revoked_ms BIGINT,
        PRIMARY KEY (patient_id, clinic_id))""",
    """CREATE TABLE IF NOT EXISTS enrollment_codes (
        code_hash TEXT PRIMARY KEY, patient_id TEXT NOT NULL, clinic_id TEXT NOT NULL,
        created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, used_ms BIGINT, device_id TEXT)""",
    """CREATE TABLE IF NOT EXISTS devices (
        device_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, enrolled_ms BIGINT NOT NULL,
        revoked_ms BIGINT, acked_seq BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS device_keys (
        device_key_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, public_key BLOB NOT NULL,
        created_ms BIGINT NOT NULL, retired_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS ingest_keys (
        key_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, wrapped_private_key BLOB,
        created_ms BIGINT NOT NULL, retired_ms BIGINT, destroyed_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS patient_keys (
        patient_id TEXT PRIMARY KEY, wrapped_key BLOB, created_ms BIGINT NOT NULL, destroyed_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS envelopes (
        patient_id TEXT NOT NULL, device_id TEXT NOT NULL, seq BIGINT NOT NULL, key_id TEXT NOT NULL,
        fingerprint BLOB NOT NULL, received_ms BIGINT NOT NULL, n_records BIGINT NOT NULL,
        PRIMARY KEY (patient_id, device_id, seq))""",
    """CREATE TABLE IF NOT EXISTS records (
        patient_id TEXT NOT NULL, record_type TEXT NOT NULL, time_ms BIGINT NOT NULL, device_id TEXT NOT NULL,
        seq BIGINT NOT NULL, idx BIGINT NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
        PRIMARY KEY (patient_id, device_id, seq, idx))""",
    """CREATE INDEX IF NOT EXISTS records_by_type_time ON records (patient_id, record_type, time_ms)""",
    """CREATE TABLE IF NOT EXISTS idempotency (
        device_id TEXT NOT NULL, idem_key TEXT NOT NULL, fingerprint BLOB NOT NULL, created_ms BIGINT NOT NULL,
        PRIMARY KEY (device_id, idem_key))""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        entry_id BIGINT PRIMARY KEY, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        patient_id TEXT, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)""",
)


# The audit log is append-only in the database itself too (an attacker with raw file access can drop these,
# which is why the log is also hash-chained: see audit.verify).
APPEND_ONLY_SQLITE = (
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
)
APPEND_ONLY_POSTGRES = (
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
)


class Tx:
    """One open transaction. SQL uses ``?`` placeholders on every dialect."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect
        self.for_update = " FOR UPDATE" if dialect == "postgres" else ""

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return self._cursor.rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._cursor.executemany(self._sql(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cursor.execute(self._sql(sql), tuple(params))
        row = self._cursor.fetchone()
        return None if row is None else tuple(_plain(v) for v in row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), tuple(params))
        return [tuple(_plain(v) for v in row) for row in self._cursor.fetchall()]


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, (memoryview, bytearray)) else value


class Database:
    """A connection source with one ``transaction()`` API for SQLite and PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.description = dialect

    # --- constructors ----------------------------------------------------------------------------------------
    @classmethod
    def sqlite(cls, path: str | Path) -> Database:
        """A real SQLite file in WAL mode; writers are serialised by one lock (SQLite allows one writer)."""
        return _SqliteDatabase(Path(path))

    @classmethod
    def postgres(cls, dsn: str, pool_size: int = 8) -> Database:
        """PostgreSQL through psycopg 3 (``pip install 'psycopg[binary]'``), a small fixed connection pool."""
        return _PostgresDatabase(dsn, pool_size)

    # --- interface -------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Tx]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def create_schema(self) -> None:
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(self._ddl(statement))
            for statement in APPEND_ONLY_POSTGRES if self.dialect == "postgres" else APPEND_ONLY_SQLITE:
                tx._cursor.execute(statement)  # noqa: SLF001 - DDL with literal '?'-free bodies
            if self.dialect == "postgres":
                for table in PARTITIONED_TABLES:
                    for i in range(PG_HASH_PARTITIONS):
                        tx.execute(
                            f"CREATE TABLE IF NOT EXISTS {table}_p{i} PARTITION OF {table} "
                            f"FOR VALUES WITH (MODULUS {PG_HASH_PARTITIONS}, REMAINDER {i})"
                        )

    def _ddl(self, statement: str) -> str:
        if self.dialect != "postgres":
            return statement
        statement = re.sub(r"\bBLOB\b", "BYTEA", statement)
        match = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)
        if match and match.group(1) in PARTITIONED_TABLES:
            statement = statement.rstrip() + " PARTITION BY HASH (patient_id)"
        return statement


class _SqliteDatabase(Database):
    def __init__(self, path: Path) -> None:
        super().__init__("sqlite")
        self.path = path
        self.description = f"sqlite:{path}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cursor, "sqlite")
            except BaseException:
                self._conn.rollback()
                raise
            else:
                self._conn.commit()
            finally:
                cursor.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresDatabase(Database):
    def __init__(self, dsn: str, pool_size: int) -> None:
        super().__init__("postgres")
        import psycopg  # optional dependency: imported only when PostgreSQL is configured

        self.description = "postgres"
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all = [psycopg.connect(dsn, autocommit=False) for _ in range(pool_size)]
        for conn in self._all:
            self._pool.put(conn)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        conn = self._pool.get()
        try:
            with conn.cursor() as cursor:
                try:
                    yield Tx(cursor, "postgres")
                except BaseException:
                    conn.rollback()
                    raise
                else:
                    conn.commit()
        finally:
            self._pool.put(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.close()
