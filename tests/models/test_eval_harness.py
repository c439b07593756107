"""Causal replay: every method side by side, nothing from the future, a registry for new methods."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import harness
from models.evaluation.harness import (
    UnknownMethodError,
    format_table,
    make_method,
    register_method,
    registered_methods,
    replay,
    set_hub_method,
)
from models.evaluation.recordings import Recording
from models.forecast.baselines import LastValueForecaster
from models.twin.twin import TwinSettings

from .synthetic_glucose_traces import make_trace

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)


def _recording(hours: float = 8.0, seed: int = 2) -> Recording:
    tr = make_trace(hours=hours, seed=seed, meals=((60, 45), (300, 60)))
    b, c = tr.bolus_u > 0, tr.carbs_g > 0
    return Recording("synthetic", 0.0, tr.minutes, tr.cgm_mg_dl, tr.minutes[b] - 2.5, tr.bolus_u[b],
                     np.array([0.0]), np.array([1.0]), tr.minutes[c] - 2.5, tr.carbs_g[c])


@pytest.fixture(scope="module")
def report():
    return replay(_recording(), SETTINGS, methods=["last_value", "linear", "loop", "twin"], forecast_every=2)


def test_all_methods_are_scored_side_by_side(report) -> None:
    assert list(report.accuracy) == ["last_value", "linear", "loop", "twin"]
    for name, by_h in report.accuracy.items():
        for h in (30.0, 60.0, 90.0, 120.0):
            acc = by_h[h]
            assert acc.n_pairs > 20, name
            assert 0 < acc.rmse_mg_dl < 150 and 0 <= acc.coverage_95_percent <= 100
            assert sum(acc.clarke_percent.values()) == pytest.approx(100.0)
    text = format_table(report)
    assert "twin*" in text and "Parkes" in text
    data = report.to_dict()
    assert data["hub_method"] == "twin" and set(data["methods"]) == set(report.accuracy)


def test_forecasts_use_only_the_past() -> None:
    rec = _recording(hours=4.0)
    changed = _recording(hours=4.0)
    cut = rec.glucose_minutes[len(rec.glucose_minutes) // 2]
    changed.glucose_mg_dl = np.where(changed.glucose_minutes > cut, 300.0, changed.glucose_mg_dl)
    changed.carbs_g = np.where(changed.carb_minutes > cut, 100.0, changed.carbs_g)
    methods = ["last_value", "linear", "loop", "twin"]
    a = replay(rec, SETTINGS, methods=methods)
    b = replay(changed, SETTINGS, methods=methods)
    before = a.runs["twin"].issued_minutes <= cut
    for name in methods:
        assert np.allclose(a.runs[name].mean_mg_dl[before], b.runs[name].mean_mg_dl[before], equal_nan=True), name
        assert np.allclose(a.runs[name].upper_95_mg_dl[before], b.runs[name].upper_95_mg_dl[before],
                           equal_nan=True), name


def test_registry_takes_new_methods_and_names_the_hub(monkeypatch) -> None:
    monkeypatch.setattr(harness, "_REGISTRY", dict(harness._REGISTRY))
    monkeypatch.setattr(harness, "_HUB", {"method": "twin"})

    class Doubled(LastValueForecaster):
        name = "onnx_stub_for_test"

    register_method("onnx_stub_for_test", lambda settings: Doubled())
    assert "onnx_stub_for_test" in registered_methods()
    with pytest.raises(ValueError):
        register_method("onnx_stub_for_test", lambda settings: Doubled())
    with pytest.raises(ValueError):
        register_method("bad name!", lambda settings: Doubled())
    set_hub_method("onnx_stub_for_test")
    rep = replay(_recording(hours=3.0), SETTINGS, methods=["last_value", "onnx_stub_for_test"])
    assert rep.hub_method == "onnx_stub_for_test"
    stub, last = rep.accuracy["onnx_stub_for_test"][30.0], rep.accuracy["last_value"][30.0]
    assert stub.rmse_mg_dl == pytest.approx(last.rmse_mg_dl)
    with pytest.raises(UnknownMethodError):
        make_method("nope", SETTINGS)
    with pytest.raises(UnknownMethodError):
        set_hub_method("nope")


def test_cgm_only_recording_with_gaps() -> None:
    rec = _recording(hours=6.0)
    keep = np.ones(rec.glucose_minutes.size, dtype=bool)
    keep[20:40] = False  # a 100-min dropout
    cgm_only = Recording("cgm", 0.0, rec.glucose_minutes[keep], rec.glucose_mg_dl[keep])
    rep = replay(cgm_only, SETTINGS, methods=["linear", "loop", "twin"], forecast_every=3)
    for name in ("linear", "loop", "twin"):
        assert rep.accuracy[name][30.0].n_pairs > 10
        assert np.all(np.isfinite(rep.runs[name].mean_mg_dl[np.isfinite(rep.runs[name].mean_mg_dl)]))
