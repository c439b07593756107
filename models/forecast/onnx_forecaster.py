"""Run time of the learned glucose forecaster (onnxruntime only) and the hub's combined forecast.

* :func:`load_model` opens ``glucose_forecaster.onnx`` after checking its SHA-256 against the sidecar
  ``glucose_forecaster.json`` (written by the trainer, quoted in MODEL_CARD.md) and that the sidecar's
  feature version and names are this code's (:mod:`models.forecast.features`); any mismatch is a
  :class:`ModelIntegrityError`, never a silently different model.
* :class:`OnnxForecaster` (method ``"onnx"``): features built causally from what it was told (the shared
  feature module, the same code as in training), the network's mean and 2.5/97.5 % quantiles, then an
  ONLINE conformal correction of the interval (:class:`OnlineConformal`).
* :class:`HubForecaster` (method ``"hub"``, THE METHOD THE HUB RUNS): the twin's what-if mean and the ONNX
  mean blended per horizon with the variance-minimising weight of two correlated forecasts, estimated online
  from their matured residuals, w = (s_t^2 - c) / (s_o^2 + s_t^2 - 2c) clipped to [0, 1] (Bates & Granger
  1969), starting from ``prior_onnx_weight``; the interval is the ONNX quantile band around the blended mean,
  conformally calibrated online. Nothing is fitted on the recording being replayed except these online
  quantities, which only use readings that have already arrived.

Online conformal (conformalised quantile regression, Romano et al. 2019, in its online sliding-window form):
each forecast's band [lo, hi] waits for the reading at its target time (+-2.5 min); its score
s = max(lo - y, y - hi) joins that horizon's window (last ``window`` scores). The published band is
[lo - q, hi + q] with q the ceil((n + 1) * 0.95)/n empirical quantile of the window once it holds
``min_count`` scores (q = 0 before: the network's own quantiles).

``register()`` adds ``onnx`` and ``hub`` to the evaluation harness and names ``hub`` the hub's method; the
plugin module ``models.forecast.onnx_plugin`` calls it at import (``glucotwin eval forecast --plugin
models.forecast.onnx_plugin``). Importing this module alone changes no global state.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from models.forecast.baselines import (
    CGM_RANGE_MG_DL,
    DEFAULT_HORIZONS_MIN,
    Forecast,
    GlucoseForecaster,
    TwinForecaster,
)
from models.forecast.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    INSULIN_BINS,
    BIN_MIN,
    FeatureSettings,
    bin_history,
    features_from_bins,
)
from models.twin.twin import DigitalTwin, TwinSettings

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = MODEL_DIR / "glucose_forecaster.onnx"
DEFAULT_SIDECAR_PATH = MODEL_DIR / "glucose_forecaster.json"
TREATMENT_KEEP_MIN = INSULIN_BINS * BIN_MIN + 10.0


class ModelIntegrityError(RuntimeError):
    """The model file is missing, its SHA-256 differs from the sidecar's, or it expects other features."""


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class ForecasterModel:
    """A verified ONNX session and its sidecar description."""

    session: ort.InferenceSession
    sidecar: dict[str, Any]
    path: Path
    sha256: str
    horizons_min: tuple[float, ...]
    target_scale_mg_dl: float

    @property
    def version(self) -> str:
        return str(self.sidecar["model_version"])

    def predict_change(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        """(B, 4, H) scaled change rows [mean, lower_95, median, upper_95]."""
        return self.session.run([self.sidecar["output_name"]], {self.sidecar["input_name"]: features})[0]


_CACHE: dict[tuple[str, str], ForecasterModel] = {}


def load_model(
    path: str | Path = DEFAULT_MODEL_PATH, sidecar_path: str | Path | None = None, expected_sha256: str | None = None,
) -> ForecasterModel:
    """The verified model (cached per file and hash; one intra-op thread, as on the hub)."""
    path = Path(path)
    sidecar_path = Path(sidecar_path) if sidecar_path is not None else path.with_suffix(".json")
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise ModelIntegrityError(f"{path}: cannot read the model: {error}") from error
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelIntegrityError(f"{sidecar_path}: cannot read the model's sidecar: {error}") from error
    digest = hashlib.sha256(blob).hexdigest()
    expected = expected_sha256 or sidecar.get("sha256")
    if digest != expected:
        raise ModelIntegrityError(f"{path}: SHA-256 {digest} does not match the expected {expected}")
    if sidecar.get("feature_version") != FEATURE_VERSION or tuple(sidecar.get("feature_names", ())) != FEATURE_NAMES:
        raise ModelIntegrityError(
            f"{path}: trained on features {sidecar.get('feature_version')!r}, this code builds {FEATURE_VERSION!r}"
        )
    key = (str(path), digest)
    if key not in _CACHE:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        _CACHE[key] = ForecasterModel(session, sidecar, path, digest, tuple(float(h) for h in sidecar["horizons_min"]),
                                      float(sidecar["target_scale_mg_dl"]))
    return _CACHE[key]


def feature_settings(settings: TwinSettings) -> FeatureSettings:
    return FeatureSettings(settings.basal_u_per_h, settings.insulin_sensitivity_mg_dl_per_u, settings.carb_ratio_g_per_u,
                           settings.insulin_peak_min, settings.insulin_duration_min)


class _MaturingQueue:
    """Forecasts waiting for the reading at their target time, per horizon (targets arrive in time order)."""

    def __init__(self, tolerance_min: float) -> None:
        self.tolerance_min = tolerance_min
        self.queues: dict[float, deque[tuple[float, tuple[float, ...]]]] = {}

    def add(self, target_minute: float, h: float, payload: tuple[float, ...]) -> None:
        self.queues.setdefault(h, deque()).append((target_minute, payload))

    def matured(self, minute: float) -> list[tuple[float, tuple[float, ...]]]:
        """(horizon, payload) of every forecast whose target is within the tolerance of ``minute``; forecasts
        whose target has passed without a reading are dropped."""
        out = []
        for h, queue in self.queues.items():
            while queue and queue[0][0] < minute - self.tolerance_min:
                queue.popleft()
            for target, payload in queue:
                if target > minute + self.tolerance_min:
                    break
                out.append((h, payload))
            while queue and abs(queue[0][0] - minute) <= self.tolerance_min:
                queue.popleft()
        return out


class _SortedWindow:
    """The last ``size`` values, also kept sorted (order statistics in O(log n) + a short memmove)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []

    def append(self, value: float) -> None:
        self.fifo.append(value)
        bisect.insort(self.sorted, value)
        if len(self.fifo) > self.size:
            old = self.fifo.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def __len__(self) -> int:
        return len(self.fifo)


class OnlineConformal:
    """Online split-conformal widening of quantile bands, per horizon (see the module docstring)."""

    def __init__(self, coverage: float = 0.95, window: int = 500, min_count: int = 30,
                 tolerance_min: float = 2.5) -> None:
        self.coverage = coverage
        self.window = window
        self.min_count = min_count
        self.scores: dict[float, _SortedWindow] = {}
        self.pending = _MaturingQueue(tolerance_min)

    def record(self, now_minute: float, horizons: NDArray, lower: NDArray, upper: NDArray) -> None:
        for h, lo, hi in zip(horizons, lower, upper):
            if math.isfinite(lo) and math.isfinite(hi):
                self.pending.add(now_minute + float(h), float(h), (float(lo), float(hi)))

    def observe(self, minute: float, glucose_mg_dl: float) -> None:
        for h, (lo, hi) in self.pending.matured(minute):
            window = self.scores.setdefault(h, _SortedWindow(self.window))
            window.append(max(lo - glucose_mg_dl, glucose_mg_dl - hi))

    def margin(self, h: float) -> float:
        """The ceil((n + 1) * coverage)-th smallest score (the largest when that exceeds n); 0 until
        ``min_count`` scores exist."""
        window = self.scores.get(float(h))
        if window is None or len(window) < self.min_count:
            return 0.0
        n = len(window)
        k = min(n, math.ceil((n + 1) * self.coverage))
        return window.sorted[k - 1]

    def calibrate(self, horizons: NDArray, lower: NDArray, upper: NDArray) -> tuple[NDArray, NDArray]:
        q = np.array([self.margin(float(h)) for h in horizons])
        lo, hi = lower - q, upper + q
        crossed = lo > hi  # a negative margin can cross a narrow band: collapse it to its middle
        mid = (lower + upper) / 2
        return np.where(crossed, mid, lo), np.where(crossed, mid, hi)


class OnnxForecaster(GlucoseForecaster):
    """The learned forecaster as a ``GlucoseForecaster`` (method ``"onnx"``)."""

    name = "onnx"

    def __init__(self, settings: TwinSettings, model: ForecasterModel | None = None, *,
                 conformal: bool = True) -> None:
        super().__init__()
        self.model = model or load_model()
        self.settings = settings
        self.features = feature_settings(settings)
        self.treatments_known = False
        self.conformal = OnlineConformal() if conformal else None

    def observe_bolus(self, minute: float, insulin_u: float) -> None:
        super().observe_bolus(minute, insulin_u)
        self.treatments_known = True
        self._prune(self.boluses, minute)

    def observe_carbs(self, minute: float, carbs_g: float) -> None:
        super().observe_carbs(minute, carbs_g)
        self.treatments_known = True
        self._prune(self.carbs, minute)

    def observe_basal(self, minute: float, basal_u_per_h: float) -> None:
        super().observe_basal(minute, basal_u_per_h)
        self.treatments_known = True
        # keep the rate in force at the start of the insulin window, drop older changes
        cutoff = minute - TREATMENT_KEEP_MIN
        while len(self.basal_changes) > 1 and self.basal_changes[1][0] <= cutoff:
            self.basal_changes.pop(0)

    def observe_glucose(self, minute: float, glucose_mg_dl: float) -> None:
        super().observe_glucose(minute, glucose_mg_dl)
        if self.conformal is not None:
            self.conformal.observe(float(minute), float(glucose_mg_dl))

    @staticmethod
    def _prune(events: list[tuple[float, float]], now: float) -> None:
        while events and events[0][0] < now - TREATMENT_KEEP_MIN:
            events.pop(0)

    def raw_forecast(self, now_minute: float) -> NDArray[np.float64]:
        """(4, H) mg/dL rows [mean, lower_95, median, upper_95] at the model's horizons (NaN: no reading in 2 h)."""
        g, ins, carbs = bin_history(now_minute, self.glucose, self.boluses, self.basal_changes, self.carbs,
                                    self.settings.basal_u_per_h)
        x, last = features_from_bins(g, ins, carbs, self.features, 1.0 if self.treatments_known else 0.0)
        if not math.isfinite(last[0]):
            return np.full((4, len(self.model.horizons_min)), math.nan)
        change = self.model.predict_change(x)[0].astype(np.float64)
        return np.clip(last[0] + change * self.model.target_scale_mg_dl, *CGM_RANGE_MG_DL)

    def at_horizons(self, raw: NDArray[np.float64], horizons: NDArray[np.float64]) -> NDArray[np.float64]:
        """Rows of ``raw`` at the requested horizons (linear in between; NaN beyond the model's reach)."""
        model_h = np.asarray(self.model.horizons_min)
        if np.array_equal(model_h, horizons):
            return raw
        out = np.full((raw.shape[0], horizons.size), math.nan)
        last = self.glucose[-1][1] if self.glucose else math.nan
        grid = np.concatenate([[0.0], model_h])
        for r in range(raw.shape[0]):
            values = np.concatenate([[last], raw[r]])
            inside = (horizons >= 0) & (horizons <= model_h[-1])
            out[r, inside] = np.interp(horizons[inside], grid, values)
        return out

    def forecast(self, now_minute: float, horizons_min: Sequence[float] = DEFAULT_HORIZONS_MIN) -> Forecast:
        horizons = np.asarray(horizons_min, dtype=float)
        rows = self.at_horizons(self.raw_forecast(float(now_minute)), horizons)
        mean, lower, upper = rows[0], np.minimum(rows[1], rows[0]), np.maximum(rows[3], rows[0])
        if self.conformal is not None:
            self.conformal.record(float(now_minute), horizons, lower, upper)
            lower, upper = self.conformal.calibrate(horizons, lower, upper)
        return Forecast(self.name, float(now_minute), horizons, mean, lower, upper)


class _ResidualPairWindow:
    """The last ``size`` residual pairs (a, b) with running sums of a^2, b^2 and a*b (O(1) per pair)."""

    def __init__(self, size: int) -> None:
        self.pairs: deque[tuple[float, float]] = deque()
        self.size = size
        self.sum_aa = self.sum_bb = self.sum_ab = 0.0
        self._since_exact = 0

    def append(self, a: float, b: float) -> None:
        self.pairs.append((a, b))
        self.sum_aa += a * a
        self.sum_bb += b * b
        self.sum_ab += a * b
        if len(self.pairs) > self.size:
            old_a, old_b = self.pairs.popleft()
            self.sum_aa -= old_a * old_a
            self.sum_bb -= old_b * old_b
            self.sum_ab -= old_a * old_b
        self._since_exact += 1
        if self._since_exact >= self.size:  # recompute now and then: running sums drift by rounding
            self._since_exact = 0
            self.sum_aa = math.fsum(a * a for a, _ in self.pairs)
            self.sum_bb = math.fsum(b * b for _, b in self.pairs)
            self.sum_ab = math.fsum(a * b for a, b in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


class OnlineBlendWeights:
    """Per-horizon variance-minimising weight of forecast A against forecast B from matured residual pairs."""

    def __init__(self, prior_weight_a: float = 0.9, window: int = 500, min_count: int = 30,
                 tolerance_min: float = 2.5) -> None:
        self.prior = prior_weight_a
        self.window = window
        self.min_count = min_count
        self.pairs: dict[float, _ResidualPairWindow] = {}
        self.pending = _MaturingQueue(tolerance_min)
        self._cache: dict[float, float] = {}

    def record(self, now_minute: float, horizons: NDArray, mean_a: NDArray, mean_b: NDArray) -> None:
        for h, a, b in zip(horizons, mean_a, mean_b):
            if math.isfinite(a) and math.isfinite(b):
                self.pending.add(now_minute + float(h), float(h), (float(a), float(b)))

    def observe(self, minute: float, glucose_mg_dl: float) -> None:
        for h, (a, b) in self.pending.matured(minute):
            self.pairs.setdefault(h, _ResidualPairWindow(self.window)).append(glucose_mg_dl - a, glucose_mg_dl - b)
            self._cache.pop(h, None)

    def weight_a(self, h: float) -> float:
        h = float(h)
        if h not in self._cache:
            self._cache[h] = self._weight(h)
        return self._cache[h]

    def _weight(self, h: float) -> float:
        window = self.pairs.get(h)
        if window is None or len(window) < self.min_count:
            return self.prior
        n = len(window)
        va, vb, c = window.sum_aa / n, window.sum_bb / n, window.sum_ab / n
        denom = va + vb - 2 * c
        if denom <= 1e-9:
            return self.prior
        return float(np.clip((vb - c) / denom, 0.0, 1.0))


HUB_TWIN_STEP_MIN = 10.0
HUB_TWIN_SUBSTEP_MIN = 5.0


class HubForecaster(GlucoseForecaster):
    """THE HUB'S FORECAST (method ``"hub"``): online blend of the ONNX forecaster and the twin, with an
    online-calibrated 95 % interval (see the module docstring)."""

    name = "hub"

    def __init__(self, settings: TwinSettings, model: ForecasterModel | None = None, *,
                 prior_onnx_weight: float = 0.9, twin_samples: int = 100,
                 shared_twin: Callable[[], DigitalTwin] | None = None) -> None:
        """``shared_twin``: the hub's own twin, kept up to date by its pipeline (see ``TwinForecaster``)."""
        super().__init__()
        self.onnx = OnnxForecaster(settings, model, conformal=False)
        # only the twin's mean enters the blend (the band is the ONNX quantiles, conformally widened), so the
        # twin's own interval calibration would be work for nothing. The mean is needed at the horizons (10-min
        # multiples), so the twin runs at the recommender's resolution (10-min output, 5-min Euler substeps):
        # half the cost of 2.5-min substeps, for at most ~5 mg/dL (2 %) at the peak of a large meal, far inside
        # the forecast's own error (tests/models/test_whatif.py pins the difference)
        self.twin = TwinForecaster(settings, n_samples=twin_samples, calibrate_intervals=False, shared_twin=shared_twin,
                                   step_min=HUB_TWIN_STEP_MIN, substep_min=HUB_TWIN_SUBSTEP_MIN)
        self.weights = OnlineBlendWeights(prior_onnx_weight)
        self.conformal = OnlineConformal()
        self.last_weights: NDArray[np.float64] = np.zeros(0)

    def observe_bolus(self, minute: float, insulin_u: float) -> None:
        self.onnx.observe_bolus(minute, insulin_u)
        self.twin.observe_bolus(minute, insulin_u)

    def observe_carbs(self, minute: float, carbs_g: float) -> None:
        self.onnx.observe_carbs(minute, carbs_g)
        self.twin.observe_carbs(minute, carbs_g)

    def observe_basal(self, minute: float, basal_u_per_h: float) -> None:
        self.onnx.observe_basal(minute, basal_u_per_h)
        self.twin.observe_basal(minute, basal_u_per_h)

    def observe_glucose(self, minute: float, glucose_mg_dl: float) -> None:
        super().observe_glucose(minute, glucose_mg_dl)
        self.onnx.observe_glucose(minute, glucose_mg_dl)
        self.twin.observe_glucose(minute, glucose_mg_dl)
        self.weights.observe(float(minute), float(glucose_mg_dl))
        self.conformal.observe(float(minute), float(glucose_mg_dl))

    def forecast(self, now_minute: float, horizons_min: Sequence[float] = DEFAULT_HORIZONS_MIN) -> Forecast:
        horizons = np.asarray(horizons_min, dtype=float)
        now = float(now_minute)
        rows = self.onnx.at_horizons(self.onnx.raw_forecast(now), horizons)
        onnx_mean = rows[0]
        twin_mean = self.twin.forecast(now, horizons).mean_mg_dl
        self.weights.record(now, horizons, onnx_mean, twin_mean)
        w = np.array([self.weights.weight_a(float(h)) for h in horizons])
        self.last_weights = w
        mean = np.where(np.isfinite(twin_mean), w * onnx_mean + (1 - w) * twin_mean, onnx_mean)
        lower = mean - np.maximum(onnx_mean - rows[1], 0.0)
        upper = mean + np.maximum(rows[3] - onnx_mean, 0.0)
        self.conformal.record(now, horizons, lower, upper)
        lower, upper = self.conformal.calibrate(horizons, lower, upper)
        return Forecast(self.name, now, horizons, mean, lower, upper)


HUB_METHOD_NAME = HubForecaster.name


def register() -> None:
    """Register ``onnx`` and ``hub`` with the evaluation harness and name ``hub`` the hub's method."""
    from models.evaluation.harness import register_method, set_hub_method

    register_method("onnx", lambda settings: OnnxForecaster(settings), replace=True)
    register_method("hub", lambda settings: HubForecaster(settings), replace=True)
    set_hub_method(HUB_METHOD_NAME)
