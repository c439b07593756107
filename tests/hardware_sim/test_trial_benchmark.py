"""Trial engine speed: all rows advanced together (vectorised) against one row at a time (named baseline).

Run: .venv/bin/python -m pytest tests/hardware_sim/test_trial_benchmark.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

import pytest

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.trial.engine import TrialConfig, run_trial

CONFIG = TrialConfig(days=0.1, seeds=(1,), scenario="standard")
COHORT = "adults"


@pytest.mark.benchmark(group="trial-engine-10-adults-0.1-day")
def test_benchmark_vectorised_rows(benchmark) -> None:
    cohort = load_cohort(COHORT)
    result = benchmark(run_trial, ["basal-bolus"], cohort, CONFIG)
    assert result.arms["basal-bolus"].n_rows == 10


@pytest.mark.benchmark(group="trial-engine-10-adults-0.1-day")
def test_benchmark_baseline_one_row_at_a_time(benchmark) -> None:
    cohort = load_cohort(COHORT)
    result = benchmark(run_trial, ["basal-bolus"], cohort, CONFIG, chunk_size=1)
    assert result.arms["basal-bolus"].n_rows == 10
