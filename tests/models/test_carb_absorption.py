"""Loop-style piecewise-linear carb absorption and carbs on board."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.carb_absorption import (
    DEFAULT_ABSORPTION_MIN,
    CarbEntry,
    absorbed_fraction,
    absorption_rate_per_min,
    carb_absorption_g_per_min,
    carbs_absorbed_g,
    carbs_on_board_g,
)


def test_default_absorption_time_is_three_hours() -> None:
    assert DEFAULT_ABSORPTION_MIN == 180.0
    assert CarbEntry(0, 30).absorption_min == 180.0


def test_rate_shape_rises_holds_and_falls() -> None:
    T = 180.0
    rate = absorption_rate_per_min(np.array([0, 0.075 * T, 0.15 * T, 0.3 * T, 0.5 * T, 0.75 * T, T, 1.1 * T]), T)
    peak = rate[2]
    assert rate[0] == 0.0
    assert rate[1] == pytest.approx(peak / 2)
    assert rate[3] == pytest.approx(peak) and rate[4] == pytest.approx(peak)
    assert rate[5] == pytest.approx(peak / 2)
    assert rate[6] == pytest.approx(0.0, abs=1e-12) and rate[7] == 0.0


@settings(max_examples=50, deadline=None)
@given(T=st.floats(30, 480), frac=st.floats(0, 1))
def test_absorbed_fraction_is_the_integral_of_the_rate(T: float, frac: float) -> None:
    t = np.linspace(0, frac * T, 2001)
    integral = np.trapezoid(absorption_rate_per_min(t, T), t)
    assert float(absorbed_fraction(frac * T, T)) == pytest.approx(integral, abs=1e-4)
    grid = np.linspace(-10, T + 10, 300)
    f = absorbed_fraction(grid, T)
    assert np.all(np.diff(f) >= -1e-12) and f[0] == 0 and f[-1] == 1


def test_half_time_absorbs_less_than_half_but_more_than_a_third() -> None:
    # rise (0.075) + hold (0.35) of area 0.675 at s = 0.5
    assert float(absorbed_fraction(90, 180)) == pytest.approx(0.425 / 0.675)


def test_carbs_on_board_from_entries() -> None:
    entries = [CarbEntry(0, 60), CarbEntry(60, 20, absorption_min=120)]
    cob = carbs_on_board_g(entries, [-1, 0, 60, 400])
    assert cob[0] == 0.0
    assert cob[1] == pytest.approx(60.0)
    assert cob[2] == pytest.approx(60 * (1 - float(absorbed_fraction(60, 180))) + 20)
    assert cob[3] == pytest.approx(0.0)
    t = np.arange(0, 400, 0.5)
    assert np.trapezoid(carb_absorption_g_per_min(entries, t), t) == pytest.approx(80, rel=1e-3)
    assert carbs_absorbed_g(entries, [400])[0] == pytest.approx(80)
    delayed = carbs_on_board_g([CarbEntry(0, 30)], [10], delay_min=10)
    assert delayed[0] == pytest.approx(30)


def test_bad_entries_are_refused() -> None:
    with pytest.raises(ValueError):
        CarbEntry(0, -5)
    with pytest.raises(ValueError):
        CarbEntry(0, 10, absorption_min=0)
    with pytest.raises(ValueError):
        absorbed_fraction(10, 0)
