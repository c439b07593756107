"""Clarke and Parkes (type 1) zones on points placed by the papers' zone definitions, and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.evaluation.error_grids import clarke_zones, parkes_zones, zone_percentages
from models.evaluation.metrics import forecast_accuracy, interval_coverage_percent, mae, mard_percent, rmse

CLARKE_POINTS = [
    # (reference, prediction, zone, why)
    (100, 100, "A", "exact"),
    (100, 119, "A", "within 20 %"),
    (50, 65, "A", "both in hypoglycaemia"),
    (100, 130, "B", "30 % high, benign"),
    (300, 200, "B", "high, treated as high"),
    (100, 230, "C", "y >= x + 110: overcorrection"),
    (150, 20, "C", "y <= 7/5 x - 182"),
    (300, 150, "D", "hyperglycaemia missed"),
    (50, 100, "D", "hypoglycaemia missed"),
    (65, 100, "D", "175/3 <= x <= 70, y >= 6/5 x"),
    (60, 200, "E", "hypo read as hyper"),
    (200, 60, "E", "hyper read as hypo"),
]

PARKES_POINTS = [
    (100, 100, "A"),
    (100, 126, "A"),   # A|B upper at x=100 is y = 126.4
    (100, 130, "B"),
    (100, 179, "B"),   # B|C upper at x=100 is y = 179.5
    (100, 200, "C"),
    (100, 370, "D"),   # C|D upper at x=100 is y = 363.9
    (40, 300, "E"),    # D|E upper at x=40 is y = 286.7
    (120, 100, "A"),   # A|B lower at y=100 is x = 123.0
    (130, 100, "B"),
    (300, 100, "C"),   # B|C lower at y=100 is x = 218, C|D lower is x = 413.6
    (500, 50, "D"),    # C|D lower at y=50 is x = 277
    (45, 10, "A"),     # left of the vertical segment x = 50
    (55, 10, "B"),
    (600, 580, "A"),   # beyond the published vertices, boundaries extended linearly
]


@pytest.mark.parametrize("ref, pred, zone, why", CLARKE_POINTS)
def test_clarke_known_points(ref: float, pred: float, zone: str, why: str) -> None:
    assert clarke_zones([ref], [pred])[0] == zone, why


@pytest.mark.parametrize("ref, pred, zone", PARKES_POINTS)
def test_parkes_type1_known_points(ref: float, pred: float, zone: str) -> None:
    assert parkes_zones([ref], [pred])[0] == zone


def test_vectorised_matches_pointwise() -> None:
    refs = np.array([p[0] for p in CLARKE_POINTS], dtype=float)
    preds = np.array([p[1] for p in CLARKE_POINTS], dtype=float)
    assert clarke_zones(refs, preds).tolist() == [p[2] for p in CLARKE_POINTS]
    grid = np.meshgrid(np.arange(0, 601, 20.0), np.arange(0, 601, 20.0))
    assert parkes_zones(*grid).shape == grid[0].shape


@given(st.floats(1, 600), st.floats(0, 600))
def test_zones_are_letters_and_exact_predictions_are_a(ref: float, pred: float) -> None:
    assert clarke_zones([ref], [pred])[0] in "ABCDE"
    assert parkes_zones([ref], [pred])[0] in "ABCDE"
    assert clarke_zones([ref], [ref])[0] == "A"
    assert parkes_zones([ref], [ref])[0] == "A"


@given(st.floats(1, 550), st.floats(0, 550), st.floats(1.0, 3.0))
def test_parkes_worsens_monotonically_away_from_the_diagonal(ref: float, pred: float, factor: float) -> None:
    order = "ABCDE"
    z = order.index(str(parkes_zones([ref], [pred])[0]))
    if pred >= ref:
        further = pred + (pred - ref) * (factor - 1) + 1
    else:
        further = max(0.0, pred - (ref - pred) * (factor - 1) - 1)
    assert order.index(str(parkes_zones([ref], [further])[0])) >= z


def test_bad_grid_input_is_refused() -> None:
    with pytest.raises(ValueError):
        clarke_zones([100, 200], [100])
    with pytest.raises(ValueError):
        parkes_zones([float("nan")], [100])


def test_metrics_on_known_values() -> None:
    ref = [100, 200, float("nan"), 50]
    pred = [110, 180, 90, 50]
    assert rmse(ref, pred) == pytest.approx(math.sqrt((100 + 400 + 0) / 3))
    assert mae(ref, pred) == pytest.approx(10.0)
    assert mard_percent(ref, pred) == pytest.approx((10 + 10 + 0) / 3)
    assert interval_coverage_percent([100, 150, 200], [90, 160, 150], [110, 170, 250]) == pytest.approx(200 / 3)
    acc = forecast_accuracy(ref, pred, [100, 100, 0, 0], [120, 190, 0, 40])
    assert acc.n_pairs == 3
    assert acc.coverage_95_percent == pytest.approx(100 / 3)
    assert sum(acc.clarke_percent.values()) == pytest.approx(100.0)
    assert zone_percentages([]) == {z: 0.0 for z in "ABCDE"}
    assert math.isnan(rmse([], []))
