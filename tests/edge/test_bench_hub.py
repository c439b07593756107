"""Hub benchmarks with pytest-benchmark, side by side in one group each (run: pytest -m benchmark
--benchmark-enable tests/edge/test_bench_hub.py), and a smoke run of ``python -m edge.bench_hub`` so the script
keeps working. No timed assertions: the numbers are for reading, not for failing a build."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import pytest
import sqlite_utils

from cloud_sync.outbox import Outbox
from edge.agent.pipeline import HubPipeline
from edge.agent.replay import replay
from edge.bench_hub import format_table, hub_config, main, readings, run
from edge.store import HubStore


@pytest.mark.benchmark(group="per reading")
def test_bench_store_only_add_reading(benchmark, tmp_path: Path) -> None:
    """Baseline: the reading alone, one durable commit."""
    stream = readings(100_000)
    with HubStore(tmp_path / "hub.sqlite") as store:
        benchmark.pedantic(lambda: store.add_reading(next(stream)), rounds=200, iterations=1, warmup_rounds=5)
        assert store.count_readings() >= 1  # 205 when enabled; once with --benchmark-disable


@pytest.mark.benchmark(group="per reading")
def test_bench_full_pipeline_on_reading(benchmark, tmp_path: Path) -> None:
    """Reading + outbox + UKF twin + forecast + alerts (+ advice when due), one durable commit."""
    stream = readings(100_000)
    path = tmp_path / "hub.sqlite"
    store = HubStore(path)
    clock = [0]
    pipeline = HubPipeline(store, hub_config(path), outbox=Outbox(sqlite_utils.Database(store.conn)),
                           now_ms=lambda: clock[0])

    def one() -> None:
        reading = next(stream)
        clock[0] = reading.timestamp_ms + 30_000
        assert pipeline.on_reading(reading).stored

    try:
        benchmark.pedantic(one, rounds=200, iterations=1, warmup_rounds=5)
    finally:
        store.close()


@pytest.mark.benchmark(group="a day of readings (288)")
def test_bench_day_store_only_one_commit(benchmark, tmp_path: Path) -> None:
    days = count()
    with HubStore(tmp_path / "hub.sqlite") as store:
        def one_day() -> None:
            with store.transaction():
                for reading in readings(288, first_offset=288 * next(days)):
                    store.add_reading(reading)
        benchmark.pedantic(one_day, rounds=5, iterations=1)


@pytest.mark.benchmark(group="a day of readings (288)")
def test_bench_day_replay_with_ekf_twin(benchmark, tmp_path: Path) -> None:
    days = count()
    path = tmp_path / "hub.sqlite"
    with HubStore(path) as store:
        outbox = Outbox(sqlite_utils.Database(store.conn))
        twin = None

        def one_day() -> None:
            nonlocal twin
            result, twin = replay(store, hub_config(path), readings(288, first_offset=288 * next(days)),
                                  outbox=outbox, twin=twin)
            assert result.stored == 288

        benchmark.pedantic(one_day, rounds=5, iterations=1)


def test_the_benchmark_script_runs_and_prints_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--readings", "12", "--year-readings", "600", "--skip-rss"]) == 0
    table = capsys.readouterr().out
    for row in ("store only (HubStore.add_reading)", "full pipeline (HubPipeline.on_reading)",
                "store only, 1 commit/day", "replay: EKF twin on every reading", "replay: EKF twin over the last 14",
                "(extrapolated)"):
        assert row in table, row


def test_the_benchmark_results_hold_what_the_table_prints() -> None:
    import argparse

    args = argparse.Namespace(readings=10, year_readings=300, skip_twin_year=True, skip_rss=True, warmup_s=0,
                              acceleration=60.0, profile=True)
    results = run(args)
    latency = results["latency_ms"]
    assert set(latency) == {"store only (HubStore.add_reading)", "full pipeline (HubPipeline.on_reading)",
                            "full pipeline, auto-advice off"}
    for row in latency.values():
        assert 0 < row["p50"] <= row["p99"]
    assert results["year"]["readings"] == 300
    assert results["pipeline_parts_ms_per_reading"]["twin UKF update"] > 0
    assert "replay: EKF twin on every reading, 1 commit/day" not in results["year"]
    assert "a year of readings (300)" in format_table(results)
