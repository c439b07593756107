"""Per-reading cost of the hub's forecasting, ONNX load time and memory, against the twin alone.

Run:  .venv/bin/python -m pytest tests/models/test_bench_forecaster.py -m benchmark --benchmark-enable -s

Cases (each call = one new 5-min CGM reading, with the meal bolus and carbs when they come):
* ``twin_update (baseline)``: the twin's UKF update alone;
* ``twin_update+onnx_forecast``: the twin's update plus the ONNX forecaster's observe + forecast (features,
  inference, online conformal bands) -- the goal is p99 < 5 ms;
* ``hub_full``: the hub's method as replayed (ONNX + the twin's 100-sample what-if + blend + calibration).
Load: time to verify the SHA-256 and open the ONNX session, and the resident-memory growth, each measured in
a fresh interpreter, next to constructing a twin (the baseline). Nothing here asserts a time.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from models.forecast.onnx_forecaster import HubForecaster, OnnxForecaster
from models.twin.twin import DigitalTwin, TwinSettings

from .synthetic_glucose_traces import make_trace

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)
CASES = ("twin_update (baseline)", "twin_update+onnx_forecast", "hub_full")


def _report(benchmark, name: str) -> None:
    data = getattr(getattr(benchmark, "stats", None), "stats", None)
    if data is not None and getattr(data, "data", None):
        ms = np.array(data.data) * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        benchmark.extra_info.update(p50_ms=round(float(p50), 4), p99_ms=round(float(p99), 4))
        print(f"\n{name:<28} per reading: p50 {p50:.3f} ms  p99 {p99:.3f} ms  (n={ms.size})")


@pytest.mark.benchmark
@pytest.mark.parametrize("name", CASES)
def test_cost_per_reading(benchmark, name: str) -> None:
    trace = make_trace(hours=24, seed=11)
    steps = itertools.cycle(list(zip(trace.cgm_mg_dl, trace.bolus_u, trace.carbs_g)))
    clock = itertools.count(0)
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    onnx = OnnxForecaster(SETTINGS)
    hub = HubForecaster(SETTINGS)
    onnx.observe_basal(0.0, 1.0)
    hub.observe_basal(0.0, 1.0)
    out: list[object] = []

    def one_reading() -> None:
        glucose, bolus, carbs = (float(v) for v in next(steps))
        minute = 5.0 * next(clock)
        if name == "hub_full":
            if bolus:
                hub.observe_bolus(minute, bolus)
            if carbs:
                hub.observe_carbs(minute, carbs)
            hub.observe_glucose(minute, glucose)
            out.append(hub.forecast(minute))
            return
        twin.update(glucose, minute, insulin_u=bolus, carbs_g=carbs)
        if name == "twin_update+onnx_forecast":
            if bolus:
                onnx.observe_bolus(minute, bolus)
            if carbs:
                onnx.observe_carbs(minute, carbs)
            onnx.observe_glucose(minute, glucose)
            out.append(onnx.forecast(minute))

    for _ in range(40):  # warm: fill most of the 2-h window and start the online calibration
        one_reading()
    benchmark(one_reading)
    assert np.isfinite(twin.x).all()
    if out:
        assert np.isfinite(out[-1].mean_mg_dl).all()  # type: ignore[attr-defined]
    _report(benchmark, name)


_LOAD_SCRIPT = """
import json, time, gc
def rss_kb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
import numpy, onnxruntime
from models.twin.twin import DigitalTwin, TwinSettings
from models.forecast import onnx_forecaster as of
gc.collect()
r0, t0 = rss_kb(), time.perf_counter()
twin = DigitalTwin.from_therapy_settings(TwinSettings(1.0, 50.0, 10.0))
t1, r1 = time.perf_counter(), rss_kb()
model = of.load_model()
model.predict_change(numpy.zeros((1, len(model.sidecar['feature_names'])), dtype='float32'))
t2, r2 = time.perf_counter(), rss_kb()
print(json.dumps({'twin_ms': 1e3 * (t1 - t0), 'twin_rss_kb': r1 - r0, 'onnx_ms': 1e3 * (t2 - t1), 'onnx_rss_kb': r2 - r1}))
"""


@pytest.mark.benchmark
def test_onnx_load_time_and_memory_vs_twin(request: pytest.FixtureRequest) -> None:
    runs = []
    repeats = 1 if request.config.getoption("benchmark_disable", True) else 3
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    print(f"\n{'component':<34}{'load ms (median)':>24}{'RSS delta MiB':>16}")
    print(f"{'twin construction (baseline)':<34}{med['twin_ms']:>24.1f}{med['twin_rss_kb'] / 1024:>16.1f}")
    print(f"{'ONNX verify+session+1st run':<34}{med['onnx_ms']:>24.1f}{med['onnx_rss_kb'] / 1024:>16.1f}")
    assert all(np.isfinite(v) for v in med.values())
