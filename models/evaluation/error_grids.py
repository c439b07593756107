"""Clarke and Parkes (consensus, type 1) error-grid zones for (reference, prediction) pairs, vectorised.

Zones: A clinically accurate, B benign, C overcorrection, D failure to detect, E erroneous treatment.

* Clarke et al. 1987 (Diabetes Care 10:622), the usual rule form with x = reference, y = prediction (mg/dL):
  A: |y - x| <= 0.2 x, or both < 70 (x <= 70 and y <= 70 here, as in the common implementations);
  E: (x <= 70 and y >= 180) or (x >= 180 and y <= 70);
  C: (70 <= x <= 290 and y >= x + 110) or (130 <= x <= 180 and y <= 7/5 x - 182);
  D: (x >= 240 and 70 <= y <= 180) or (x <= 175/3 and 70 <= y <= 180) or (175/3 <= x <= 70 and y >= 6/5 x);
  B: everything else. Tested in that order (A, E, C, D, B).
* Parkes et al. 2000 (Diabetes Care 23:1143), type 1 grid, with the boundary vertices published by
  Pfützner et al. 2013 (JDST 7:1275). Upper boundaries are y(x), lower boundaries are x(y) (they have
  vertical segments); both are extended linearly beyond their last vertex. A point on a boundary belongs to
  the better zone.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

ZONES = ("A", "B", "C", "D", "E")

# Parkes type 1: upper boundaries (x, y) between zones A|B, B|C, C|D, D|E; lower ones A|B, B|C, C|D.
PARKES_T1_UPPER = (
    ((0, 50), (30, 50), (140, 170), (280, 380), (430, 550)),
    ((0, 60), (30, 60), (50, 80), (70, 110), (260, 550)),
    ((0, 100), (25, 100), (50, 125), (80, 215), (125, 550)),
    ((0, 150), (35, 155), (50, 550)),
)
PARKES_T1_LOWER = (
    ((50, 0), (50, 30), (170, 145), (385, 300), (550, 450)),
    ((120, 0), (120, 30), (260, 130), (550, 250)),
    ((250, 0), (250, 40), (550, 150)),
)


def _pairs(reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x = np.asarray(reference_mg_dl, dtype=float)
    y = np.asarray(predicted_mg_dl, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"reference and prediction shapes differ: {x.shape} vs {y.shape}")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(y)) or np.any(x < 0) or np.any(y < 0):
        raise ValueError("error-grid values must be finite and >= 0 mg/dL")
    return x, y


def clarke_zones(reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike) -> NDArray[np.str_]:
    """Clarke zone letter for each pair."""
    x, y = _pairs(reference_mg_dl, predicted_mg_dl)
    zone = np.full(x.shape, "B", dtype="<U1")
    d = (((x >= 240) & (y >= 70) & (y <= 180)) | ((x <= 175 / 3) & (y >= 70) & (y <= 180))
         | ((x >= 175 / 3) & (x <= 70) & (y >= 6 / 5 * x)))
    c = (((x >= 70) & (x <= 290) & (y >= x + 110)) | ((x >= 130) & (x <= 180) & (y <= 7 / 5 * x - 182)))
    e = ((x <= 70) & (y >= 180)) | ((x >= 180) & (y <= 70))
    a = ((x <= 70) & (y <= 70)) | ((y <= 1.2 * x) & (y >= 0.8 * x))
    zone[d] = "D"
    zone[c] = "C"
    zone[e] = "E"
    zone[a] = "A"
    return zone


def _piecewise(
    t: NDArray[np.float64], knots_t: NDArray[np.float64], knots_v: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Piecewise-linear through the knots, extended linearly past the last one (knots_t non-decreasing)."""
    value = np.interp(t, knots_t, knots_v)
    slope = (knots_v[-1] - knots_v[-2]) / (knots_t[-1] - knots_t[-2])
    return np.where(t > knots_t[-1], knots_v[-1] + slope * (t - knots_t[-1]), value)


def parkes_zones(reference_mg_dl: ArrayLike, predicted_mg_dl: ArrayLike) -> NDArray[np.str_]:
    """Parkes (type 1) zone letter for each pair."""
    x, y = _pairs(reference_mg_dl, predicted_mg_dl)
    level = np.zeros(x.shape, dtype=int)
    for i, boundary in enumerate(PARKES_T1_UPPER, start=1):
        bx, by = (np.array(v, dtype=float) for v in zip(*boundary))
        level = np.where(y > _piecewise(x, bx, by), np.maximum(level, i), level)
    for i, boundary in enumerate(PARKES_T1_LOWER, start=1):
        bx, by = (np.array(v, dtype=float) for v in zip(*boundary))
        # boundary as x(y); the first vertical segment (same x for y in [0, y1]) is handled by interp
        level = np.where(x > _piecewise(y, by, bx), np.maximum(level, i), level)
    return np.array(ZONES, dtype="<U1")[level]


def zone_percentages(zones: ArrayLike) -> dict[str, float]:
    """Share of pairs (%) in each zone A..E (all 0 for no pairs)."""
    z = np.asarray(zones)
    n = z.size
    return {name: (100.0 * float(np.count_nonzero(z == name)) / n if n else 0.0) for name in ZONES}
