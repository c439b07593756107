"""Hub outbox on a real SQLite file: transactional enqueue, ordering, bounded batches, cursors, restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.outbox import Outbox, configure_connection


def test_file_is_wal_with_synchronous_full(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "hub.db")
    assert outbox.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outbox.db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_enqueue_joins_the_callers_transaction(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    outbox = Outbox.open(path)
    conn = sqlite3.connect(path)
    configure_connection(conn)
    conn.execute("CREATE TABLE readings (t INTEGER, mg_dl INTEGER)")
    with pytest.raises(RuntimeError):
        with conn:
            conn.execute("INSERT INTO readings VALUES (1, 100)")
            outbox.enqueue(b"reading 1", conn=conn)
            raise RuntimeError("power cut before commit")
    assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0
    assert outbox.read_batch("cloud") == []
    with conn:
        conn.execute("INSERT INTO readings VALUES (2, 110)")
        seq = outbox.enqueue(b"reading 2", conn=conn)
    assert [r.seq for r in outbox.read_batch("cloud")] == [seq] == [1]  # the rolled-back seq left no gap


def test_sequence_numbers_never_reused_after_prune_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    outbox = Outbox.open(path)
    seqs = [outbox.enqueue(f"r{i}".encode()) for i in range(5)]
    outbox.acknowledge("cloud", 5)
    assert outbox.prune() == 5
    outbox.close()
    reopened = Outbox.open(path)
    assert reopened.cursor("cloud") == 5
    assert reopened.enqueue(b"after") == 6 > max(seqs)
    assert reopened.last_seq() == 6


def test_batches_are_ordered_and_bounded(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "hub.db")
    for i in range(10):
        outbox.enqueue(bytes(100) + bytes([i]))
    assert [r.seq for r in outbox.read_batch("cloud", max_records=4)] == [1, 2, 3, 4]
    assert [r.seq for r in outbox.read_batch("cloud", max_records=100, max_bytes=250)] == [1, 2]
    assert len(outbox.read_batch("cloud", max_bytes=1)) == 1  # never stuck on one big record


def test_cursors_are_per_destination_monotonic_and_clamped(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "hub.db", destinations=("cloud", "backup"))
    for i in range(6):
        outbox.enqueue(b"x%d" % i)
    assert outbox.acknowledge("cloud", 4) == 4
    assert outbox.acknowledge("cloud", 2) == 4  # stale ack cannot move it back
    assert outbox.acknowledge("cloud", 99) == 6  # nor past what exists
    assert outbox.cursor("backup") == 0
    assert [r.seq for r in outbox.read_batch("backup", max_records=2)] == [1, 2]
    assert outbox.prune() == 0  # backup has not acknowledged anything
    outbox.acknowledge("backup", 3)
    assert outbox.prune() == 3
    with pytest.raises(ValueError):
        outbox.rewind("cloud", 1)  # 2..3 are gone: cannot resend them
    assert outbox.rewind("cloud", 3) == 3


def test_unknown_destination_and_bad_payload_raise(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "hub.db")
    with pytest.raises(KeyError):
        outbox.cursor("nowhere")
    with pytest.raises(ValueError):
        outbox.enqueue(b"")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["enqueue", "send", "restart"]), st.integers(0, 30)), max_size=40))
def test_every_record_is_delivered_in_order_and_none_is_lost(tmp_path_factory, ops) -> None:
    """Model check: under any interleaving of enqueues, sends with acks (some stale) and restarts, first
    deliveries come in sequence order, an acknowledged record is never offered again, and every record is
    either acknowledged or still offered."""
    path = tmp_path_factory.mktemp("ob") / "hub.db"
    outbox = Outbox.open(path)
    enqueued: list[int] = []
    first_delivery: list[int] = []
    acked = 0
    for op, n in ops:
        if op == "enqueue":
            enqueued.append(outbox.enqueue(b"p%d" % n))
        elif op == "send":
            batch = outbox.read_batch("cloud", max_records=1 + n % 5)
            assert all(r.seq > acked for r in batch)
            first_delivery.extend(r.seq for r in batch if r.seq not in first_delivery)
            if batch and n % 3:  # otherwise the acknowledgement was lost
                acked = outbox.acknowledge("cloud", batch[-1].seq)
            assert outbox.acknowledge("cloud", n % (acked + 1)) == acked  # a stale ack changes nothing
        else:
            outbox.close()
            outbox = Outbox.open(path)
            assert outbox.cursor("cloud") == acked
    assert enqueued == list(range(1, len(enqueued) + 1))
    assert first_delivery == sorted(first_delivery)
    remaining = [r.seq for r in outbox.read_batch("cloud", max_records=1000)]
    assert list(range(1, acked + 1)) + remaining == enqueued


def test_reserve_through_skips_numbers_the_receiver_already_holds(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "hub.db")
    assert outbox.reserve_through(10) == 10  # empty outbox (e.g. a restored, older hub database)
    assert outbox.enqueue(b"new") == 11
    assert outbox.reserve_through(5) == 11  # never backwards
    outbox.acknowledge("cloud", 10)
    assert [r.seq for r in outbox.read_batch("cloud")] == [11]
