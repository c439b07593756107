"""Scenarios: reproducibility, meals, announcement errors, sensitivity drift, dawn phenomenon, occlusions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_sim.random_streams import RowStreams
from hardware_sim.scenario import (
    SCENARIO_PRESETS,
    ScenarioError,
    realise,
    scenario_spec,
    with_changes,
)

DAYS = 3
T = DAYS * 1440


def test_same_seed_same_day_different_seed_different_day() -> None:
    a = realise("challenging", RowStreams.from_seed(1, 3), T)
    b = realise("challenging", RowStreams.from_seed(1, 3), T)
    c = realise("challenging", RowStreams.from_seed(2, 3), T)
    for name in ("carbs_g_per_min", "announced_carbs_g", "insulin_sensitivity_scale", "egp_scale"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.occlusion_onset_min, b.occlusion_onset_min)
    assert not np.array_equal(a.carbs_g_per_min, c.carbs_g_per_min)


def test_a_row_does_not_depend_on_its_neighbours() -> None:
    both = realise("realistic", RowStreams([5, 5], [100, 200]), T)
    alone = realise("realistic", RowStreams([5], [200]), T)
    np.testing.assert_array_equal(both.carbs_g_per_min[1], alone.carbs_g_per_min[0])
    np.testing.assert_array_equal(both.announced_carbs_g[1], alone.announced_carbs_g[0])


def test_standard_day_three_meals_on_the_grid_all_announced_exactly() -> None:
    r = realise("standard", RowStreams.from_seed(3, 10), T)
    mains = [e for e in r.meals if not e.is_snack]
    assert len(mains) == 10 * DAYS * 3
    for event in r.meals:
        assert event.start_min % 5 == 0
        assert event.carbs_announced_g == event.carbs_eaten_g
    by_name = {name: np.mean([e.carbs_eaten_g for e in mains if e.name == name]) for name in ("breakfast", "lunch", "dinner")}
    assert by_name["breakfast"] == pytest.approx(45, abs=6)
    assert by_name["lunch"] == pytest.approx(70, abs=6)
    assert by_name["dinner"] == pytest.approx(80, abs=6)
    breakfast_clock = [(e.start_min % 1440) / 60 for e in mains if e.name == "breakfast"]
    assert 6.0 < min(breakfast_clock) and max(breakfast_clock) < 8.0
    assert (r.insulin_sensitivity_scale == 1).all() and (r.egp_scale == 1).all()
    assert np.isnan(r.occlusion_onset_min).all()


def test_every_gram_eaten_is_a_meal_event_and_eaten_at_most_5_g_per_min() -> None:
    three = realise("three-meals", RowStreams.from_seed(4, 6), T)  # meals hours apart never overlap
    assert three.carbs_g_per_min.max() == pytest.approx(5.0)
    r = realise("standard", RowStreams.from_seed(4, 6), T)
    for row in range(6):
        eaten = sum(e.carbs_eaten_g for e in r.meals if e.row == row)
        assert r.carbs_g_per_min[row].sum() == pytest.approx(eaten)
        told = sum(e.carbs_announced_g for e in r.meals if e.row == row and not np.isnan(e.carbs_announced_g))
        assert r.announced_carbs_g[row].sum() == pytest.approx(told)


def test_challenging_counts_wrongly_and_hides_snacks() -> None:
    r = realise("challenging", RowStreams.from_seed(6, 20), 7 * 1440)
    snacks = [e for e in r.meals if e.is_snack]
    assert snacks and all(np.isnan(e.carbs_announced_g) for e in snacks)
    told = [e for e in r.meals if not np.isnan(e.carbs_announced_g)]
    errors = np.array([e.carbs_announced_g / e.carbs_eaten_g - 1 for e in told])
    assert np.abs(errors).max() <= 0.3 + 0.5 / 20  # +-30 %, plus rounding to whole grams
    assert errors.std() > 0.1
    missed = [e for e in r.meals if not e.is_snack and np.isnan(e.carbs_announced_g)]
    mains = [e for e in r.meals if not e.is_snack]
    assert 0.03 < len(missed) / len(mains) < 0.2  # 10 % missed boluses


def test_sensitivity_drift_and_dawn_phenomenon() -> None:
    r = realise("challenging", RowStreams.from_seed(7, 8), 10 * 1440)
    s = r.insulin_sensitivity_scale
    assert (s[:, 0] == 1.0).all() and (s >= 0.5).all() and (s <= 2.0).all()
    assert np.abs(np.diff(s, axis=1)).max() < 0.01  # smooth within a day
    assert s.std() > 0.02
    clock_h = (np.arange(r.duration_min) % 1440) / 60
    raised = (r.egp_scale > 1.0).any(axis=0)
    assert (clock_h[raised] > 3).all() and (clock_h[raised] < 9).all()
    peak = r.egp_scale[:, 360]  # 06:00
    assert ((peak >= 1.05 - 1e-12) & (peak <= 1.15 + 1e-12)).all()


def test_occlusions_only_when_asked_for_and_within_the_trial() -> None:
    spec = with_changes(scenario_spec("standard"), occlusion_probability_per_day=1.0)
    r = realise(spec, RowStreams.from_seed(1, 5), T)
    assert (r.occlusion_onset_min < 1440).all() and (r.occlusion_onset_min >= 0).all()


def test_presets_and_errors() -> None:
    assert {"standard", "challenging", "realistic", "three-meals", "fasting"} <= set(SCENARIO_PRESETS)
    assert realise("fasting", RowStreams.from_seed(1, 2), 60).carbs_g_per_min.sum() == 0
    with pytest.raises(ScenarioError):
        scenario_spec("feast")
    with pytest.raises(ScenarioError):
        with_changes(scenario_spec("standard"), carb_count_error_fraction=1.5)
    with pytest.raises(ScenarioError):
        realise("standard", RowStreams.from_seed(1, 1), 0)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(sorted(SCENARIO_PRESETS)))
def test_any_seed_conserves_carbs_and_bounds_announcement_errors(seed: int, name: str) -> None:
    r = realise(name, RowStreams.from_seed(seed, 2), 1440)
    spec = scenario_spec(name)
    for row in range(2):
        events = [e for e in r.meals if e.row == row]
        assert r.carbs_g_per_min[row].sum() == pytest.approx(sum(e.carbs_eaten_g for e in events))
        for e in events:
            if not np.isnan(e.carbs_announced_g):
                assert abs(e.carbs_announced_g - e.carbs_eaten_g) <= spec.carb_count_error_fraction * e.carbs_eaten_g + 0.5
    assert (r.carbs_g_per_min >= 0).all() and (r.announced_carbs_g >= 0).all()
    assert (r.egp_scale >= 1).all() and (r.insulin_sensitivity_scale > 0).all()
