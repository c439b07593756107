"""Causal replay of a recording through every forecasting method, side by side.

Replay: all events (basal changes, boluses, carbs, readings) are fed in time order; at each reading the
methods first receive every treatment up to and including that moment, then the reading, then they are
asked to forecast. A forecast therefore uses only data up to its moment, and per-person adaptation (filter
states, online residual intervals) happens only online. Afterwards each forecast is scored against the
reading nearest its target time (within +-2.5 min; otherwise it is left out).

Built-in methods: ``last_value``, ``linear``, ``loop`` (baselines), ``twin`` (UKF, insulin relative to basal:
the hub's), ``twin_ekf`` (same model, EKF) and ``twin_published`` (Kanderian's equations as published).
Methods come from a registry: ``register_method(name, factory)`` where ``factory(settings) ->
GlucoseForecaster``. The built-in ones are the baselines and the twin; the ONNX forecaster and the hub's
combination register themselves later, either by calling ``register_method`` at import (``glucotwin eval
forecast --plugin module``) or through the ``glucotwin.forecasters`` entry-point group (name -> factory).
``HUB_METHOD`` names the method the hub runs (``set_hub_method``); reports say which one it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import numpy as np
from numpy.typing import NDArray

from models.evaluation.metrics import ForecastAccuracy, forecast_accuracy
from models.evaluation.recordings import Recording
from models.forecast.baselines import (
    DEFAULT_HORIZONS_MIN,
    GlucoseForecaster,
    LastValueForecaster,
    LinearForecaster,
    LoopEffectForecaster,
    TwinForecaster,
)
from models.twin.twin import TwinSettings

MethodFactory = Callable[[TwinSettings], GlucoseForecaster]
ENTRY_POINT_GROUP = "glucotwin.forecasters"
TARGET_TOLERANCE_MIN = 2.5


class UnknownMethodError(KeyError):
    """A method name that is not registered."""

    def __str__(self) -> str:
        return f"unknown forecasting method {self.args[0]!r}; registered: {', '.join(registered_methods())}"


_REGISTRY: dict[str, MethodFactory] = {
    "last_value": lambda settings: LastValueForecaster(),
    "linear": lambda settings: LinearForecaster(),
    "loop": lambda settings: LoopEffectForecaster(settings),
    "twin": lambda settings: TwinForecaster(settings),
    "twin_ekf": lambda settings: TwinForecaster(settings, filter_kind="ekf"),
    "twin_published": lambda settings: TwinForecaster(settings, insulin_action="zero"),
}
_HUB = {"method": "twin"}
_entry_points_loaded = {"done": False}


def register_method(name: str, factory: MethodFactory, *, replace: bool = False) -> None:
    """Add a forecasting method (e.g. ``"onnx"``, ``"hub"``); ``replace`` to override an existing one."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"method name {name!r} must be letters, digits, '_' or '-'")
    if name in _REGISTRY and not replace:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = factory


def _load_entry_points() -> None:
    if _entry_points_loaded["done"]:
        return
    _entry_points_loaded["done"] = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.load()


def registered_methods() -> list[str]:
    _load_entry_points()
    return list(_REGISTRY)


def set_hub_method(name: str) -> None:
    """Name the method the hub runs (it must be registered)."""
    if name not in registered_methods():
        raise UnknownMethodError(name)
    _HUB["method"] = name


def hub_method() -> str:
    return _HUB["method"]


def make_method(name: str, settings: TwinSettings) -> GlucoseForecaster:
    _load_entry_points()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(name) from None
    return factory(settings)


@dataclass
class MethodRun:
    """One method's forecasts over a replay (rows: forecast moments; columns: horizons)."""

    name: str
    issued_minutes: NDArray[np.float64]
    mean_mg_dl: NDArray[np.float64]
    lower_95_mg_dl: NDArray[np.float64]
    upper_95_mg_dl: NDArray[np.float64]
    seconds: float = 0.0


@dataclass
class ReplayReport:
    """Accuracy per method and horizon, with the forecasts that produced it."""

    recording: str
    horizons_min: tuple[float, ...]
    hub_method: str
    accuracy: dict[str, dict[float, ForecastAccuracy]]
    runs: dict[str, MethodRun] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "recording": self.recording,
            "hub_method": self.hub_method,
            "horizons_min": list(self.horizons_min),
            "methods": {
                name: {
                    "seconds": round(self.runs[name].seconds, 3) if name in self.runs else None,
                    "horizons": {f"{h:g}": acc.to_dict() for h, acc in by_h.items()},
                }
                for name, by_h in self.accuracy.items()
            },
        }


def _events(recording: Recording) -> list[tuple[float, int, str, float]]:
    """(minute, order, kind, value): treatments sort before a reading at the same minute."""
    events = [(float(t), 0, "basal", float(v)) for t, v in zip(recording.basal_minutes, recording.basal_u_per_h)]
    events += [(float(t), 1, "bolus", float(v)) for t, v in zip(recording.bolus_minutes, recording.bolus_u)]
    events += [(float(t), 2, "carbs", float(v)) for t, v in zip(recording.carb_minutes, recording.carbs_g)]
    events += [(float(t), 3, "glucose", float(v)) for t, v in zip(recording.glucose_minutes, recording.glucose_mg_dl)]
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def replay(
    recording: Recording, settings: TwinSettings, methods: Sequence[str] | None = None,
    horizons_min: Sequence[float] = DEFAULT_HORIZONS_MIN, forecast_every: int = 1,
) -> ReplayReport:
    """Replay ``recording`` causally through each method and score every forecast."""
    names = list(methods) if methods else registered_methods()
    forecasters = {name: make_method(name, settings) for name in names}
    horizons = np.asarray(horizons_min, dtype=float)
    issued: list[float] = []
    rows: dict[str, list[tuple[NDArray, NDArray, NDArray]]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    readings = 0
    for minute, _, kind, value in _events(recording):
        for name, method in forecasters.items():
            start = time.perf_counter()
            if kind == "basal":
                method.observe_basal(minute, value)
            elif kind == "bolus":
                method.observe_bolus(minute, value)
            elif kind == "carbs":
                method.observe_carbs(minute, value)
            else:
                method.observe_glucose(minute, value)
            seconds[name] += time.perf_counter() - start
        if kind != "glucose":
            continue
        readings += 1
        if (readings - 1) % forecast_every:
            continue
        issued.append(minute)
        for name, method in forecasters.items():
            start = time.perf_counter()
            fc = method.forecast(minute, horizons)
            seconds[name] += time.perf_counter() - start
            rows[name].append((fc.mean_mg_dl, fc.lower_95_mg_dl, fc.upper_95_mg_dl))
    issued_arr = np.asarray(issued, dtype=float)
    reference = _targets(recording, issued_arr, horizons)
    runs: dict[str, MethodRun] = {}
    accuracy: dict[str, dict[float, ForecastAccuracy]] = {}
    for name in names:
        shape = (len(issued), len(horizons))
        mean = np.array([r[0] for r in rows[name]]).reshape(shape)
        low = np.array([r[1] for r in rows[name]]).reshape(shape)
        high = np.array([r[2] for r in rows[name]]).reshape(shape)
        runs[name] = MethodRun(name, issued_arr, mean, low, high, seconds[name])
        accuracy[name] = {
            float(h): forecast_accuracy(reference[:, j], mean[:, j], low[:, j], high[:, j])
            for j, h in enumerate(horizons)
        }
    return ReplayReport(recording.name, tuple(float(h) for h in horizons), hub_method(), accuracy, runs)


def _targets(recording: Recording, issued: NDArray, horizons: NDArray) -> NDArray:
    """The reading nearest each target time (NaN if none within the tolerance)."""
    t, g = recording.glucose_minutes, recording.glucose_mg_dl
    out = np.full((issued.size, horizons.size), math.nan)
    if not t.size or not issued.size:
        return out
    target = issued[:, None] + horizons[None, :]
    idx = np.clip(np.searchsorted(t, target), 1, t.size - 1)
    before, after = t[idx - 1], t[idx]
    nearest = np.where(np.abs(target - before) <= np.abs(after - target), idx - 1, idx)
    ok = np.abs(t[nearest] - target) <= TARGET_TOLERANCE_MIN
    out[ok] = g[nearest][ok]
    return out


def format_table(report: ReplayReport, horizons: Sequence[float] = (30.0, 60.0)) -> str:
    """A plain-text table: one row per method and horizon."""
    head = (f"{'method':<16}{'h':>5}{'n':>6}{'RMSE':>7}{'MAE':>7}{'MARD%':>7}"
            f"{'Clarke A/B/C/D/E %':>28}{'Parkes A/B/C/D/E %':>28}{'cov95%':>8}")
    lines = [f"recording: {report.recording}   hub method: {report.hub_method}", head, "-" * len(head)]
    for name, by_h in report.accuracy.items():
        for h in horizons:
            acc = by_h.get(float(h))
            if acc is None:
                continue
            clarke = "/".join(f"{acc.clarke_percent[z]:.0f}" for z in "ABCDE")
            parkes = "/".join(f"{acc.parkes_percent[z]:.0f}" for z in "ABCDE")
            marker = "*" if name == report.hub_method else ""
            lines.append(
                f"{name + marker:<16}{h:>5g}{acc.n_pairs:>6}{acc.rmse_mg_dl:>7.1f}{acc.mae_mg_dl:>7.1f}"
                f"{acc.mard_percent:>7.1f}{clarke:>28}{parkes:>28}{acc.coverage_95_percent:>8.1f}"
            )
    lines.append("* the hub's method")
    return "\n".join(lines)
