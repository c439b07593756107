"""VirtualPatient: a UVA/Padova subject as the CGM's glucose source and the pump's insulin sink."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codec.ids import BolusType
from hardware_sim.devices.glucose_source import GlucoseSource, InsulinLedger, InsulinSink, ScriptedTrace
from hardware_sim.devices.pump_model import PumpModel
from hardware_sim.devices.virtual_patient import VirtualPatient, VirtualPatientError
from hardware_sim.patient import UvaPadovaCohortModel, load_cohort
from hardware_sim.sensor_model import CgmSensorParameters

pytestmark = pytest.mark.timeout(120)

SUBJECT = "adult#001"


def patient_with_pump(seed: int = 1, **kwargs: object) -> tuple[VirtualPatient, PumpModel]:
    patient = VirtualPatient(SUBJECT, seed=seed, **kwargs)  # type: ignore[arg-type]
    pump = PumpModel(sink=patient, basal_profile=((0, patient.basal_u_per_h),))
    patient.attach_pump(pump)
    return patient, pump


def cgm_trace(patient: VirtualPatient, minutes: range) -> list[float]:
    return [patient.interstitial_glucose_mg_dl(m) for m in minutes]


def true_trace(patient: VirtualPatient, minutes: range) -> np.ndarray:
    return np.array([patient.true_interstitial_glucose_mg_dl(m) for m in minutes])


def test_is_a_glucose_source_and_an_insulin_sink() -> None:
    patient = VirtualPatient(SUBJECT)
    assert isinstance(patient, GlucoseSource) and isinstance(patient, InsulinSink)
    therapy = patient.therapy()
    assert therapy["age_group"] == "adult" and therapy["basal_u_per_h"] == patient.pump_basal_u_per_h() == 1.27
    assert therapy["carb_ratio_g_per_u"] == 10.0  # Quest table
    assert 20 < float(therapy["insulin_sensitivity_mg_dl_per_u"]) < 60  # 1800 / TDI (50.4 U)


def test_the_pumps_basal_keeps_the_fasting_subject_at_steady_state() -> None:
    patient, pump = patient_with_pump()
    start = patient.true_interstitial_glucose_mg_dl(0)
    trace = true_trace(patient, range(0, 6 * 60 + 1, 5))
    assert np.max(np.abs(trace - start)) < 2.0
    assert patient.delivered_insulin_u == pytest.approx(6 * patient.basal_u_per_h, rel=1e-6)
    assert patient.late_insulin_u == 0.0  # pulled from the pump before every step


def test_a_basal_program_rounded_to_the_pump_increment_stays_close_to_steady_state() -> None:
    patient = VirtualPatient(SUBJECT)
    assert patient.pump_basal_u_per_h() == 1.27 and patient.pump_basal_u_per_h(0.05) == 1.25
    pump = PumpModel(sink=patient, basal_profile=((0, patient.pump_basal_u_per_h()),))
    patient.attach_pump(pump)
    start = patient.true_interstitial_glucose_mg_dl(0)
    after = patient.true_interstitial_glucose_mg_dl(12 * 60)
    assert after < start and start - after < 10  # 0.2% more insulin: a small fall over 12 h


def test_without_basal_glucose_climbs() -> None:
    patient = VirtualPatient(SUBJECT)
    start = patient.true_interstitial_glucose_mg_dl(0)
    assert patient.true_interstitial_glucose_mg_dl(6 * 60) > start + 30


def test_carbs_raise_glucose_and_a_bolus_bends_it_down() -> None:
    minutes = range(0, 5 * 60 + 1, 5)
    fasting, _ = patient_with_pump()
    meal_only, _ = patient_with_pump()
    meal_and_bolus, pump = patient_with_pump()
    for patient in (meal_only, meal_and_bolus):
        patient.eat(60.0, at_min=30)
    assert pump.set_bolus(BolusType.FAST, 6.0, 0.0, 0, 30)[1] is not None
    base, meal, bolused = (true_trace(p, minutes) for p in (fasting, meal_only, meal_and_bolus))
    assert meal.max() > base.max() + 60  # 60 g unbolused: a big excursion
    assert np.all(meal[:7] == base[:7])  # nothing happens before the meal (minute 30)
    assert np.all(bolused <= meal + 1e-9)  # insulin never raises glucose
    late = slice(36, None)  # from 2.5 h after the meal on (the bolus has peaked: tp 75 min)
    assert np.all(bolused[late] < meal[late] - 20)
    assert bolused.max() < meal.max() - 20
    assert meal_and_bolus.delivered_insulin_u == pytest.approx(6.0 + 5 * meal_and_bolus.basal_u_per_h, rel=1e-6)


def test_sensor_readings_are_noisy_realistic_and_reproducible_by_seed() -> None:
    minutes = range(0, 12 * 60, 5)
    a, _ = patient_with_pump(seed=7)
    b, _ = patient_with_pump(seed=7)
    c, _ = patient_with_pump(seed=8)
    for patient in (a, b, c):
        patient.eat(70.0, at_min=60)
    readings_a, readings_b = cgm_trace(a, minutes), cgm_trace(b, minutes)
    assert readings_a == readings_b
    assert readings_a[:24] != cgm_trace(c, range(0, 120, 5))
    assert all(r == round(r) and 40 <= r <= 400 for r in readings_a)
    errors = np.array(readings_a) - true_trace(a, minutes)
    assert 3.0 < float(np.std(errors)) < 30.0  # Breton 2008: sd ~11.6 mg/dL (one day is a short sample)
    lag1 = float(np.corrcoef(errors[:-1], errors[1:])[0, 1])
    assert lag1 > 0.8  # smooth, correlated sensor error, not white noise


def test_ideal_sensor_reports_rounded_interstitial_glucose() -> None:
    patient = VirtualPatient(SUBJECT, sensor="ideal")
    patient.eat(40, at_min=0)
    for minute in range(0, 180, 5):
        assert patient.interstitial_glucose_mg_dl(minute) == round(patient.true_interstitial_glucose_mg_dl(minute))


def _drive(patient: VirtualPatient, ask_at: list[float], meal: tuple[int, float], bolus: tuple[float, float],
           end_min: int) -> None:
    patient.eat(meal[1], at_min=meal[0])
    patient.deliver_insulin(bolus[1], bolus[0])
    for minute in sorted(ask_at):
        patient.interstitial_glucose_mg_dl(minute)
    patient.advance_to(end_min)


@settings(max_examples=6, deadline=None)
@given(
    ask_at=st.lists(st.floats(0, 90), max_size=12),
    meal=st.tuples(st.integers(0, 60), st.floats(1, 80)),
    bolus=st.tuples(st.floats(0.01, 60), st.floats(0, 8)),
)
def test_lazy_stepping_equals_stepping_every_minute(ask_at: list[float], meal: tuple[int, float],
                                                    bolus: tuple[float, float]) -> None:
    end = 90
    lazy, eager = VirtualPatient(SUBJECT, seed=3), VirtualPatient(SUBJECT, seed=3)
    _drive(lazy, ask_at, meal, bolus, end)
    _drive(eager, [float(m) for m in range(end + 1)], meal, bolus, end)
    assert lazy.history == eager.history
    np.testing.assert_array_equal(lazy.model.state, eager.model.state)
    # ... and both equal the cohort model stepped by hand with the same per-minute inputs
    carbs = np.zeros(end)
    full, rest = divmod(meal[1], 5.0)
    profile = [5.0] * int(full) + ([rest] if rest > 1e-9 else [])
    carbs[meal[0]:meal[0] + len(profile)] = profile[: end - meal[0]]
    insulin = np.zeros(end)
    if bolus[1] > 0:
        insulin[math.ceil(bolus[0] - 1e-9) - 1] = bolus[1]
    model = UvaPadovaCohortModel(load_cohort(SUBJECT))
    for minute in range(end):
        model.step(carbs[minute], insulin[minute], 1.0)
    np.testing.assert_array_equal(model.state, lazy.model.state)


def test_insulin_is_binned_by_the_minute_its_slice_ended_in_and_late_insulin_is_kept() -> None:
    patient = VirtualPatient(SUBJECT)
    patient.deliver_insulin(1.0, 5.0)  # slice [4, 5]
    patient.deliver_insulin(0.5, 4.5)  # slice ending inside minute 4
    patient.advance_to(5)
    assert [r.insulin_u for r in patient.history] == [0, 0, 0, 0, 1.5]
    patient.deliver_insulin(2.0, 3.0)  # minute 2 is past: given in minute 5 and counted
    patient.advance_to(6)
    assert patient.history[5].insulin_u == 2.0 and patient.late_insulin_u == 2.0
    assert patient.delivered_insulin_u == 3.5


def test_meals_spread_at_the_eating_rate_and_late_meals_start_now() -> None:
    patient = VirtualPatient(SUBJECT)
    patient.eat(12.0, at_min=2.7, rate_g_per_min=5.0)
    patient.advance_to(10)
    assert [r.carbs_g for r in patient.history[:6]] == [0, 0, 5, 5, 2, 0]
    patient.eat(3.0, at_min=1)
    patient.advance_to(11)
    assert patient.history[10].carbs_g == 3.0 and patient.late_carbs_g == 3.0


def test_past_minutes_come_from_history() -> None:
    patient = VirtualPatient(SUBJECT)
    patient.eat(50, at_min=0)
    later = patient.true_interstitial_glucose_mg_dl(60)
    assert patient.true_interstitial_glucose_mg_dl(30) == patient.history[29].interstitial_glucose_mg_dl
    assert patient.plasma_glucose_mg_dl(0) == pytest.approx(patient.true_interstitial_glucose_mg_dl(0))
    assert patient.true_interstitial_glucose_mg_dl(60) == later and patient.minute == 60


def test_scenario_modifiers_move_glucose() -> None:
    plain, resistant = VirtualPatient(SUBJECT), VirtualPatient(SUBJECT)
    resistant.set_scenario_modifiers(insulin_sensitivity_scale=np.full(600, 0.7), egp_scale=np.full(600, 1.1))
    assert resistant.true_interstitial_glucose_mg_dl(300) > plain.true_interstitial_glucose_mg_dl(300) + 10
    with pytest.raises(VirtualPatientError):
        resistant.set_scenario_modifiers(np.array([1.0, -1.0]), None)


def test_bad_input_is_refused_with_a_typed_error() -> None:
    patient = VirtualPatient(SUBJECT)
    for units in (-1.0, math.nan, math.inf):
        with pytest.raises(VirtualPatientError):
            patient.deliver_insulin(units, 1.0)
    with pytest.raises(VirtualPatientError):
        patient.eat(-5, at_min=0)
    with pytest.raises(VirtualPatientError):
        patient.eat(5, at_min=0, rate_g_per_min=0)
    with pytest.raises(VirtualPatientError):
        VirtualPatient("adults")
    with pytest.raises(VirtualPatientError):
        VirtualPatient(SUBJECT, sensor=CgmSensorParameters())  # warm-up and dropouts are the BLE sensor's
    with pytest.raises(VirtualPatientError):
        patient.attach_pump(object())
    assert patient.delivered_insulin_u == 0 and patient.eaten_carbs_g == 0  # nothing half-applied


def _six_hours_of_devices(source_and_sink: Callable[[], tuple[Any, Any]]) -> float:
    """What ``sim serve`` does per patient: the pump delivers every minute, the CGM reads every 5 minutes."""
    source, sink = source_and_sink()
    pump = PumpModel(sink=sink, basal_profile=((0, 1.27),))
    total = 0.0
    for minute in range(1, 6 * 60 + 1):
        pump.advance_to(minute)
        if minute % 5 == 0:
            total += source.interstitial_glucose_mg_dl(minute)
    return total


def _patient() -> tuple[Any, Any]:
    patient = VirtualPatient(SUBJECT, seed=1)
    patient.eat(60, at_min=30)
    return patient, patient


def _scripted() -> tuple[Any, Any]:
    return ScriptedTrace.demo_day(), InsulinLedger()


@pytest.mark.benchmark(group="6 sim-hours of CGM + pump: per-minute cost of the world")
def test_benchmark_virtual_patient(benchmark: Any) -> None:
    assert benchmark(_six_hours_of_devices, _patient) > 0


@pytest.mark.benchmark(group="6 sim-hours of CGM + pump: per-minute cost of the world")
def test_benchmark_baseline_scripted_trace(benchmark: Any) -> None:
    assert benchmark(_six_hours_of_devices, _scripted) > 0
