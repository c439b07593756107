"""CGM sensor model: reproducibility, noise statistics against Breton & Kovatchev 2008, artefacts, limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hardware_sim.random_streams import RowStreams
from hardware_sim.sensor_model import (
    CgmSensorArray,
    CgmSensorParameters,
    SensorModelError,
    johnson_su_moments,
)

QUIET = dict(drift_enabled=False, sessions_enabled=False, dropout_start_probability=0.0,
             compression_probability_per_night=0.0)
DAY = 288  # 5-min samples per day


def test_same_seed_same_sensor_different_seed_different() -> None:
    a = CgmSensorArray(RowStreams.from_seed(3, 4), 2 * DAY)
    b = CgmSensorArray(RowStreams.from_seed(3, 4), 2 * DAY)
    c = CgmSensorArray(RowStreams.from_seed(4, 4), 2 * DAY)
    ig = np.full((4, 2 * DAY), 150.0)
    np.testing.assert_array_equal(a.read_trace(ig), b.read_trace(ig))
    assert not np.allclose(np.nan_to_num(a.noise_mg_dl), np.nan_to_num(c.noise_mg_dl))


def test_a_row_does_not_depend_on_its_neighbours() -> None:
    both = CgmSensorArray(RowStreams([7, 7], [11, 22]), DAY)
    alone = CgmSensorArray(RowStreams([7], [22]), DAY)
    ig = np.linspace(60, 300, DAY)
    np.testing.assert_array_equal(both.read_trace(np.stack([ig, ig]))[1], alone.read_trace(ig[None])[0])


def test_noise_statistics_match_breton_kovatchev() -> None:
    sensor = CgmSensorArray(RowStreams.from_seed(1, 40), 7 * DAY, CgmSensorParameters(**QUIET))
    e = sensor.noise_mg_dl
    _, sd_theory = johnson_su_moments(sensor.parameters)
    assert 10.5 < e.std() < 13.5  # literature ~11.6 mg/dL; Johnson SU theory 12.1
    assert e.std() == pytest.approx(sd_theory, rel=0.1)
    x = e - e.mean(axis=1, keepdims=True)

    def autocorrelation(lag: int) -> float:
        return float((x[:, :-lag] * x[:, lag:]).mean() / x.var())

    assert 0.93 < autocorrelation(1) < 0.98  # literature ~0.96 at 5 min
    assert 0.6 < autocorrelation(3) < 0.8  # AR(1) 0.7 at 15 min


def test_ideal_sensor_reports_rounded_clipped_interstitial_glucose() -> None:
    sensor = CgmSensorArray(RowStreams.from_seed(1, 1), 5, "ideal")
    ig = np.array([[20.0, 39.6, 123.4, 399.6, 700.0]])
    np.testing.assert_array_equal(sensor.read_trace(ig), [[40.0, 40.0, 123.0, 400.0, 400.0]])
    assert sensor.read(2, ig[:, 2]).tolist() == [123.0]


def test_realistic_readings_are_integers_within_limits() -> None:
    sensor = CgmSensorArray(RowStreams.from_seed(2, 10), 3 * DAY)
    readings = sensor.read_trace(np.tile(np.linspace(30, 450, 3 * DAY), (10, 1)))
    valid = readings[~np.isnan(readings)]
    assert valid.min() >= 40 and valid.max() <= 400
    np.testing.assert_array_equal(valid, np.round(valid))


def test_warmup_after_each_sensor_change_gives_no_readings() -> None:
    p = CgmSensorParameters(dropout_start_probability=0.0, compression_probability_per_night=0.0)
    sensor = CgmSensorArray(RowStreams.from_seed(5, 6), 11 * DAY, p)
    readings = sensor.read_trace(np.full((6, 11 * DAY), 120.0))
    warmup_samples = int(p.warmup_min / p.sample_interval_min)
    for row in range(6):
        changes = np.flatnonzero(np.diff(sensor.session_index[row]) > 0) + 1
        assert changes.size >= 1  # every row changes sensor within a session length
        for change in changes:
            assert np.isnan(readings[row, change : change + warmup_samples]).all()
            end = change + warmup_samples
            if end < readings.shape[1]:
                assert not np.isnan(readings[row, end])
        assert not np.isnan(readings[row, 0])  # the first sensor is already warm at time 0


def test_dropouts_follow_the_two_state_chain() -> None:
    p = CgmSensorParameters(**{**QUIET, "dropout_start_probability": 0.05, "dropout_mean_samples": 4.0})
    dropped = CgmSensorArray(RowStreams.from_seed(9, 20), 10 * DAY, p).dropped
    assert dropped.mean() == pytest.approx(0.05 / (0.05 + 0.25), abs=0.02)  # stationary loss fraction
    runs = []
    for row in dropped:
        edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
        runs.extend(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    assert np.mean(runs) == pytest.approx(4.0, rel=0.15)


def test_compression_lows_happen_only_at_night_and_read_low() -> None:
    p = CgmSensorParameters(**{**QUIET, "noise_enabled": False, "compression_probability_per_night": 1.0})
    sensor = CgmSensorArray(RowStreams.from_seed(4, 8), 3 * DAY, p)
    dipped = sensor.compression_factor < 1.0
    clock_h = (sensor.sample_times_min % 1440) / 60.0
    assert dipped.any()
    assert (clock_h[np.flatnonzero(dipped.any(axis=0))] < 6.0 + 1.01).all()  # window 0-6 h + max duration
    readings = sensor.read_trace(np.full((8, 3 * DAY), 150.0))
    assert np.nanmin(readings) <= 150 * (1 - 0.2) + 1
    assert np.nanmax(readings) == 150.0


def test_drift_starts_near_unity_and_is_switchable() -> None:
    p = CgmSensorParameters(noise_enabled=False, dropout_start_probability=0.0, compression_probability_per_night=0.0,
                            gain_a0_sd=0.0, offset_b0_sd_mg_dl=0.0)
    sensor = CgmSensorArray(RowStreams.from_seed(8, 5), 11 * DAY, p)
    for row in range(5):
        change = np.flatnonzero(np.diff(sensor.session_index[row]) > 0)[0] + 1
        # the first sample of a session is at most 5 min after insertion
        assert sensor.gain[row, change] == pytest.approx(1.0, abs=1e-3)
        assert sensor.offset_mg_dl[row, change] == pytest.approx(0.0, abs=0.05)
    assert np.abs(sensor.gain - 1).max() > 0.001
    flat = CgmSensorArray(RowStreams.from_seed(8, 5), DAY, "breton2008")
    assert (flat.gain == 1).all() and (flat.offset_mg_dl == 0).all()


def test_bad_parameters_and_shapes_raise_typed_errors() -> None:
    with pytest.raises(SensorModelError):
        CgmSensorParameters(ar1_coefficient=1.0)
    with pytest.raises(SensorModelError):
        CgmSensorArray(RowStreams.from_seed(1, 2), 10, "no-such-preset")
    sensor = CgmSensorArray(RowStreams.from_seed(1, 2), 10)
    with pytest.raises(SensorModelError):
        sensor.read(0, np.ones(3))
    with pytest.raises(SensorModelError):
        sensor.read(10, np.ones(2))
    with pytest.raises(SensorModelError):
        sensor.read_trace(np.ones((2, 9)))


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1),
       arrays(np.float64, (2, 50), elements=st.floats(min_value=0.0, max_value=1000.0)))
def test_any_trace_reads_within_limits_or_missing(seed: int, ig: np.ndarray) -> None:
    p = CgmSensorParameters(dropout_start_probability=0.1, compression_probability_per_night=1.0)
    readings = CgmSensorArray(RowStreams.from_seed(seed, 2), 50, p).read_trace(ig)
    valid = readings[~np.isnan(readings)]
    assert ((valid >= 40) & (valid <= 400)).all()
    np.testing.assert_array_equal(valid, np.round(valid))
