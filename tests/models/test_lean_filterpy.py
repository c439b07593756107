"""filterpy on the hub without scipy.stats: the twin's filters load lean, and filterpy.stats still works when used."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_the_twins_filters_load_without_scipy_stats() -> None:
    out = _run("import sys, models.twin.filter, models.forecast.onnx_forecaster, edge.agent.pipeline; "
               "print('scipy.stats' in sys.modules)")
    assert out == "False"


def test_filterpy_stats_loads_on_first_use_and_gives_the_real_answers() -> None:
    code = """
import sys
import numpy as np
from models.twin.lean_filterpy import UnscentedKalmanFilter, MerweScaledSigmaPoints
assert 'scipy.stats' not in sys.modules
ukf = UnscentedKalmanFilter(dim_x=1, dim_z=1, dt=1.0, hx=lambda x: x, fx=lambda x, dt: x,
                            points=MerweScaledSigmaPoints(1, 0.1, 2.0, 0.0))
ukf.x, ukf.P, ukf.R, ukf.Q = np.array([0.0]), np.eye(1), np.eye(1), np.eye(1) * 1e-3
ukf.predict(); ukf.update(np.array([0.5]))
lik = ukf.log_likelihood  # filterpy computes it with filterpy.stats.logpdf: the real module loads now
from scipy.stats import multivariate_normal
expected = multivariate_normal.logpdf(0.5, mean=0.0, cov=ukf.S[0, 0])
import filterpy.stats
print(abs(lik - expected) < 1e-9, 'scipy.stats' in sys.modules, type(filterpy.stats).__name__,
      filterpy.stats.norm_cdf((0, 1), 0, 1) > 0)
"""
    assert _run(code).split() == ["True", "True", "module", "True"]


def test_the_stand_in_is_not_installed_over_a_real_module() -> None:
    out = _run("import filterpy.stats, sys; real = sys.modules['filterpy.stats']; "
               "import models.twin.lean_filterpy as lean; lean.defer_filterpy_stats(); "
               "print(sys.modules['filterpy.stats'] is real)")
    assert out == "True"
