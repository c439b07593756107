"""Exponential insulin-action curve: published IOB check values and curve properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.insulin_action import (
    INSULIN_PRESETS,
    ExponentialInsulinCurve,
    InsulinCurveError,
    InsulinDose,
    insulin_activity_u_per_min,
    insulin_on_board_u,
)


def test_iob_matches_published_values_for_rapid_adult() -> None:
    curve = ExponentialInsulinCurve(peak_min=75, duration_min=360)
    iob = curve.iob_fraction([60, 120, 180, 240])
    assert np.round(iob, 3).tolist() == [0.779, 0.450, 0.208, 0.073]


@pytest.mark.parametrize("name", sorted(INSULIN_PRESETS))
def test_presets_peak_where_they_say_and_integrate_to_one(name: str) -> None:
    curve = INSULIN_PRESETS[name]
    t = np.arange(0, curve.duration_min + 0.5, 0.5)
    activity = curve.activity(t)
    assert abs(t[np.argmax(activity)] - curve.peak_min) <= 0.5
    assert np.trapezoid(activity, t) == pytest.approx(1.0, abs=1e-3)
    assert curve.iob_fraction(0) == pytest.approx(1.0)
    assert curve.iob_fraction(curve.duration_min) == pytest.approx(0.0, abs=1e-9)


def test_faster_insulin_leaves_less_on_board() -> None:
    t = np.array([30, 60, 90, 120, 180])
    assert np.all(INSULIN_PRESETS["ultra_rapid"].iob_fraction(t) < INSULIN_PRESETS["rapid_child"].iob_fraction(t))
    assert np.all(INSULIN_PRESETS["rapid_child"].iob_fraction(t) < INSULIN_PRESETS["rapid_adult"].iob_fraction(t))


@pytest.mark.parametrize("peak, duration", [(0, 360), (180, 360), (200, 360), (float("nan"), 360)])
def test_invalid_curves_are_refused(peak: float, duration: float) -> None:
    with pytest.raises(InsulinCurveError):
        ExponentialInsulinCurve(peak, duration)


@settings(max_examples=60, deadline=None)
@given(
    peak=st.floats(40, 120),
    duration=st.floats(300, 600),
    t=st.floats(0.5, 599),
)
def test_activity_is_minus_derivative_of_iob(peak: float, duration: float, t: float) -> None:
    curve = ExponentialInsulinCurve(peak, duration)
    if t >= duration - 1:
        t = duration / 2
    h = 1e-3
    derivative = (curve.iob_fraction(t + h) - curve.iob_fraction(t - h)) / (2 * h)
    assert -derivative == pytest.approx(float(curve.activity(t)), rel=1e-4, abs=1e-9)
    # IOB never increases and stays within [0, 1]
    grid = np.linspace(-10, duration + 10, 200)
    iob = curve.iob_fraction(grid)
    assert np.all(np.diff(iob) <= 1e-12) and iob.min() >= 0 and iob.max() <= 1


def test_iob_from_doses_sums_boluses_and_basal_deviations() -> None:
    curve = INSULIN_PRESETS["rapid_adult"]
    doses = [InsulinDose(0, 2.0), InsulinDose(60, 1.0)]
    iob = insulin_on_board_u(doses, [-5, 0, 60, 120])
    expected_120 = 2.0 * curve.iob_fraction(120) + 1.0 * curve.iob_fraction(60)
    assert iob[0] == 0.0
    assert iob[1] == pytest.approx(2.0)
    assert iob[3] == pytest.approx(expected_120)
    # a one-hour suspension of a 1 U/h basal is -1 U, delivered (withheld) gradually
    suspend = [InsulinDose.basal_deviation(0, 0.0, 1.0, 60)]
    assert insulin_on_board_u(suspend, [0])[0] == pytest.approx(0.0)
    assert -1.0 < insulin_on_board_u(suspend, [60])[0] < -0.9
    assert insulin_on_board_u(suspend, [421])[0] == pytest.approx(0.0, abs=1e-9)


def test_activity_from_doses_integrates_to_total_units() -> None:
    doses = [InsulinDose(0, 3.0), InsulinDose(30, 1.5, duration_min=30)]
    t = np.arange(0, 500, 1.0)
    assert np.trapezoid(insulin_activity_u_per_min(doses, t), t) == pytest.approx(4.5, rel=2e-3)
    assert insulin_on_board_u([], [1, 2]).tolist() == [0.0, 0.0]


def test_invalid_dose_is_refused() -> None:
    with pytest.raises(ValueError):
        InsulinDose(0, float("nan"))
    with pytest.raises(ValueError):
        InsulinDose(0, 1.0, duration_min=-5)
