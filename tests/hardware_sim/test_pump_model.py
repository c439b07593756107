"""Insulin pump model: increments, delivery rate, basal pulses, temp basal, reservoir and occlusion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_sim.pump_model import InsulinPumpArray, PumpModelError, PumpParameters


def run(pump: InsulinPumpArray, minutes: int) -> np.ndarray:
    """Per-minute true delivery, shape (minutes, M)."""
    return np.stack([pump.step() for _ in range(minutes)])


def test_bolus_rounds_down_to_increment_and_flows_at_the_delivery_rate() -> None:
    pump = InsulinPumpArray(np.zeros(2))
    accepted = pump.command_bolus([3.33, 0.149])
    np.testing.assert_allclose(accepted, [3.30, 0.10])
    delivered = run(pump, 5)
    np.testing.assert_allclose(delivered[:, 0], [1.5, 1.5, 0.3, 0.0, 0.0])
    np.testing.assert_allclose(delivered[:, 1], [0.1, 0, 0, 0, 0])
    np.testing.assert_allclose(pump.reservoir_u, [300 - 3.3, 300 - 0.1])


def test_bolus_is_capped_and_refused_while_one_is_running() -> None:
    pump = InsulinPumpArray(np.zeros(1), PumpParameters(max_bolus_u=10.0))
    assert pump.command_bolus([12.0])[0] == pytest.approx(10.0)
    pump.step()
    assert pump.command_bolus([1.0])[0] == 0.0
    run(pump, 10)
    assert pump.command_bolus([1.0])[0] == pytest.approx(1.0)
    with pytest.raises(PumpModelError):
        pump.command_bolus([-1.0])
    with pytest.raises(PumpModelError):
        pump.command_bolus([1.0, 2.0])


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0.0, max_value=5.0), st.integers(min_value=1, max_value=600))
def test_basal_is_delivered_in_pulses_and_totals_within_one_pulse(rate_u_per_h: float, minutes: int) -> None:
    pump = InsulinPumpArray([rate_u_per_h])
    programmed = pump.basal_schedule_u_per_h[0, 0]
    assert programmed == pytest.approx(round(rate_u_per_h / 0.05) * 0.05)
    delivered = run(pump, minutes)[:, 0]
    pulses = delivered / 0.05
    np.testing.assert_allclose(pulses, np.round(pulses), atol=1e-9)
    assert -0.05 - 1e-9 <= delivered.sum() - programmed * minutes / 60 <= 1e-9


def test_hourly_schedule_follows_the_clock() -> None:
    schedule = np.zeros((1, 24))
    schedule[0, 1] = 1.2  # 01:00-02:00 only
    pump = InsulinPumpArray(schedule, start_time_of_day_min=30)
    delivered = run(pump, 150)[:, 0]
    assert delivered[:30].sum() == 0 and delivered[90:].sum() == 0
    assert delivered[30:90].sum() == pytest.approx(1.2)


def test_temp_basal_overrides_then_expires_and_can_be_cancelled() -> None:
    pump = InsulinPumpArray([1.2, 1.2])
    pump.set_temp_basal([0.0, 2.4], [30.0, 60.0])
    first = run(pump, 30)
    assert first[:, 0].sum() == 0.0  # suspended
    assert first[:, 1].sum() == pytest.approx(1.2)
    assert np.isnan(pump.temp_basal_u_per_h[0]) and pump.temp_basal_u_per_h[1] == pytest.approx(2.4)
    pump.set_temp_basal([np.nan, 0.0], [0.0, 0.0])  # NaN: leave as is; duration 0: cancel
    assert np.isnan(pump.temp_basal_u_per_h).all()
    assert run(pump, 60).sum(axis=0) == pytest.approx([1.2, 1.2])


def test_empty_reservoir_stops_delivery_and_is_flagged() -> None:
    pump = InsulinPumpArray([1.0], PumpParameters(set_change_interval_min=None), reservoir_u=2.0)
    pump.command_bolus([5.0])
    delivered = run(pump, 30)[:, 0]
    assert delivered.sum() == pytest.approx(2.0)
    assert pump.state().reservoir_empty[0]
    assert pump.command_bolus([1.0])[0] == 0.0


def test_set_change_refills_the_reservoir_every_three_days() -> None:
    pump = InsulinPumpArray([1.0], PumpParameters(reservoir_capacity_u=100.0))
    run(pump, 3 * 1440 - 1)
    assert pump.reservoir_u[0] == pytest.approx(100.0 - 1.0 * (3 * 1440 - 1) / 60, abs=0.05)
    run(pump, 2)
    assert pump.reservoir_u[0] > 99.9
    never = InsulinPumpArray([2.0], PumpParameters(reservoir_capacity_u=10.0, set_change_interval_min=None))
    assert run(never, 3 * 1440 + 60).sum() == pytest.approx(10.0)
    assert never.state().reservoir_empty[0]


def test_silent_occlusion_then_alarm_then_set_change() -> None:
    p = PumpParameters(occlusion_alarm_threshold_u=2.0, occlusion_resolution_min=60.0)
    pump = InsulinPumpArray([1.2, 1.2], p, occlusion_onset_min=[10.0, np.nan])
    delivered = run(pump, 10)
    pump.command_bolus([3.0, 3.0])
    delivered = np.concatenate([delivered, run(pump, 400)])
    alarm_at = pump.occlusion_alarm_time_min[0]
    # Occluded from minute 10: the 3 U bolus is pushed but lost; 2 U missed trips the alarm 1-2 min later.
    assert 10 < alarm_at < 14
    assert delivered[10 : int(alarm_at) + 61, 0].sum() == 0.0
    assert delivered[int(alarm_at) + 61 :, 0].sum() > 0  # set changed, delivery resumed
    assert not pump.occlusion_alarm[0]
    lost = pump.reported_delivered_u[0] - pump.true_delivered_u[0]
    assert lost >= 2.0 - 1e-9
    assert pump.true_delivered_u[1] == pytest.approx(pump.reported_delivered_u[1])


def test_occlusion_alarm_is_visible_in_state_and_refuses_boluses() -> None:
    pump = InsulinPumpArray([6.0], PumpParameters(occlusion_alarm_threshold_u=1.0), occlusion_onset_min=[0.0])
    run(pump, 12)
    state = pump.state()
    assert state.occlusion_alarm[0]
    assert pump.command_bolus([1.0])[0] == 0.0


def test_bad_parameters_raise() -> None:
    with pytest.raises(PumpModelError):
        PumpParameters(bolus_increment_u=0.0)
    with pytest.raises(PumpModelError):
        InsulinPumpArray([[1.0, 2.0]])
    with pytest.raises(PumpModelError):
        InsulinPumpArray([-1.0])
    pump = InsulinPumpArray([1.0])
    with pytest.raises(PumpModelError):
        pump.set_temp_basal([-1.0], [30.0])
