"""Feature and target arrays from a virtual-patient ``dataset.npz`` (numpy only; no torch, no hardware_sim).

Each row of the npz (one subject, scenario, seed on a 5-min grid) gives one sample per reading instant:
features from :mod:`models.forecast.features` (via ``grid_bins``, the grid form of the run-time binning) and
targets (reading at +30/60/90/120 min minus the last reading, / 50; NaN where no reading). A share
``cgm_only_fraction`` of samples is presented as CGM-only (``treatments_known`` = 0 and no insulin/carb
features), chosen with ``seed``, so the same network serves recordings without treatment data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.forecast.features import (
    HORIZONS_MIN,
    TARGET_SCALE_MG_DL,
    FeatureSettings,
    features_from_bins,
    grid_bins,
    grid_targets,
)


@dataclass
class FeatureSet:
    x: NDArray[np.float32]          # (S, N_FEATURES)
    y: NDArray[np.float32]          # (S, H) scaled change; NaN = no target
    row: NDArray[np.int32]          # row index in the npz
    labels: NDArray[np.str_]        # row labels


def row_features(
    cgm: NDArray, bolus_u: NDArray, carbs_g: NDArray, settings: FeatureSettings, treatments_known: NDArray | float,
) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.float32]]:
    """Features, last reading and scaled targets for every sample of one grid row."""
    g_bins, i_bins, c_bins = grid_bins(cgm, bolus_u, carbs_g)
    x, last = features_from_bins(g_bins, i_bins, c_bins, settings, treatments_known)
    y = (grid_targets(cgm, HORIZONS_MIN) - last[:, None]) / TARGET_SCALE_MG_DL
    return x, last, y.astype(np.float32)


def build_feature_set(npz_path: str | Path, split: str, cgm_only_fraction: float = 0.25, seed: int = 0) -> FeatureSet:
    """All usable samples of one split (a last reading within 2 h and at least one target)."""
    data = np.load(npz_path)
    rows = np.flatnonzero(data["split"] == split)
    rng = np.random.default_rng(seed)
    xs, ys, rs = [], [], []
    for r in rows:
        settings = FeatureSettings(float(data["basal_u_per_h"][r]), float(data["isf_mg_dl_per_u"][r]),
                                   float(data["carb_ratio_g_per_u"][r]))
        cgm = data["cgm_mg_dl"][r].astype(np.float64)
        n = cgm.size
        known = (rng.random(n) >= cgm_only_fraction).astype(np.float64)
        x, last, y = row_features(cgm, data["bolus_u"][r], data["carbs_announced_g"][r], settings, known)
        ok = np.isfinite(last) & np.isfinite(y).any(axis=1)
        xs.append(x[ok])
        ys.append(y[ok])
        rs.append(np.full(int(ok.sum()), r, dtype=np.int32))
    return FeatureSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(rs), data["label"])
