"""Baseline forecasters: one interface, sane outputs, causal online intervals, and Loop's effect parts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.forecast.baselines import (
    LastValueForecaster,
    LinearForecaster,
    LoopEffectForecaster,
    OnlineResidualQuantiles,
    TwinForecaster,
)
from models.twin.twin import TwinSettings

from .synthetic_glucose_traces import make_trace

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)
H = (30.0, 60.0, 90.0, 120.0)


def _feed_line(method, slope: float, n: int = 12, start: float = 120.0) -> None:
    for k in range(n):
        method.observe_glucose(5.0 * k, start + slope * 5.0 * k)


@pytest.mark.parametrize("factory", [LastValueForecaster, LinearForecaster, lambda: LoopEffectForecaster(SETTINGS),
                                     lambda: TwinForecaster(SETTINGS, n_samples=40)])
def test_every_method_forecasts_all_horizons_with_ordered_intervals(factory) -> None:
    method = factory()
    empty = method.forecast(0.0, H)
    assert np.all(np.isnan(empty.mean_mg_dl))
    _feed_line(method, 0.5)
    fc = method.forecast(55.0, H)
    assert fc.horizons_min.tolist() == list(H) and fc.issued_at_minute == 55.0
    assert np.all(np.isfinite(fc.mean_mg_dl))
    assert np.all(fc.lower_95_mg_dl <= fc.mean_mg_dl) and np.all(fc.mean_mg_dl <= fc.upper_95_mg_dl)
    assert np.all((fc.mean_mg_dl >= 39) & (fc.mean_mg_dl <= 401))


def test_last_value_and_linear_on_a_straight_line() -> None:
    last, linear = LastValueForecaster(), LinearForecaster()
    for m in (last, linear):
        _feed_line(m, 1.0)
    assert last.forecast(55.0, H).mean_mg_dl.tolist() == [175.0] * 4
    assert linear.forecast(55.0, [30.0, 60.0]).mean_mg_dl == pytest.approx([205.0, 235.0])
    # forecast issued 10 minutes after the last reading still extrapolates from that reading
    assert linear.forecast(65.0, [30.0]).mean_mg_dl[0] == pytest.approx(215.0)


def test_online_intervals_are_learnt_only_from_observed_targets() -> None:
    q = OnlineResidualQuantiles(min_count=5)
    horizons = np.array([30.0])
    for k in range(10):
        q.record(5.0 * k, horizons, np.array([100.0]))
    assert q.residuals == {}  # nothing observed yet: nothing learnt
    low, high = q.interval(horizons, np.array([100.0]))
    assert (low[0], high[0]) == (75.0, 125.0)
    for k in range(6, 16):
        q.observe(5.0 * k, 110.0)
    assert len(q.residuals[30.0]) == 10 and set(q.residuals[30.0]) == {10.0}
    low, high = q.interval(horizons, np.array([100.0]))
    assert low[0] == pytest.approx(110.0) and high[0] == pytest.approx(110.0)
    assert len(q.pending) == 0


def test_baseline_intervals_calibrate_online_on_a_noisy_trace() -> None:
    trace = make_trace(hours=24, seed=5)
    method = LinearForecaster()
    inside, total = 0, 0
    for k, minute in enumerate(trace.minutes):
        method.observe_glucose(minute, trace.cgm_mg_dl[k])
        fc = method.forecast(minute, [30.0])
        target = k + 6
        if k > 100 and target < len(trace.minutes):
            total += 1
            inside += fc.lower_95_mg_dl[0] <= trace.cgm_mg_dl[target] <= fc.upper_95_mg_dl[0]
    assert 0.8 <= inside / total <= 1.0


def test_loop_effects_explain_the_prediction() -> None:
    loop = LoopEffectForecaster(SETTINGS)
    for k in range(7):
        loop.observe_glucose(5.0 * k, 150.0)
    loop.observe_bolus(30.0, 2.0)
    loop.observe_carbs(30.0, 20.0)
    effects = loop.effects(30.0, np.array([60.0, 360.0]))
    # after the insulin and carbs are fully absorbed: -ISF*2 U + CSF*20 g = -100 + 100
    assert effects["insulin"][1] == pytest.approx(-100.0, abs=0.5)
    assert effects["carbs"][1] == pytest.approx(100.0, abs=0.5)
    assert effects["momentum"][1] == pytest.approx(0.0)
    assert effects["prediction"][1] == pytest.approx(150.0 + effects["insulin"][1] + effects["carbs"][1]
                                                     + effects["retrospective"][1], abs=1.0)


def test_loop_counts_a_suspension_as_less_insulin() -> None:
    plain, suspended = LoopEffectForecaster(SETTINGS), LoopEffectForecaster(SETTINGS)
    for m in (plain, suspended):
        for k in range(7):
            m.observe_glucose(5.0 * k, 120.0)
    suspended.observe_basal(0.0, 0.0)
    a = plain.forecast(30.0, [120.0]).mean_mg_dl[0]
    b = suspended.forecast(30.0, [120.0]).mean_mg_dl[0]
    assert b > a


def test_loop_retrospective_correction_follows_unexplained_rise() -> None:
    loop = LoopEffectForecaster(SETTINGS)
    for k in range(7):
        loop.observe_glucose(5.0 * k, 100.0 + 2.0 * 5 * k)  # rising 2 mg/dL/min with nothing to explain it
    effects = loop.effects(30.0, np.array([60.0]))
    assert effects["retrospective"][0] > 30.0
    assert not math.isnan(effects["prediction"][0])


def test_interval_scaler_widens_too_narrow_model_intervals_causally() -> None:
    from models.forecast.baselines import OnlineIntervalScaler

    scaler = OnlineIntervalScaler(min_count=10)
    h = np.array([30.0])
    for k in range(40):
        scaler.record(5.0 * k, h, np.array([100.0]), np.array([95.0]), np.array([105.0]))
    assert scaler.scale(30.0) == 1.0  # nothing observed yet
    for k in range(6, 46):
        scaler.observe(5.0 * k, 100.0 + (15.0 if k % 2 else -15.0))  # errors 3x the half-width
    assert scaler.scale(30.0) == pytest.approx(3.0)
    assert not scaler.pending


def test_twin_forecaster_intervals_are_rescaled_online() -> None:
    trace = make_trace(hours=10, seed=8)
    plain, calibrated = (TwinForecaster(SETTINGS, n_samples=30, calibrate_intervals=c) for c in (False, True))
    for k, minute in enumerate(trace.minutes):
        for m in (plain, calibrated):
            m.observe_glucose(minute, trace.cgm_mg_dl[k])
            fc = m.forecast(minute, [30.0])
    assert calibrated.scaler is not None and len(calibrated.scaler.scores[30.0]) > 50
    assert np.isfinite(fc.upper_95_mg_dl).all()
    assert 0.5 <= calibrated.scaler.scale(30.0) <= 4.0
