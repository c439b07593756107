"""Features of the learned glucose forecaster: ONE definition, used by training and at run time.

Everything is expressed relative to the forecast moment ``now`` on a 5-min grid of *bins*: bin k covers
ages [5k, 5k + 5) minutes before now (an event at ``now`` itself is in bin 0, like a bolus given with the
reading). Two ways fill the bins, and both feed :func:`features_from_bins`:

* run time: :func:`bin_history` from event lists (readings, boluses, basal changes, carbs), as the hub or
  the replay harness sees them (irregular or missing readings are fine);
* training: :func:`grid_bins` slides windows over rows already on the 5-min grid (``hardware_sim.datasets``),
  which is the same binning for grid-aligned events (checked in tests/models/test_onnx_forecaster.py).

Bins: glucose (24 bins = 2 h; the latest reading in each bin, NaN if none), insulin (72 bins = 6 h: bolus
units plus basal deviation from the scheduled rate, U) and announced carbs (48 bins = 4 h, g).

Features (``FEATURE_NAMES``, all scaled to roughly unit size):

* ``g_last``: (last reading - 140) / 50; ``age_last``: minutes since the last reading / 30;
* ``dg_k`` k = 1..23: (glucose k bins ago - last reading) / 20, gaps linearly interpolated over bin time,
  outside the readings held at the nearest one; ``missing_frac``: share of the 24 bins without a reading;
* insulin, with the exponential curve (``models.insulin_action``) and ISF: ``ins_h`` = -ISF x insulin
  absorbed between now and now + h (h = 30/60/90/120, mg/dL / 50), ``ins_iob`` = ISF x IOB / 50,
  ``ins_past30`` / ``ins_past60`` = -ISF x insulin absorbed in the last 30/60 min / 50;
* carbs, Loop piecewise-linear absorption (3 h, 10-min delay; ``models.carb_absorption``) and CSF = ISF/CR:
  ``carb_h`` = CSF x carbs absorbed between now and now + h / 50, ``carb_cob`` = CSF x COB / 50,
  ``carb_past30`` / ``carb_past60`` likewise for the last 30/60 min;
* ``treatments_known``: 1 when insulin and carb records exist for this person (0: CGM only; then every
  insulin and carb feature is 0, and the model was trained to forecast from CGM alone in that case).

Targets (training): (reading at now + h - last reading) / 50 for h in ``HORIZONS_MIN``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.carb_absorption import absorbed_fraction
from models.insulin_action import ExponentialInsulinCurve

FEATURE_VERSION = "glucotwin-features-v1"
BIN_MIN = 5.0
GLUCOSE_BINS = 24
INSULIN_BINS = 72
CARB_BINS = 48
HORIZONS_MIN: tuple[float, ...] = (30.0, 60.0, 90.0, 120.0)
GLUCOSE_CENTER_MG_DL = 140.0
GLUCOSE_SCALE_MG_DL = 50.0
DELTA_SCALE_MG_DL = 20.0
EFFECT_SCALE_MG_DL = 50.0
TARGET_SCALE_MG_DL = 50.0
CARB_ABSORPTION_MIN = 180.0
CARB_DELAY_MIN = 10.0

FEATURE_NAMES: tuple[str, ...] = (
    ("g_last", "age_last")
    + tuple(f"dg_{k}" for k in range(1, GLUCOSE_BINS))
    + ("missing_frac",)
    + tuple(f"ins_{h:g}" for h in HORIZONS_MIN) + ("ins_iob", "ins_past30", "ins_past60")
    + tuple(f"carb_{h:g}" for h in HORIZONS_MIN) + ("carb_cob", "carb_past30", "carb_past60")
    + ("treatments_known",)
)
N_FEATURES = len(FEATURE_NAMES)


class FeatureInputError(ValueError):
    """Bins of the wrong shape or therapy settings that are not positive and finite."""


@dataclass(frozen=True)
class FeatureSettings:
    """Therapy settings the insulin and carb features use."""

    basal_u_per_h: float
    insulin_sensitivity_mg_dl_per_u: float
    carb_ratio_g_per_u: float
    insulin_peak_min: float = 75.0
    insulin_duration_min: float = 360.0

    def __post_init__(self) -> None:
        for name in ("insulin_sensitivity_mg_dl_per_u", "carb_ratio_g_per_u"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise FeatureInputError(f"{name}={v!r} must be > 0")
        if not (math.isfinite(self.basal_u_per_h) and self.basal_u_per_h >= 0):
            raise FeatureInputError(f"basal_u_per_h={self.basal_u_per_h!r} must be >= 0")


def _weights(settings: FeatureSettings) -> dict[str, NDArray[np.float64]]:
    """Per-bin weights: feature = bins @ weight (ages are the bins' lower edges, 5k min)."""
    curve = ExponentialInsulinCurve(settings.insulin_peak_min, settings.insulin_duration_min)
    isf = settings.insulin_sensitivity_mg_dl_per_u
    csf = isf / settings.carb_ratio_g_per_u
    ins_age = np.arange(INSULIN_BINS) * BIN_MIN
    carb_age = np.arange(CARB_BINS) * BIN_MIN

    def carb_f(age: NDArray[np.float64]) -> NDArray[np.float64]:
        return absorbed_fraction(age - CARB_DELAY_MIN, CARB_ABSORPTION_MIN)

    w: dict[str, NDArray[np.float64]] = {}
    iob_now = curve.iob_fraction(ins_age)
    for h in HORIZONS_MIN:
        w[f"ins_{h:g}"] = -isf * (iob_now - curve.iob_fraction(ins_age + h)) / EFFECT_SCALE_MG_DL
    w["ins_iob"] = isf * iob_now / EFFECT_SCALE_MG_DL
    for past in (30.0, 60.0):
        w[f"ins_past{past:g}"] = -isf * (curve.iob_fraction(ins_age - past) - iob_now) / EFFECT_SCALE_MG_DL
    f_now = carb_f(carb_age)
    for h in HORIZONS_MIN:
        w[f"carb_{h:g}"] = csf * (carb_f(carb_age + h) - f_now) / EFFECT_SCALE_MG_DL
    w["carb_cob"] = csf * (1.0 - f_now) / EFFECT_SCALE_MG_DL
    for past in (30.0, 60.0):
        w[f"carb_past{past:g}"] = csf * (f_now - carb_f(carb_age - past)) / EFFECT_SCALE_MG_DL
    return w


_WEIGHT_CACHE: dict[FeatureSettings, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
_INSULIN_FEATURES = tuple(n for n in FEATURE_NAMES if n.startswith("ins_"))
_CARB_FEATURES = tuple(n for n in FEATURE_NAMES if n.startswith("carb_"))


def feature_weights(settings: FeatureSettings) -> dict[str, NDArray[np.float64]]:
    """Per-bin weight vector of every insulin and carb feature."""
    return _weights(settings)


def _weight_matrices(settings: FeatureSettings) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(INSULIN_BINS, n_ins) and (CARB_BINS, n_carb) matrices, cached per settings."""
    if settings not in _WEIGHT_CACHE:
        if len(_WEIGHT_CACHE) > 256:
            _WEIGHT_CACHE.clear()
        w = _weights(settings)
        _WEIGHT_CACHE[settings] = (np.stack([w[n] for n in _INSULIN_FEATURES], axis=1),
                                   np.stack([w[n] for n in _CARB_FEATURES], axis=1))
    return _WEIGHT_CACHE[settings]


def _fill_glucose(glucose_bins: NDArray[np.float64]) -> tuple[NDArray, NDArray, NDArray]:
    """(last reading, its bin index, filled bins): gaps interpolated over bin index, ends held. Rows with no
    reading at all get NaN."""
    g = np.asarray(glucose_bins, dtype=np.float64)
    ok = np.isfinite(g)
    any_ok = ok.any(axis=1)
    first = np.where(any_ok, np.argmax(ok, axis=1), 0)
    rows = np.arange(g.shape[0])
    last = np.where(any_ok, g[rows, first], np.nan)
    filled = g.copy()
    bad_rows = np.flatnonzero(~ok.all(axis=1) & any_ok)
    idx = np.arange(g.shape[1], dtype=float)
    for r in bad_rows:  # only rows with gaps pay for interpolation
        filled[r] = np.interp(idx, idx[ok[r]], g[r, ok[r]])
    filled[~any_ok] = np.nan
    return last, first.astype(float), filled


def features_from_bins(
    glucose_bins: NDArray[np.float64], insulin_bins: NDArray[np.float64], carb_bins: NDArray[np.float64],
    settings: FeatureSettings, treatments_known: NDArray[np.float64] | float,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Features (B, N_FEATURES) float32 and the last reading (B,) mg/dL (NaN: no reading in 2 h)."""
    g = np.atleast_2d(np.asarray(glucose_bins, dtype=np.float64))
    ins = np.atleast_2d(np.asarray(insulin_bins, dtype=np.float64))
    carbs = np.atleast_2d(np.asarray(carb_bins, dtype=np.float64))
    b = g.shape[0]
    if g.shape != (b, GLUCOSE_BINS) or ins.shape != (b, INSULIN_BINS) or carbs.shape != (b, CARB_BINS):
        raise FeatureInputError(
            f"bins must be (B, {GLUCOSE_BINS}), (B, {INSULIN_BINS}), (B, {CARB_BINS}); got {g.shape}, {ins.shape}, "
            f"{carbs.shape}"
        )
    known = np.broadcast_to(np.asarray(treatments_known, dtype=np.float64), (b,))
    last, last_bin, filled = _fill_glucose(g)
    out = np.zeros((b, N_FEATURES), dtype=np.float64)
    out[:, 0] = (last - GLUCOSE_CENTER_MG_DL) / GLUCOSE_SCALE_MG_DL
    out[:, 1] = last_bin * BIN_MIN / 30.0
    out[:, 2 : 2 + GLUCOSE_BINS - 1] = (filled[:, 1:] - last[:, None]) / DELTA_SCALE_MG_DL
    col = 1 + GLUCOSE_BINS
    out[:, col] = 1.0 - np.isfinite(g).mean(axis=1)
    col += 1
    w_ins, w_carb = _weight_matrices(settings)
    ins = np.where(np.isfinite(ins), ins, 0.0) * known[:, None]
    carbs = np.where(np.isfinite(carbs), carbs, 0.0) * known[:, None]
    out[:, col : col + w_ins.shape[1]] = ins @ w_ins
    col += w_ins.shape[1]
    out[:, col : col + w_carb.shape[1]] = carbs @ w_carb
    col += w_carb.shape[1]
    out[:, col] = known
    out[~np.isfinite(last)] = 0.0  # no reading: the forecaster returns NaN anyway; keep the input finite
    return out.astype(np.float32), last


def _sliding(values: NDArray, n_bins: int, fill: float) -> NDArray:
    """(N, n_bins): row i holds values[i], values[i-1], ..., values[i-n_bins+1] (``fill`` before the start)."""
    padded = np.concatenate([np.full(n_bins - 1, fill, dtype=np.float64), np.asarray(values, dtype=np.float64)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_bins)
    return windows[:, ::-1]


def grid_bins(
    glucose_mg_dl: NDArray, insulin_u: NDArray, carbs_g: NDArray,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Bins for every sample i of one row already on the 5-min grid (value i at minute 5i).

    ``insulin_u`` is bolus units plus basal deviation units delivered in the 5 min from each sample."""
    return (_sliding(glucose_mg_dl, GLUCOSE_BINS, math.nan), _sliding(insulin_u, INSULIN_BINS, 0.0),
            _sliding(carbs_g, CARB_BINS, 0.0))


def _bin_index(now_minute: float, minute: float) -> int:
    return int(math.floor((now_minute - minute) / BIN_MIN + 1e-9))


def bin_history(
    now_minute: float,
    glucose: Iterable[tuple[float, float]],
    boluses: Iterable[tuple[float, float]] = (),
    basal_changes: Sequence[tuple[float, float]] = (),
    carbs: Iterable[tuple[float, float]] = (),
    scheduled_basal_u_per_h: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Bins (1, n) at ``now_minute`` from time-stamped events; events after ``now_minute`` are ignored.

    ``basal_changes``: (minute, U/h) in time order, NaN meaning "back to the scheduled rate". The delivered
    rate minus the scheduled rate, integrated over each bin's interval [now - 5(k+1), now - 5k), is that
    bin's basal deviation (U)."""
    g = [math.nan] * GLUCOSE_BINS
    g_at = [-math.inf] * GLUCOSE_BINS
    oldest = now_minute - GLUCOSE_BINS * BIN_MIN - 60.0  # readings arrive in time order (60 min of slack)
    readings = glucose if isinstance(glucose, Sequence | deque) else list(glucose)
    for t, v in reversed(readings):
        if t < oldest:
            break
        k = _bin_index(now_minute, t)
        if 0 <= k < GLUCOSE_BINS and math.isfinite(v) and t > g_at[k]:
            g[k], g_at[k] = v, t
    ins = np.zeros(INSULIN_BINS)
    for t, u in boluses:
        k = _bin_index(now_minute, t)
        if 0 <= k < INSULIN_BINS:
            ins[k] += u
    c = np.zeros(CARB_BINS)
    for t, grams in carbs:
        k = _bin_index(now_minute, t)
        if 0 <= k < CARB_BINS:
            c[k] += grams
    if basal_changes:
        window_start = now_minute - INSULIN_BINS * BIN_MIN
        for i, (t, rate) in enumerate(basal_changes):
            if t > now_minute:
                break
            end = basal_changes[i + 1][0] if i + 1 < len(basal_changes) else now_minute
            end = min(end, now_minute)
            start = max(t, window_start)
            if end <= start or math.isnan(rate) or rate == scheduled_basal_u_per_h:
                continue
            deviation_u_per_min = (rate - scheduled_basal_u_per_h) / 60.0
            # spread over the bins the interval [start, end) touches
            k_hi = min(INSULIN_BINS - 1, int(math.floor((now_minute - start) / BIN_MIN - 1e-9)))
            k_lo = max(0, int(math.floor((now_minute - end) / BIN_MIN)))
            for k in range(k_lo, k_hi + 1):
                b_start, b_end = now_minute - BIN_MIN * (k + 1), now_minute - BIN_MIN * k
                overlap = min(end, b_end) - max(start, b_start)
                if overlap > 0:
                    ins[k] += deviation_u_per_min * overlap
    return np.array(g)[None, :], ins[None, :], c[None, :]


def grid_targets(glucose_mg_dl: NDArray, horizons_min: Sequence[float] = HORIZONS_MIN) -> NDArray[np.float64]:
    """(N, H) reading at sample i + h/5 (NaN past the end or when missing)."""
    g = np.asarray(glucose_mg_dl, dtype=np.float64)
    out = np.full((g.size, len(horizons_min)), np.nan)
    for j, h in enumerate(horizons_min):
        s = int(round(h / BIN_MIN))
        if s < g.size:
            out[: g.size - s, j] = g[s:]
    return out
