"""Per-reading cost of the twin's update: UKF vs EKF (the baseline), integrators and sigma-point handling.

Run:  .venv/bin/python -m pytest tests/models/test_bench_twin.py -m benchmark --benchmark-enable -s
The what-if benchmark measures the recommender-facing cost of four 3-h scenarios.
Each benchmark feeds one 5-min CGM reading per call to a twin that has already seen a synthetic day; the
printed line gives p50/p99 from the raw per-call timings. Baseline: the EKF (analytic Jacobian, Euler).
Without --benchmark-enable (the default in CI) each case runs once, as a smoke test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.twin import mvp_model
from models.twin.filter import MVPFilter
from models.twin.twin import DigitalTwin, TwinSettings

from .synthetic_glucose_traces import make_trace

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)
CASES = {
    "ekf_euler (baseline)": {"filter_kind": "ekf"},
    "ukf_euler_vectorised": {"filter_kind": "ukf"},
    "ukf_euler_per_sigma": {"filter_kind": "ukf", "vectorised_sigmas": False},
    "ukf_rk4_vectorised": {"filter_kind": "ukf", "integrator": "rk4"},
}


def _twin(case: dict) -> DigitalTwin:
    twin = DigitalTwin.from_therapy_settings(SETTINGS, filter_kind=case["filter_kind"])
    if len(case) > 1:
        f = twin.filter
        twin.filter = MVPFilter(twin.params, f.x, f.P, kind=case["filter_kind"],
                                integrator=case.get("integrator", "euler"),
                                vectorised_sigmas=case.get("vectorised_sigmas", True))
    return twin


@pytest.mark.benchmark
@pytest.mark.parametrize("name", list(CASES))
def test_twin_update_cost_per_reading(benchmark, name: str) -> None:
    trace = make_trace(hours=24, seed=11)
    twin = _twin(CASES[name])
    readings = itertools.cycle(list(zip(trace.cgm_mg_dl, trace.bolus_u, trace.carbs_g)))
    clock = itertools.count(0)

    def one_reading() -> None:
        glucose, bolus, carbs = next(readings)
        twin.update(float(glucose), 5.0 * next(clock), insulin_u=float(bolus), carbs_g=float(carbs))

    benchmark(one_reading)
    assert np.all(np.isfinite(twin.x))
    data = getattr(getattr(benchmark, "stats", None), "stats", None)
    if data is not None and getattr(data, "data", None):
        ms = np.array(data.data) * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        benchmark.extra_info.update(p50_ms=round(float(p50), 4), p99_ms=round(float(p99), 4))
        print(f"\n{name:<24} per reading: p50 {p50:.3f} ms  p99 {p99:.3f} ms  (n={ms.size})")


WHATIF_SAMPLES = {"what_if_200_samples": 200, "what_if_100_samples": 100}


@pytest.mark.benchmark
@pytest.mark.parametrize("name", list(WHATIF_SAMPLES))
def test_what_if_cost_four_scenarios_180_min(benchmark, name: str) -> None:
    """What the recommender pays to compare no action, a bolus, a meal and a suspension over 3 h."""
    from models.whatif import NO_ACTION, Scenario, what_if

    trace = make_trace(hours=6, seed=12)
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    for k, minute in enumerate(trace.minutes):
        twin.update(float(trace.cgm_mg_dl[k]), minute, insulin_u=float(trace.bolus_u[k]),
                    carbs_g=float(trace.carbs_g[k]))
    scenarios = (NO_ACTION, Scenario(bolus_u=2.0), Scenario(carbs_g=30.0),
                 Scenario(temp_basal_u_per_h=0.0, temp_basal_duration_min=60.0))
    result = benchmark(lambda: what_if(twin, *scenarios, horizon_min=180, n_samples=WHATIF_SAMPLES[name]))
    assert len(result) == 4 and all(np.isfinite(t.mean_mg_dl).all() for t in result)


DERIVATIVES = {"written-out equations (baseline)": mvp_model.derivatives_reference,
               "linear part as one matmul (run time)": mvp_model.derivatives}


@pytest.mark.benchmark
@pytest.mark.parametrize("name", list(DERIVATIVES))
def test_model_derivatives_cost_on_what_if_samples(benchmark, name: str) -> None:
    """The inner loop of every what-if and UKF step: dx/dt on 64 samples (the recommender's sample count)."""
    p = mvp_model.from_therapy_settings(1.0, 50.0, 10.0)
    x = np.tile(mvp_model.steady_state(p, 1.0, 140.0), (64, 1))
    x[:, mvp_model.D1] = 30.0
    result = benchmark(DERIVATIVES[name], x, p, 16.7, 0.0)
    assert np.allclose(result, mvp_model.derivatives_reference(x, p, 16.7, 0.0))
