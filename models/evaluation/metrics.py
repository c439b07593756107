"""Point and interval accuracy of glucose forecasts (mg/dL): RMSE, MAE, MARD and 95 % interval coverage.

Pairs where the prediction or the reference is missing (NaN) are left out; every function says how many
pairs it used through ``forecast_accuracy``. MARD = mean(|pred - ref| / ref) * 100 (references must be > 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.evaluation.error_grids import clarke_zones, parkes_zones, zone_percentages


def _valid(*arrays: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    arrs = [np.asarray(a, dtype=float) for a in arrays]
    shape = arrs[0].shape
    if any(a.shape != shape for a in arrs):
        raise ValueError("metric inputs must have the same shape")
    keep = np.ones(shape, dtype=bool)
    for a in arrs:
        keep &= np.isfinite(a)
    return tuple(a[keep] for a in arrs)


def rmse(reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike) -> float:
    ref, pred = _valid(reference_mg_dl, predicted_mg_dl)
    return float(np.sqrt(np.mean((pred - ref) ** 2))) if ref.size else math.nan


def mae(reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike) -> float:
    ref, pred = _valid(reference_mg_dl, predicted_mg_dl)
    return float(np.mean(np.abs(pred - ref))) if ref.size else math.nan


def mard_percent(reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike) -> float:
    ref, pred = _valid(reference_mg_dl, predicted_mg_dl)
    if np.any(ref <= 0):
        raise ValueError("MARD needs reference glucose > 0")
    return float(100.0 * np.mean(np.abs(pred - ref) / ref)) if ref.size else math.nan


def interval_coverage_percent(reference_mg_dl: ArrayLike, lower_mg_dl: ArrayLike, upper_mg_dl: ArrayLike) -> float:
    """Share (%) of references inside [lower, upper]; pairs with a missing bound are left out."""
    ref, low, high = _valid(reference_mg_dl, lower_mg_dl, upper_mg_dl)
    return float(100.0 * np.mean((ref >= low) & (ref <= high))) if ref.size else math.nan


@dataclass(frozen=True)
class ForecastAccuracy:
    """All accuracy figures for one method at one horizon."""

    n_pairs: int
    rmse_mg_dl: float
    mae_mg_dl: float
    mard_percent: float
    coverage_95_percent: float
    clarke_percent: dict[str, float]
    parkes_percent: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def forecast_accuracy(
    reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike, lower_mg_dl: ArrayLike | None = None,
    upper_mg_dl: ArrayLike | None = None,
) -> ForecastAccuracy:
    ref, pred = (np.asarray(a, dtype=float) for a in (reference_mg_dl, predicted_mg_dl))
    keep = np.isfinite(ref) & np.isfinite(pred)
    ref_ok, pred_ok = ref[keep], np.clip(pred[keep], 0.0, None)
    coverage = math.nan
    if lower_mg_dl is not None and upper_mg_dl is not None:
        coverage = interval_coverage_percent(ref[keep], np.asarray(lower_mg_dl, float)[keep],
                                             np.asarray(upper_mg_dl, float)[keep])
    return ForecastAccuracy(
        n_pairs=int(ref_ok.size), rmse_mg_dl=rmse(ref_ok, pred_ok), mae_mg_dl=mae(ref_ok, pred_ok),
        mard_percent=mard_percent(ref_ok, pred_ok), coverage_95_percent=coverage,
        clarke_percent=zone_percentages(clarke_zones(ref_ok, pred_ok)),
        parkes_percent=zone_percentages(parkes_zones(ref_ok, pred_ok)),
    )
