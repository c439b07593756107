"""Consensus glycemic metrics: hand-checked values and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.glycemic_metrics import (
    METRIC_NAMES,
    GlucoseInputError,
    GlycemicSummary,
    glycemic_metrics,
    risk_transform,
    summarize_glucose,
)

glucose_values = st.one_of(st.floats(min_value=20.0, max_value=600.0), st.just(math.nan))
traces = arrays(np.float64, st.integers(min_value=1, max_value=300), elements=glucose_values)


def test_ranges_on_hand_counted_trace() -> None:
    # 10 readings: 2 below 54, 1 in 54-69, 4 in 70-180 (edges included), 2 in 181-250, 1 above 250; 2 missing.
    trace = [40, 53.9, 54, 70, 100, 180, 120, 180.5, 250, 251, np.nan, np.nan]
    s = summarize_glucose(trace)
    assert s.readings_count == 10 and s.expected_readings_count == 12
    assert s.time_below_54_pct == pytest.approx(20.0)
    assert s.time_54_69_pct == pytest.approx(10.0)
    assert s.time_below_70_pct == pytest.approx(30.0)
    assert s.time_in_range_70_180_pct == pytest.approx(40.0)
    assert s.time_181_250_pct == pytest.approx(20.0)
    assert s.time_above_180_pct == pytest.approx(30.0)
    assert s.time_above_250_pct == pytest.approx(10.0)
    assert s.sensor_active_pct == pytest.approx(100 * 10 / 12)
    assert s.days_of_wear_d == pytest.approx(12 * 5 / 1440)


def test_glycemia_risk_index_weighs_the_ranges_by_hand() -> None:
    # 20 readings: 1 below 54 (5 %), 2 in 54-69 (10 %), 2 in 181-250 (10 %), 1 above 250 (5 %), the rest in range:
    # 3.0 x 5 + 2.4 x 10 + 1.6 x 5 + 0.8 x 10 = 15 + 24 + 8 + 8 = 55.
    trace = [50.0, 60.0, 65.0, 200.0, 240.0, 300.0] + [120.0] * 14
    assert summarize_glucose(trace).gri == pytest.approx(55.0)
    assert summarize_glucose([120.0] * 5).gri == 0.0
    # a point of time below 54 outweighs a point of 181-250 by 3.0 / 0.8
    assert summarize_glucose([50.0] + [120.0] * 19).gri == pytest.approx(3.75 * summarize_glucose([200.0] + [120.0] * 19).gri)


def test_glycemia_risk_index_is_capped_at_100() -> None:
    assert summarize_glucose([40.0, 45.0, 60.0, 300.0]).gri == 100.0  # 3 x 50 + 2.4 x 25 + 1.6 x 25 = 250


def test_mean_sd_cv_gmi_by_hand() -> None:
    s = summarize_glucose([100.0, 150.0, 200.0, np.nan])
    assert s.mean_glucose_mg_dl == pytest.approx(150.0)
    assert s.sd_glucose_mg_dl == pytest.approx(50.0)  # sample SD of 100, 150, 200
    assert s.cv_pct == pytest.approx(100 * 50 / 150)
    assert s.gmi_pct == pytest.approx(3.31 + 0.02392 * 150)  # 6.898 %


def test_risk_indices_by_hand() -> None:
    # f(112.5) ~ 0 (the transform's centre); f(50) = 1.509*((ln 50)^1.084 - 5.381) = -1.5003 -> r = 22.51;
    # f(300) = 1.8424 -> r = 33.95 (worked on paper with 5 significant digits).
    assert abs(float(risk_transform(112.5))) < 1e-3
    low = summarize_glucose([50.0])
    assert low.lbgi == pytest.approx(22.51, rel=1e-3) and low.hbgi == 0.0
    high = summarize_glucose([300.0])
    assert high.hbgi == pytest.approx(33.95, rel=1e-3) and high.lbgi == 0.0
    mixed = summarize_glucose([50.0, 300.0, 112.5, 112.5])
    assert mixed.lbgi == pytest.approx(22.51 / 4, rel=1e-3)
    assert mixed.hbgi == pytest.approx(33.95 / 4, rel=1e-3)


def test_all_missing_gives_nan_metrics_and_zero_wear() -> None:
    s = summarize_glucose([np.nan] * 6)
    assert s.readings_count == 0 and s.sensor_active_pct == 0.0
    assert math.isnan(s.mean_glucose_mg_dl) and math.isnan(s.time_in_range_70_180_pct)
    assert math.isnan(s.lbgi)


def test_single_reading_has_no_sd() -> None:
    s = summarize_glucose([120.0])
    assert s.mean_glucose_mg_dl == 120.0 and math.isnan(s.sd_glucose_mg_dl) and math.isnan(s.cv_pct)


@pytest.mark.parametrize(
    "bad",
    [[100.0, -5.0], [100.0, 0.0], [100.0, math.inf], 120.0, ["a", "b"]],
)
def test_bad_input_is_a_typed_error(bad: object) -> None:
    with pytest.raises(GlucoseInputError):
        summarize_glucose(bad)  # type: ignore[arg-type]


def test_bad_interval_and_shape() -> None:
    with pytest.raises(GlucoseInputError):
        glycemic_metrics([100.0], sample_interval_min=0)
    with pytest.raises(GlucoseInputError):
        summarize_glucose([[100.0, 120.0]])


def test_to_dict_has_every_field_with_units_in_names() -> None:
    d = summarize_glucose([100.0, 200.0]).to_dict()
    assert tuple(d) == METRIC_NAMES
    assert set(glycemic_metrics([100.0, 200.0])) == set(METRIC_NAMES)
    assert isinstance(d["readings_count"], int)


@settings(max_examples=150, deadline=None)
@given(traces)
def test_ranges_partition_valid_readings(trace: np.ndarray) -> None:
    s = summarize_glucose(trace)
    if s.readings_count == 0:
        return
    parts = [s.time_below_54_pct, s.time_54_69_pct, s.time_in_range_70_180_pct, s.time_181_250_pct,
             s.time_above_250_pct]
    assert sum(parts) == pytest.approx(100.0)
    assert all(0.0 <= p <= 100.0 for p in parts)
    assert s.time_below_70_pct == pytest.approx(s.time_below_54_pct + s.time_54_69_pct)
    assert s.time_above_180_pct == pytest.approx(s.time_181_250_pct + s.time_above_250_pct)
    assert s.lbgi >= 0 and s.hbgi >= 0
    valid = trace[~np.isnan(trace)]
    assert valid.min() - 1e-9 <= s.mean_glucose_mg_dl <= valid.max() + 1e-9
    assert s.sensor_active_pct == pytest.approx(100.0 * valid.size / trace.size)


@settings(max_examples=100, deadline=None)
@given(traces, st.randoms(use_true_random=False))
def test_missing_readings_and_order_do_not_change_distribution_metrics(trace: np.ndarray, rnd) -> None:
    valid = trace[~np.isnan(trace)]
    if valid.size < 2:
        return
    shuffled = valid.copy()
    rnd.shuffle(shuffled)
    a = summarize_glucose(trace).to_dict()
    b = summarize_glucose(shuffled).to_dict()
    for name in METRIC_NAMES:
        if name in {"expected_readings_count", "sensor_active_pct", "days_of_wear_d"}:
            continue
        assert a[name] == pytest.approx(b[name], rel=1e-6, abs=1e-6, nan_ok=True), name


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (3, 40), elements=glucose_values))
def test_batch_rows_equal_single_traces(batch: np.ndarray) -> None:
    metrics = glycemic_metrics(batch)
    for row in range(batch.shape[0]):
        single: GlycemicSummary = summarize_glucose(batch[row])
        for name, value in single.to_dict().items():
            assert metrics[name][row] == pytest.approx(value, nan_ok=True), name
