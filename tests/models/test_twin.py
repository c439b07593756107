"""The MVP twin: model pieces, filter tracking on a synthetic world, and the guards real CGM needs."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.twin import mvp_model as mvp
from models.twin.twin import DigitalTwin, TwinInputError, TwinSettings, TwinStateError

from .synthetic_glucose_traces import make_trace

SETTINGS = TwinSettings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50.0, carb_ratio_g_per_u=10.0)


def _finite(twin: DigitalTwin) -> bool:
    return bool(np.all(np.isfinite(twin.x)) and np.all(np.isfinite(twin.P)))


@pytest.mark.parametrize("action", ["basal", "zero"])
def test_steady_state_is_an_equilibrium_under_basal(action: str) -> None:
    p = mvp.from_therapy_settings(1.2, 45.0, 12.0, 70.0, 110.0, insulin_action=action)
    x0 = mvp.steady_state(p, 1.2, 110.0)
    x = mvp.step(x0, 600.0, p, mvp.basal_mu_per_min(1.2))
    assert np.allclose(x, x0, atol=1e-6)
    assert float(mvp.model_isf_mg_dl_per_u(p, 110.0)) == pytest.approx(45.0)
    # carbs and insulin balance: CR grams have the integrated glucose effect of 1 U
    integrated_per_u = 110.0 * p.si_dl_per_mu_per_min * 1000.0 / p.ci_dl_per_min
    assert mvp.carb_sensitivity_mg_dl_per_g(p) * 12.0 == pytest.approx(integrated_per_u)


def test_basal_referenced_correction_lands_on_target() -> None:
    """Insulin acting relative to basal: 1 U given at target + ISF lowers glucose by the ISF (vs no bolus)."""
    for basal, isf in ((0.3, 80.0), (1.0, 50.0), (2.0, 25.0)):
        p = mvp.from_therapy_settings(basal, isf, 10.0)
        without = mvp.steady_state(p, basal, 110.0 + isf)
        with_bolus = without.copy()
        with_bolus[mvp.ISC] += 1000.0 / (p.t1_min * p.ci_dl_per_min)
        largest = 0.0
        for _ in range(144):
            without = mvp.step(without, 5.0, p, mvp.basal_mu_per_min(basal))
            with_bolus = mvp.step(with_bolus, 5.0, p, mvp.basal_mu_per_min(basal))
            largest = max(largest, without[mvp.G] - with_bolus[mvp.G])
        assert largest == pytest.approx(isf, rel=0.05)


def test_unknown_insulin_action_is_refused() -> None:
    with pytest.raises(mvp.ModelParameterError):
        mvp.from_therapy_settings(1.0, 50.0, 10.0, insulin_action="sideways")


@pytest.mark.parametrize("theta_tau_min", [0.0, 300.0])
@pytest.mark.parametrize("shape", [(), (21,), (4, 16)])
def test_fast_derivatives_equal_the_written_out_equations(theta_tau_min: float, shape: tuple[int, ...]) -> None:
    p = replace(mvp.from_therapy_settings(1.3, 40.0, 9.0), theta_tau_min=theta_tau_min)
    rng = np.random.default_rng(7)
    x = rng.uniform(0.0, 300.0, (*shape, mvp.N_STATES))
    x[..., mvp.THETA] = rng.normal(0.0, 0.5, shape)
    x[..., mvp.DIST] = rng.normal(0.0, 1.0, shape)
    for insulin, carbs in ((0.0, 0.0), (20.0, 1.5), (rng.uniform(0, 40, shape), rng.uniform(0, 2, shape))):
        fast = mvp.derivatives(x, p, insulin, carbs)
        assert fast.shape == x.shape
        assert np.allclose(fast, mvp.derivatives_reference(x, p, insulin, carbs), rtol=1e-12, atol=1e-12)


def test_clipping_keeps_states_physiological_in_place() -> None:
    x = np.array([[-1.0, -2.0, -3.0, -4.0, -5.0, 2.0, 5000.0, 9.0, -7.0, -8.0]])
    out = mvp._clip_physiological(x)
    assert out is x
    assert x.tolist() == [[0.0, 0.0, 0.0, 0.0, -5.0, mvp.GLUCOSE_FLOOR_MG_DL, mvp.GLUCOSE_CEILING_MG_DL, 3.0,
                           -7.0, -8.0]]


@pytest.mark.parametrize("theta_tau_min", [0.0, 300.0])
def test_analytic_jacobian_matches_finite_differences(theta_tau_min: float) -> None:
    p = replace(mvp.from_therapy_settings(1.0, 50.0, 10.0), theta_tau_min=theta_tau_min)
    x = mvp.steady_state(p, 1.0, 150.0)
    x[mvp.D1], x[mvp.D2], x[mvp.THETA], x[mvp.DIST] = 20.0, 10.0, 0.2, 0.3
    J = mvp.jacobian(x, p)
    eps = 1e-6
    for j in range(mvp.N_STATES):
        dx = np.zeros(mvp.N_STATES)
        dx[j] = eps * max(1.0, abs(x[j]))
        numeric = (mvp.derivatives(x + dx, p) - mvp.derivatives(x - dx, p)) / (2 * dx[j])
        assert np.allclose(J[:, j], numeric, rtol=1e-5, atol=1e-9)


def test_theta_reverts_to_the_settings_only_when_asked() -> None:
    p = mvp.from_therapy_settings(1.0, 50.0, 10.0)
    x = mvp.steady_state(p, 1.0, 110.0)
    x[mvp.THETA] = 1.0
    assert mvp.step(x, 100.0, p, mvp.basal_mu_per_min(1.0))[mvp.THETA] == pytest.approx(1.0)
    reverting = replace(p, theta_tau_min=100.0)
    assert mvp.step(x, 100.0, reverting, mvp.basal_mu_per_min(1.0))[mvp.THETA] == pytest.approx(math.exp(-1), rel=0.01)


def test_euler_and_rk4_agree_and_bolus_lowers_glucose() -> None:
    p = mvp.from_therapy_settings(1.0, 50.0, 10.0)
    x = mvp.steady_state(p, 1.0, 180.0)
    x[mvp.ISC] += 2 * 1000.0 / (p.t1_min * p.ci_dl_per_min)
    euler = mvp.step(x, 120.0, p, mvp.basal_mu_per_min(1.0), method="euler")
    rk4 = mvp.step(x, 120.0, p, mvp.basal_mu_per_min(1.0), method="rk4")
    assert abs(euler[mvp.G] - rk4[mvp.G]) < 1.0
    assert euler[mvp.G] < 180.0 - 10.0


def test_bad_settings_are_refused_with_a_typed_error() -> None:
    with pytest.raises(TwinInputError):
        DigitalTwin.from_therapy_settings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=-5, carb_ratio_g_per_u=10)
    with pytest.raises(mvp.ModelParameterError):
        mvp.population_parameters(body_weight_kg=float("nan"))
    with pytest.raises(TwinInputError):
        DigitalTwin.from_therapy_settings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50,
                                          carb_ratio_g_per_u=10, insulin_peak_min=200.0)
    with pytest.raises(TwinInputError):
        DigitalTwin.from_therapy_settings(basal_u_per_h=1.0, insulin_sensitivity_mg_dl_per_u=50,
                                          carb_ratio_g_per_u=10, body_weight_kg=1.0)


@pytest.mark.parametrize("kind", ["ukf", "ekf"])
def test_twin_tracks_a_synthetic_day(kind: str) -> None:
    trace = make_trace(hours=24, seed=3)
    twin = DigitalTwin.from_therapy_settings(SETTINGS, filter_kind=kind)
    errors = []
    for k, minute in enumerate(trace.minutes):
        est = twin.update(float(trace.cgm_mg_dl[k]), minute, insulin_u=trace.bolus_u[k], carbs_g=trace.carbs_g[k])
        errors.append(est.sensor_glucose_mg_dl.value - trace.true_glucose_mg_dl[k])
    rmse = float(np.sqrt(np.mean(np.square(errors[12:]))))
    raw = float(np.sqrt(np.mean(np.square((trace.cgm_mg_dl - trace.true_glucose_mg_dl)[12:]))))
    assert rmse < max(12.0, 2 * raw)
    assert _finite(twin)
    assert est.readings_rejected == 0 and est.readings_used == len(trace.minutes)
    assert 0 < est.insulin_sensitivity_factor_mg_dl_per_u.lower_95 < est.insulin_sensitivity_factor_mg_dl_per_u.upper_95


def test_sensitivity_estimate_follows_the_true_sensitivity() -> None:
    isf = {}
    for factor in (0.6, 1.6):
        trace = make_trace(hours=24, seed=4, true_isf_factor=factor)
        twin = DigitalTwin.from_therapy_settings(SETTINGS)
        for k, minute in enumerate(trace.minutes):
            est = twin.update(float(trace.cgm_mg_dl[k]), minute, insulin_u=trace.bolus_u[k], carbs_g=trace.carbs_g[k])
        isf[factor] = est.insulin_sensitivity_factor_mg_dl_per_u.value
    assert isf[1.6] > isf[0.6]


def test_iob_and_cob_follow_the_logged_inputs() -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    twin.update(120.0, 0.0)
    est = twin.update(121.0, 5.0, insulin_u=3.0, carbs_g=40.0)
    assert est.insulin_on_board_u == pytest.approx(3.0, abs=0.01)
    assert est.carbs_on_board_g == pytest.approx(40.0, abs=0.5)
    est = twin.update(None, 125.0)
    assert 0.5 < est.insulin_on_board_u < 2.5 and 0 < est.carbs_on_board_g < 30
    est = twin.update(None, 185.0, basal_u_per_h=0.0)  # a one-hour suspension counts as negative IOB
    assert est.insulin_on_board_u < twin.update(None, 190.0, basal_u_per_h=1.0).insulin_on_board_u + 1.0


def test_missing_readings_grow_uncertainty_and_stay_finite() -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    for k in range(12):
        est = twin.update(130.0 + k, 5.0 * k)
    sd_before = est.sensor_glucose_mg_dl.sd
    for k in range(12, 48):
        est = twin.update(None, 5.0 * k)
    assert est.sensor_glucose_mg_dl.sd > sd_before
    assert _finite(twin)
    est = twin.update(150.0, 5.0 * 48 + 2.3)  # irregular timing
    assert est.readings_used == 13


def test_warmup_readings_are_not_used() -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    twin.start_sensor(0.0, warmup_min=60.0)
    for k in range(12):
        est = twin.update(300.0, 5.0 * k)
        assert est.warming_up
    assert est.readings_used == 0 and est.readings_during_warmup == 12
    est = twin.update(140.0, 60.0)
    assert est.readings_used == 1 and not est.warming_up
    assert abs(est.sensor_glucose_mg_dl.value - 140.0) < 15.0


def test_implausible_jump_is_rejected_then_accepted_if_it_persists() -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    for k in range(24):
        twin.update(120.0, 5.0 * k)
    est = twin.update(330.0, 120.0)  # a single spike: +210 mg/dL in 5 min
    assert est.readings_rejected == 1
    assert est.sensor_glucose_mg_dl.value < 140.0
    est = twin.update(121.0, 125.0)
    assert est.readings_rejected == 1
    for k in range(3):  # a lasting change (e.g. a new sensor reading differently)
        est = twin.update(250.0, 130.0 + 5 * k)
    assert est.readings_rejected >= 2
    assert est.sensor_glucose_mg_dl.value > 200.0
    assert _finite(twin)


def test_clock_jumps_and_long_gaps() -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    for k in range(12):
        twin.update(140.0, 1000.0 + 5.0 * k)
    est = twin.update(141.0, 900.0)  # clock went back
    assert est.clock_jumps == 1 and _finite(twin)
    est = twin.update(200.0, 900.0 + 24 * 60.0)  # a day without anything
    assert est.resets == 1
    assert est.sensor_glucose_mg_dl.value == pytest.approx(200.0, abs=5.0)
    assert _finite(twin)


@pytest.mark.parametrize("bad", [{"glucose_mg_dl": float("nan")}, {"glucose_mg_dl": -3.0}, {"insulin_u": -1.0},
                                 {"carbs_g": float("inf")}, {"at_minute": float("nan")}, {"basal_u_per_h": -0.1}])
def test_bad_input_is_refused_and_loses_nothing(bad: dict) -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS)
    twin.update(120.0, 0.0)
    before = json.dumps(twin.to_dict())
    kwargs = {"glucose_mg_dl": 125.0, "at_minute": 5.0} | bad
    with pytest.raises(TwinInputError):
        twin.update(**kwargs)
    assert json.dumps(twin.to_dict()) == before


@pytest.mark.parametrize("kind", ["ukf", "ekf"])
def test_state_round_trips_through_json(kind: str) -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS, filter_kind=kind)
    twin.start_sensor(-30.0, 20.0)
    for k in range(20):
        twin.update(120.0 + 2 * k, 5.0 * k, insulin_u=1.0 if k == 3 else 0.0, carbs_g=30.0 if k == 3 else 0.0)
    restored = DigitalTwin.from_dict(json.loads(json.dumps(twin.to_dict())))
    assert restored.to_dict() == twin.to_dict()
    a = twin.update(160.0, 100.0)
    b = restored.update(160.0, 100.0)
    assert a == b
    with pytest.raises(TwinStateError):
        DigitalTwin.from_dict({"schema_version": 99})
    with pytest.raises(TwinStateError):
        DigitalTwin.from_dict({"schema_version": 1})


def test_accepts_objects_with_therapy_setting_fields() -> None:
    class Edge:  # shaped like edge.therapy_settings.TherapySettings
        age_group = "adult"
        body_weight_kg = 60.0
        basal_u_per_h = 0.8
        insulin_sensitivity_mg_dl_per_u = 60.0
        carb_ratio_g_per_u = 12.0
        target_mg_dl = 100.0
        insulin_peak_min = 65.0
        insulin_duration_min = 360.0

    twin = DigitalTwin.from_therapy_settings(Edge())
    assert twin.settings.insulin_peak_min == 65.0
    assert twin.estimate().insulin_sensitivity_factor_mg_dl_per_u.value == pytest.approx(60.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.one_of(st.none(), st.floats(39, 401)), st.floats(-30, 400), st.floats(0, 5), st.floats(0, 100)),
    min_size=1, max_size=25))
def test_any_sequence_of_readings_keeps_the_state_sane(events: list) -> None:
    twin = DigitalTwin.from_therapy_settings(SETTINGS, filter_kind="ekf")
    minute = 0.0
    for glucose, step_min, insulin, carbs in events:
        minute += step_min
        est = twin.update(glucose, minute, insulin_u=insulin, carbs_g=carbs)
        assert _finite(twin)
        assert 10.0 <= est.sensor_glucose_mg_dl.value <= 1000.0
        assert math.isfinite(est.insulin_sensitivity_factor_mg_dl_per_u.upper_95)
