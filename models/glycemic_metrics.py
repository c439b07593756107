"""Consensus glycemic metrics from CGM (or any) glucose traces, in pure numpy.

Definitions follow the international consensus on time in range (Battelino et al. 2019, Diabetes Care
42:1593) and the ATTD CGM consensus (Danne et al. 2017, Diabetes Care 40:1631):

* ranges, in mg/dL, as percent of VALID readings (missing readings are excluded, not counted as in range):
  level-2 hypoglycemia ``< 54``, level-1 hypoglycemia ``54-69`` (``54 <= g < 70``), target ``70-180``
  (``70 <= g <= 180``), level-1 hyperglycemia ``181-250`` (``180 < g <= 250``), level-2 hyperglycemia
  ``> 250``; plus the cumulative ``< 70`` and ``> 180``.
* mean, standard deviation (sample SD, ``ddof=1``) and coefficient of variation ``CV = 100 * SD / mean``.
* glucose management indicator (Bergenstal et al. 2018, Diabetes Care 41:2275):
  ``GMI (%) = 3.31 + 0.02392 * mean glucose (mg/dL)``.
* low and high blood glucose indices (Kovatchev et al. 1997 Diabetes Care 20:1655; 2006 DT&T 8:1):
  the symmetrising transform ``f(g) = 1.509 * ((ln g)^1.084 - 5.381)`` (g in mg/dL, f = 0 near 112.5 mg/dL),
  risk ``r = 10 f^2``, ``LBGI = mean(r where f < 0 else 0)``, ``HBGI = mean(r where f > 0 else 0)``.
* glycemia risk index (Klonoff et al., J Diabetes Sci Technol 2023; 17:1226, doi:10.1177/19322968221085273):
  one number, 0-100, weighing each range by the risk clinicians rated in it, ``GRI = 3.0 * (< 54) + 2.4 *
  (54-69) + 1.6 * (> 250) + 0.8 * (181-250)`` (percentages), capped at 100. A point of time below 54 counts
  3.75x a point at 181-250: it judges as a whole a change that trades highs for lows (or back).
* sensor active % = valid readings / expected readings * 100; days of wear = expected readings *
  sample interval / 1440 (the span the array covers).

Glucose arrays are in mg/dL with ``NaN`` for a missing reading. :func:`glycemic_metrics` works on the last
axis of an array of any shape (e.g. subjects x samples) and returns arrays; :func:`summarize_glucose` returns
a :class:`GlycemicSummary` for one trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
from numpy.typing import ArrayLike, NDArray

MINUTES_PER_DAY = 1440.0

# Range limits (mg/dL), Battelino et al. 2019.
LEVEL2_HYPO_BELOW_MG_DL = 54.0
HYPO_BELOW_MG_DL = 70.0
TARGET_UPPER_MG_DL = 180.0
LEVEL2_HYPER_ABOVE_MG_DL = 250.0

# Glycemia risk index weights per range (Klonoff et al. 2023) and its ceiling.
GRI_WEIGHTS = {"time_below_54_pct": 3.0, "time_54_69_pct": 2.4, "time_above_250_pct": 1.6, "time_181_250_pct": 0.8}
GRI_MAX = 100.0

# Kovatchev risk transform constants (glucose in mg/dL).
_RISK_ALPHA = 1.084
_RISK_BETA = 5.381
_RISK_GAMMA = 1.509


class GlucoseInputError(ValueError):
    """Glucose input that cannot be summarised (wrong shape, non-positive or infinite values, bad interval)."""


@dataclass(frozen=True)
class GlycemicSummary:
    """Consensus metrics of one glucose trace. Percentages are of valid readings unless named otherwise."""

    readings_count: int
    expected_readings_count: int
    sensor_active_pct: float
    days_of_wear_d: float
    mean_glucose_mg_dl: float
    sd_glucose_mg_dl: float
    cv_pct: float
    gmi_pct: float
    time_below_54_pct: float
    time_54_69_pct: float
    time_below_70_pct: float
    time_in_range_70_180_pct: float
    time_181_250_pct: float
    time_above_180_pct: float
    time_above_250_pct: float
    lbgi: float
    hbgi: float
    gri: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready dict; NaN stays NaN (callers writing strict JSON map it to null)."""
        return asdict(self)


METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in fields(GlycemicSummary))


def risk_transform(glucose_mg_dl: ArrayLike) -> NDArray[np.float64]:
    """Kovatchev's symmetrising transform f(g) = 1.509 * ((ln g)^1.084 - 5.381); NaN stays NaN."""
    g = np.asarray(glucose_mg_dl, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _RISK_GAMMA * (np.log(g) ** _RISK_ALPHA - _RISK_BETA)


def _validated(glucose_mg_dl: ArrayLike, sample_interval_min: float) -> NDArray[np.float64]:
    try:
        g = np.asarray(glucose_mg_dl, dtype=float)
    except (TypeError, ValueError) as error:
        raise GlucoseInputError(f"glucose must be numeric (mg/dL): {error}") from error
    if g.ndim == 0:
        raise GlucoseInputError("glucose must be an array of readings, got a scalar")
    if not (np.isfinite(sample_interval_min) and sample_interval_min > 0):
        raise GlucoseInputError(f"sample_interval_min must be a positive number, got {sample_interval_min!r}")
    if np.isinf(g).any():
        raise GlucoseInputError("glucose contains infinite values; use NaN for missing readings")
    with np.errstate(invalid="ignore"):
        if (g <= 0).any():
            raise GlucoseInputError("glucose values must be positive mg/dL (NaN marks a missing reading)")
    return g


def glycemic_metrics(glucose_mg_dl: ArrayLike, sample_interval_min: float = 5.0) -> dict[str, NDArray]:
    """All :class:`GlycemicSummary` fields as arrays, reduced over the LAST axis of ``glucose_mg_dl``.

    Traces with no valid reading give NaN metrics (and 0 % sensor active). SD and CV need two readings.

    >>> m = glycemic_metrics([[100.0, 200.0, np.nan, 50.0]])
    >>> float(m["time_in_range_70_180_pct"][0]), float(m["sensor_active_pct"][0])
    (33.333333333333336, 75.0)
    """
    g = _validated(glucose_mg_dl, sample_interval_min)
    valid = ~np.isnan(g)
    n_valid = valid.sum(axis=-1)
    n_expected = g.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = np.where(n_valid > 0, n_valid, np.nan)

        def pct(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
            return 100.0 * (mask & valid).sum(axis=-1) / denominator

        g0 = np.where(valid, g, 0.0)
        mean = g0.sum(axis=-1) / denominator
        squared_dev = np.where(valid, (g - mean[..., None]) ** 2, 0.0).sum(axis=-1)
        sd = np.sqrt(squared_dev / np.where(n_valid > 1, n_valid - 1, np.nan))
        f = risk_transform(np.where(valid, g, 112.5))
        risk = 10.0 * f**2
        lbgi = np.where(valid & (f < 0), risk, 0.0).sum(axis=-1) / denominator
        hbgi = np.where(valid & (f > 0), risk, 0.0).sum(axis=-1) / denominator
        metrics: dict[str, NDArray] = {
            "readings_count": n_valid.astype(int),
            "expected_readings_count": np.full(n_valid.shape, n_expected, dtype=int),
            "sensor_active_pct": 100.0 * n_valid / n_expected if n_expected else np.full(n_valid.shape, np.nan),
            "days_of_wear_d": np.full(n_valid.shape, n_expected * sample_interval_min / MINUTES_PER_DAY),
            "mean_glucose_mg_dl": mean,
            "sd_glucose_mg_dl": sd,
            "cv_pct": 100.0 * sd / mean,
            "gmi_pct": 3.31 + 0.02392 * mean,
            "time_below_54_pct": pct(g < LEVEL2_HYPO_BELOW_MG_DL),
            "time_54_69_pct": pct((g >= LEVEL2_HYPO_BELOW_MG_DL) & (g < HYPO_BELOW_MG_DL)),
            "time_below_70_pct": pct(g < HYPO_BELOW_MG_DL),
            "time_in_range_70_180_pct": pct((g >= HYPO_BELOW_MG_DL) & (g <= TARGET_UPPER_MG_DL)),
            "time_181_250_pct": pct((g > TARGET_UPPER_MG_DL) & (g <= LEVEL2_HYPER_ABOVE_MG_DL)),
            "time_above_180_pct": pct(g > TARGET_UPPER_MG_DL),
            "time_above_250_pct": pct(g > LEVEL2_HYPER_ABOVE_MG_DL),
            "lbgi": lbgi,
            "hbgi": hbgi,
        }
        metrics["gri"] = glycemia_risk_index(metrics)
    return metrics


def glycemia_risk_index(time_pct: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
    """GRI from the range percentages named in :data:`GRI_WEIGHTS` (arrays or plain numbers), capped at 100."""
    return np.minimum(sum(weight * np.asarray(time_pct[key], dtype=float) for key, weight in GRI_WEIGHTS.items()),
                      GRI_MAX)


def summarize_glucose(glucose_mg_dl: ArrayLike, sample_interval_min: float = 5.0) -> GlycemicSummary:
    """Consensus metrics of ONE trace (1-D array, mg/dL, NaN = missing).

    >>> s = summarize_glucose([100.0, 150.0, 250.0, 60.0])
    >>> s.time_in_range_70_180_pct, s.time_below_70_pct, s.mean_glucose_mg_dl
    (50.0, 25.0, 140.0)
    """
    g = _validated(glucose_mg_dl, sample_interval_min)
    if g.ndim != 1:
        raise GlucoseInputError(f"summarize_glucose takes one 1-D trace, got shape {g.shape}")
    metrics = glycemic_metrics(g, sample_interval_min)
    values = {}
    for name in METRIC_NAMES:
        value = metrics[name]
        values[name] = int(value) if name.endswith("_count") else float(value)
    return GlycemicSummary(**values)
