"""The shipped ONNX forecaster: integrity, causality, ordered quantiles, gaps and CGM-only input, and the
identity of the training-time and run-time features. Needs onnxruntime only (no torch)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation import harness
from models.evaluation.harness import hub_method, registered_methods, replay
from models.evaluation.recordings import Recording
from models.forecast.features import (
    FEATURE_NAMES,
    HORIZONS_MIN,
    N_FEATURES,
    FeatureSettings,
    bin_history,
    features_from_bins,
    grid_bins,
)
from models.forecast.onnx_forecaster import (
    DEFAULT_MODEL_PATH,
    DEFAULT_SIDECAR_PATH,
    HubForecaster,
    ModelIntegrityError,
    OnlineBlendWeights,
    OnlineConformal,
    OnnxForecaster,
    load_model,
    register,
    sha256_of,
)
from models.twin.twin import DigitalTwin, TwinSettings

from .synthetic_glucose_traces import make_trace

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)
MODEL_CARD = DEFAULT_MODEL_PATH.with_name("MODEL_CARD.md")


@pytest.fixture
def registered():
    """``onnx`` and ``hub`` registered (and ``hub`` named the hub's method) for one test; restored after."""
    registry, hub = dict(harness._REGISTRY), dict(harness._HUB)
    register()
    yield
    harness._REGISTRY.clear()
    harness._REGISTRY.update(registry)
    harness._HUB.clear()
    harness._HUB.update(hub)


def _recording(hours: float = 8.0, seed: int = 3, cgm_only: bool = False) -> Recording:
    t = make_trace(hours=hours, seed=seed)
    if cgm_only:
        return Recording("synthetic", 0.0, t.minutes, t.cgm_mg_dl)
    bolus = t.bolus_u > 0
    carbs = t.carbs_g > 0
    return Recording("synthetic", 0.0, t.minutes, t.cgm_mg_dl, t.minutes[bolus], t.bolus_u[bolus],
                     np.array([0.0]), np.array([t.basal_u_per_h]), t.minutes[carbs], t.carbs_g[carbs])


def _feed(forecaster, recording: Recording, until_minute: float) -> None:
    events = [(m, 0, "basal", v) for m, v in zip(recording.basal_minutes, recording.basal_u_per_h)]
    events += [(m, 1, "bolus", v) for m, v in zip(recording.bolus_minutes, recording.bolus_u)]
    events += [(m, 2, "carbs", v) for m, v in zip(recording.carb_minutes, recording.carbs_g)]
    events += [(m, 3, "glucose", v) for m, v in zip(recording.glucose_minutes, recording.glucose_mg_dl)]
    for m, _, kind, v in sorted(events):
        if m > until_minute:
            break
        getattr(forecaster, f"observe_{kind}")(float(m), float(v))


# -- integrity --------------------------------------------------------------------------------------------
def test_shipped_model_loads_and_its_hash_matches_sidecar_and_model_card() -> None:
    model = load_model()
    digest = sha256_of(DEFAULT_MODEL_PATH)
    sidecar = json.loads(DEFAULT_SIDECAR_PATH.read_text())
    assert model.sha256 == digest == sidecar["sha256"]
    assert re.search(rf"\b{digest}\b", MODEL_CARD.read_text()), "MODEL_CARD.md must quote the model's SHA-256"
    assert sidecar["model_version"] in MODEL_CARD.read_text()
    assert DEFAULT_MODEL_PATH.stat().st_size < 1_000_000
    inputs = model.session.get_inputs()
    assert inputs[0].name == "features" and inputs[0].shape[1] == N_FEATURES
    out = model.predict_change(np.zeros((3, N_FEATURES), dtype=np.float32))
    assert out.shape == (3, 4, len(HORIZONS_MIN)) and np.isfinite(out).all()


def test_model_is_opset_17() -> None:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(DEFAULT_MODEL_PATH))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]


def test_tampered_model_or_foreign_features_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "glucose_forecaster.onnx"
    blob = bytearray(DEFAULT_MODEL_PATH.read_bytes())
    blob[-1] ^= 0xFF
    bad.write_bytes(bytes(blob))
    shutil.copy(DEFAULT_SIDECAR_PATH, tmp_path / "glucose_forecaster.json")
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        load_model(bad)
    good = tmp_path / "good.onnx"
    shutil.copy(DEFAULT_MODEL_PATH, good)
    sidecar = json.loads(DEFAULT_SIDECAR_PATH.read_text())
    sidecar["feature_version"] = "something-else"
    (tmp_path / "good.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelIntegrityError, match="features"):
        load_model(good)
    with pytest.raises(ModelIntegrityError, match="cannot read"):
        load_model(tmp_path / "missing.onnx")


def test_onnx_and_hub_are_registered_and_hub_is_the_hubs_method(registered) -> None:
    assert {"onnx", "hub"} <= set(registered_methods())
    assert hub_method() == "hub"


# -- features: one definition for training and run time ----------------------------------------------------
def test_grid_features_equal_run_time_features() -> None:
    t = make_trace(hours=10, seed=5)
    cgm = t.cgm_mg_dl.copy()
    cgm[40:46] = np.nan  # a 30-min gap
    fs = FeatureSettings(t.basal_u_per_h, t.isf_mg_dl_per_u, t.carb_ratio_g_per_u)
    x_grid, last_grid = features_from_bins(*grid_bins(cgm, t.bolus_u, t.carbs_g), fs, 1.0)
    for i in (0, 3, 30, 44, 60, len(cgm) - 1):
        now = float(t.minutes[i])
        glucose = [(m, g) for m, g in zip(t.minutes, cgm) if np.isfinite(g)]
        boluses = [(m, u) for m, u in zip(t.minutes, t.bolus_u) if u > 0]
        carbs = [(m, c) for m, c in zip(t.minutes, t.carbs_g) if c > 0]
        x_rt, last_rt = features_from_bins(*bin_history(now, glucose, boluses, [(0.0, t.basal_u_per_h)], carbs,
                                                        t.basal_u_per_h), fs, 1.0)
        np.testing.assert_allclose(x_rt[0], x_grid[i], rtol=1e-6, atol=1e-6)
        assert last_rt[0] == last_grid[i]


def test_basal_deviation_is_insulin_and_scheduled_basal_is_not() -> None:
    glucose = [(float(m), 120.0) for m in range(0, 125, 5)]
    _, ins0, _ = bin_history(120.0, glucose, basal_changes=[(0.0, 1.0)], scheduled_basal_u_per_h=1.0)
    assert not ins0.any()
    _, ins, _ = bin_history(120.0, glucose, basal_changes=[(0.0, 1.0), (60.0, 0.0), (90.0, math.nan)],
                            scheduled_basal_u_per_h=1.0)
    assert ins.sum() == pytest.approx(-0.5)  # 30 min at 1 U/h below schedule
    assert ins[0, :6].sum() == 0.0 and ins[0, 6:12].sum() == pytest.approx(-0.5)


def test_future_events_do_not_change_features() -> None:
    t = make_trace(hours=6, seed=2)
    now = 180.0
    past = [(m, g) for m, g in zip(t.minutes, t.cgm_mg_dl) if m <= now]
    everything = [(m, g) for m, g in zip(t.minutes, t.cgm_mg_dl)] + [(now + 5, 400.0)]
    a = bin_history(now, past, [(60.0, 3.0)], [], [(60.0, 40.0)])
    b = bin_history(now, everything, [(60.0, 3.0), (now + 1, 9.0)], [], [(60.0, 40.0), (now + 2, 90.0)])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# -- the forecaster -----------------------------------------------------------------------------------------
def test_changing_the_future_does_not_change_a_forecast(registered) -> None:
    rec = _recording(hours=6)
    cut = 200.0
    other = Recording(rec.name, 0.0, rec.glucose_minutes.copy(), rec.glucose_mg_dl.copy(), rec.bolus_minutes,
                      rec.bolus_u, rec.basal_minutes, rec.basal_u_per_h, rec.carb_minutes, rec.carbs_g)
    future = other.glucose_minutes > cut
    other.glucose_mg_dl[future] = np.clip(other.glucose_mg_dl[future] * 1.7 + 30, 40, 400)
    a = replay(rec, SETTINGS, methods=["onnx", "hub"])
    b = replay(other, SETTINGS, methods=["onnx", "hub"])
    for name in ("onnx", "hub"):
        issued = a.runs[name].issued_minutes <= cut
        assert issued.sum() > 30
        for field in ("mean_mg_dl", "lower_95_mg_dl", "upper_95_mg_dl"):
            np.testing.assert_array_equal(getattr(a.runs[name], field)[issued], getattr(b.runs[name], field)[issued])
        later = ~issued
        assert not np.array_equal(a.runs[name].mean_mg_dl[later], b.runs[name].mean_mg_dl[later])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(40, 400)), min_size=1, max_size=30),
    st.floats(0, 10), st.floats(0, 120), st.booleans(),
)
def test_quantiles_ordered_and_finite_for_any_history(readings, bolus_u, carbs_g, with_treatments) -> None:
    forecaster = OnnxForecaster(SETTINGS, conformal=False)
    if with_treatments:
        forecaster.observe_basal(0.0, 1.0)
        forecaster.observe_bolus(0.0, bolus_u)
        forecaster.observe_carbs(0.0, carbs_g)
    minute = 0.0
    for value in readings:
        minute += 5.0
        if value is not None:
            forecaster.observe_glucose(minute, value)
    raw = forecaster.raw_forecast(minute)
    if not any(v is not None for v in readings):
        assert np.isnan(raw).all()
        return
    assert np.isfinite(raw).all()
    mean, lower, median, upper = raw
    assert (lower <= median + 1e-9).all() and (median <= upper + 1e-9).all()
    fc = forecaster.forecast(minute)
    assert (fc.lower_95_mg_dl <= fc.mean_mg_dl).all() and (fc.mean_mg_dl <= fc.upper_95_mg_dl).all()


@pytest.mark.parametrize("cgm_only", [False, True])
def test_forecasts_finite_with_gaps_and_cgm_only(registered, cgm_only: bool) -> None:
    rec = _recording(hours=8, cgm_only=cgm_only)
    keep = ~((rec.glucose_minutes > 120) & (rec.glucose_minutes < 200))  # an 80-min dropout
    rec.glucose_minutes, rec.glucose_mg_dl = rec.glucose_minutes[keep], rec.glucose_mg_dl[keep]
    report = replay(rec, SETTINGS, methods=["onnx", "hub"])
    for name in ("onnx", "hub"):
        run = report.runs[name]
        assert np.isfinite(run.mean_mg_dl).all()
        assert np.isfinite(run.lower_95_mg_dl).all() and np.isfinite(run.upper_95_mg_dl).all()
        assert report.accuracy[name][30.0].n_pairs > 30


def test_forecast_off_the_model_horizons_interpolates_and_says_nan_beyond() -> None:
    forecaster = OnnxForecaster(SETTINGS)
    _feed(forecaster, _recording(hours=4), 200.0)
    fc = forecaster.forecast(200.0, [15.0, 30.0, 150.0])
    assert np.isfinite(fc.mean_mg_dl[:2]).all() and math.isnan(fc.mean_mg_dl[2])


def test_hub_blends_between_onnx_and_twin() -> None:
    hub = HubForecaster(SETTINGS, twin_samples=20)
    _feed(hub, _recording(hours=4), 230.0)
    seen = []
    twin_forecast = hub.twin.forecast
    hub.twin.forecast = lambda *a, **k: seen.append(twin_forecast(*a, **k)) or seen[-1]  # type: ignore[method-assign]
    fc = hub.forecast(230.0)
    onnx = hub.onnx.raw_forecast(230.0)[0]
    twin = seen[0].mean_mg_dl
    w = hub.last_weights
    assert np.isfinite(twin).all() and ((w >= 0) & (w <= 1)).all()
    np.testing.assert_allclose(fc.mean_mg_dl, w * onnx + (1 - w) * twin, rtol=1e-9)


class _OwnerOfTheTwin:
    """Stands in for the hub's pipeline: updates its twin on every reading, then feeds the forecaster."""

    def __init__(self) -> None:
        self.twin = DigitalTwin.from_therapy_settings(SETTINGS)
        self.hub = HubForecaster(SETTINGS, twin_samples=20, shared_twin=lambda: self.twin)
        self.insulin_u = self.carbs_g = 0.0
        self.rate = SETTINGS.basal_u_per_h

    def observe_basal(self, minute: float, rate: float) -> None:
        self.rate = SETTINGS.basal_u_per_h if math.isnan(rate) else rate
        self.hub.observe_basal(minute, rate)

    def observe_bolus(self, minute: float, units: float) -> None:
        self.insulin_u += units
        self.hub.observe_bolus(minute, units)

    def observe_carbs(self, minute: float, grams: float) -> None:
        self.carbs_g += grams
        self.hub.observe_carbs(minute, grams)

    def observe_glucose(self, minute: float, glucose: float) -> None:
        self.twin.update(glucose, minute, insulin_u=self.insulin_u, carbs_g=self.carbs_g, basal_u_per_h=self.rate)
        self.insulin_u = self.carbs_g = 0.0
        self.hub.observe_glucose(minute, glucose)


def test_hub_forecast_from_a_shared_twin_equals_its_own_twin() -> None:
    """The hub's pipeline lends its twin to the forecaster: same inputs, same forecast, one filter update."""
    own = HubForecaster(SETTINGS, twin_samples=20)
    owner = _OwnerOfTheTwin()
    recording = _recording(hours=6)
    _feed(own, recording, 330.0)
    _feed(owner, recording, 330.0)
    np.testing.assert_array_equal(owner.twin.x, own.twin.twin.x)
    updates = owner.twin.counters["used"]
    mine, theirs = own.forecast(330.0), owner.hub.forecast(330.0)
    np.testing.assert_allclose(theirs.mean_mg_dl, mine.mean_mg_dl, rtol=1e-12)
    np.testing.assert_allclose(theirs.lower_95_mg_dl, mine.lower_95_mg_dl, rtol=1e-12)
    assert owner.twin.counters["used"] == updates  # forecasting never moved the owner's twin


# -- online calibration pieces ------------------------------------------------------------------------------
def test_online_conformal_reaches_nominal_coverage_and_only_uses_matured_targets() -> None:
    rng = np.random.default_rng(0)
    cal = OnlineConformal(window=400)
    h = np.array([30.0])
    inside = []
    for k in range(2000):
        now = 5.0 * k
        cal.observe(now, float(rng.standard_t(4) * 20))
        lo, hi = cal.calibrate(h, np.array([-5.0]), np.array([5.0]))  # a far too narrow band
        cal.record(now, h, np.array([-5.0]), np.array([5.0]))
        if k > 600:
            y = rng.standard_t(4) * 20
            inside.append(lo[0] <= y <= hi[0])
    assert 93.0 <= 100 * np.mean(inside) <= 97.0
    fresh = OnlineConformal(min_count=1)
    fresh.record(0.0, h, np.array([0.0]), np.array([1.0]))
    fresh.observe(10.0, 50.0)  # not the target time: no score
    assert fresh.margin(30.0) == 0.0


def test_blend_weight_prefers_the_better_forecast() -> None:
    rng = np.random.default_rng(1)
    blend = OnlineBlendWeights(prior_weight_a=0.5)
    h = np.array([30.0])
    for k in range(200):
        truth = 100 + 30 * math.sin(k / 10)
        blend.observe(5.0 * k, truth)
        future = 100 + 30 * math.sin((k + 6) / 10)
        blend.record(5.0 * k, h, np.array([future + rng.normal(0, 2)]), np.array([future + rng.normal(0, 20)]))
    assert blend.weight_a(30.0) > 0.9


def test_blend_weight_from_running_sums_equals_the_direct_formula_over_the_window() -> None:
    rng = np.random.default_rng(4)
    blend = OnlineBlendWeights(prior_weight_a=0.5, window=50, min_count=10)
    h = np.array([30.0])
    residuals: list[tuple[float, float]] = []
    forecasts: dict[int, tuple[float, float]] = {}
    for k in range(400):  # 8 windows: pairs leave the window and the running sums are re-summed
        truth = float(rng.normal(120, 30))
        blend.observe(5.0 * k, truth)
        if k >= 6:
            a, b = forecasts[k - 6]
            residuals.append((truth - a, truth - b))
        forecasts[k] = (truth + rng.normal(0, 10), truth + rng.normal(5, 25))
        blend.record(5.0 * k, h, np.array([forecasts[k][0]]), np.array([forecasts[k][1]]))
    e = np.array(residuals[-50:])
    va, vb, c = np.mean(e[:, 0] ** 2), np.mean(e[:, 1] ** 2), np.mean(e[:, 0] * e[:, 1])
    assert blend.weight_a(30.0) == pytest.approx(float(np.clip((vb - c) / (va + vb - 2 * c), 0, 1)), rel=1e-9)


def test_feature_names_match_the_sidecar() -> None:
    assert tuple(json.loads(DEFAULT_SIDECAR_PATH.read_text())["feature_names"]) == FEATURE_NAMES


def test_eval_cli_with_the_plugin_names_hub_and_scores_every_method(tmp_path: Path) -> None:
    """End to end in a fresh process: ``glucotwin eval forecast --plugin models.forecast.onnx_plugin``."""
    import subprocess
    import sys

    t = make_trace(hours=5, seed=9)
    lines = ["timestamp,glucose_mg_dl,bolus_units,basal_units_per_hour,carbs_g"]
    for k, minute in enumerate(t.minutes):
        lines.append(f"{1_700_000_000_000 + int(minute * 60_000)},{t.cgm_mg_dl[k]:.1f},"
                     f"{t.bolus_u[k] or ''},{'1.0' if k == 0 else ''},{t.carbs_g[k] or ''}")
    rec, out = tmp_path / "r.csv", tmp_path / "r.json"
    rec.write_text("\n".join(lines) + "\n")
    code = ("import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "eval", "forecast", "--recording", str(rec), "--json", str(out),
                           "--plugin", "models.forecast.onnx_plugin", "--methods", "last_value,onnx,hub"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["hub_method"] == "hub" and "hub*" in done.stdout
    assert set(data["methods"]) == {"last_value", "onnx", "hub"}
    assert data["methods"]["hub"]["horizons"]["30"]["n_pairs"] > 20
