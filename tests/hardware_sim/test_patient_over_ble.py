"""Issue 3, item 8: the virtual patient behind the emulated BLE devices, seen from the hub's side of the radio.

A UVA/Padova subject drives the emulated CGM and receives the emulated pump's insulin. The hub side follows the
CGM with :class:`CgmSession` and sends one confirmed bolus with :class:`PumpSession`, through the plain bleak API
over the in-process air, on a manual sim clock (so both runs see exactly the same sim minutes). A meal shows
as a rise in the CGM trace the hub received; the bolus bends it down compared with a twin run without it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pytest

from firmware_bridge.sessions.cgm_session import CgmSession, CgmSessionConfig
from firmware_bridge.sessions.pump_session import (
    CommandOutcome,
    ConfirmedCommand,
    PumpSession,
    PumpSessionConfig,
    PumpStatus,
)
from firmware_bridge.sessions.tracking import Reading
from hardware_sim.air.inprocess import InProcessAir
from hardware_sim.clock import SimClock
from hardware_sim.devices.cgm_model import CgmSensorConfig, CgmSensorModel
from hardware_sim.devices.cgm_sensor import CgmSensorPeripheral
from hardware_sim.devices.ids_pump import IdsPumpPeripheral
from hardware_sim.devices.pump_model import PumpModel
from hardware_sim.devices.virtual_patient import VirtualPatient

pytestmark = pytest.mark.timeout(90)

SUBJECT = "adult#001"
SEED = 11
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # daytime: no compression lows
MEAL_MIN, MEAL_G = 30, 60.0
END_MIN = 240
FAST_CGM = CgmSessionConfig(scan_timeout_s=2.0, backoff_initial_s=0.02, backoff_max_s=0.2, racp_timeout_s=5.0)


@dataclass
class WorldRun:
    readings: list[Reading]
    patient: VirtualPatient
    pump: PumpModel
    outcome: CommandOutcome | None
    status: PumpStatus | None


async def _wait_for_offset(readings: list[Reading], offset_min: int, timeout_s: float = 20.0) -> None:
    async def arrived() -> None:
        while not readings or readings[-1].time_offset_min < offset_min:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(arrived(), timeout_s)


async def run_world(bolus: bool) -> WorldRun:
    clock = SimClock(START, manual=True)
    patient = VirtualPatient(SUBJECT, seed=SEED, start_time_of_day_min=START.hour * 60 + START.minute)
    pump_model = PumpModel(sink=patient, basal_profile=((0, patient.pump_basal_u_per_h()),), epoch=clock.start)
    patient.attach_pump(pump_model)
    sensor = CgmSensorPeripheral(CgmSensorModel(patient, CgmSensorConfig(e2e_crc=True)), clock)
    pump = IdsPumpPeripheral(pump_model, clock)
    patient.eat(MEAL_G, at_min=MEAL_MIN)  # the person eats; the hub is told nothing but what the devices send
    readings: list[Reading] = []
    outcome: CommandOutcome | None = None
    status: PumpStatus | None = None
    sensor.start()
    pump.start()
    async with InProcessAir([sensor, pump], clock) as air, air.radio() as radio:
        follower = asyncio.create_task(CgmSession(radio, FAST_CGM).run(readings.append))
        try:
            await _wait_for_offset(readings, 0)
            for minute in range(5, END_MIN + 1, 5):
                await clock.step_min(5)
                await _wait_for_offset(readings, minute)
                if bolus and minute == MEAL_MIN:
                    # The hub's dose: the meal over the subject's carb ratio, confirmed by the person.
                    units = round(MEAL_G / float(patient.therapy()["carb_ratio_g_per_u"]), 1)
                    async with PumpSession(radio, PumpSessionConfig(scan_timeout_s=2.0)) as session:
                        outcome = await session.execute(ConfirmedCommand.fast_bolus(units, confirmed_by="test person"))
                        status = await session.read_status()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    await sensor.stop()
    await pump.stop()
    return WorldRun(readings, patient, pump_model, outcome, status)


@pytest.fixture(scope="module")
def runs() -> tuple[WorldRun, WorldRun]:
    async def both() -> tuple[WorldRun, WorldRun]:
        return await run_world(bolus=True), await run_world(bolus=False)

    return asyncio.run(asyncio.wait_for(both(), 80))


def glucose_by_offset(run: WorldRun) -> dict[int, float]:
    return {r.time_offset_min: r.glucose_mg_dl for r in run.readings}


def test_the_hub_receives_the_patients_cgm_trace_exactly_once_in_order(runs: tuple[WorldRun, WorldRun]) -> None:
    for run in runs:
        offsets = [r.time_offset_min for r in run.readings]
        assert offsets == list(range(0, END_MIN + 1, 5))
        # What crossed the radio is the patient's sensor output (noisy IG of the UVA/Padova subject) ...
        assert [r.glucose_mg_dl for r in run.readings] == [run.patient.interstitial_glucose_mg_dl(o) for o in offsets]
        # ... which is not the true interstitial glucose: the sensor adds its error
        truth = [run.patient.true_interstitial_glucose_mg_dl(o) for o in offsets]
        assert max(abs(r.glucose_mg_dl - t) for r, t in zip(run.readings, truth)) > 2.0


def test_the_meal_raises_glucose_in_the_trace_the_hub_received(runs: tuple[WorldRun, WorldRun]) -> None:
    for run in runs:
        glucose = glucose_by_offset(run)
        before = np.mean([glucose[o] for o in range(0, MEAL_MIN + 1, 5)])
        peak = max(glucose[o] for o in range(MEAL_MIN, END_MIN + 1, 5))
        assert peak > before + 40, (before, peak)


def test_the_confirmed_bolus_reaches_the_patient_and_bends_the_trace_down(runs: tuple[WorldRun, WorldRun]) -> None:
    bolused, twin = runs
    assert bolused.outcome is not None and bolused.outcome.accepted
    assert twin.outcome is None
    assert bolused.status is not None and bolused.status.basal_rate_u_per_h == 1.27  # the subject's, as programmed
    units = round(MEAL_G / float(bolused.patient.therapy()["carb_ratio_g_per_u"]), 1)
    basal_u = bolused.patient.pump_basal_u_per_h() * END_MIN / 60
    assert bolused.pump.delivered_bolus_u == pytest.approx(units)
    assert bolused.patient.delivered_insulin_u == pytest.approx(units + basal_u, rel=1e-6)
    assert twin.patient.delivered_insulin_u == pytest.approx(basal_u, rel=1e-6)
    assert bolused.patient.late_insulin_u == 0.0 and twin.patient.late_insulin_u == 0.0

    with_bolus, without = glucose_by_offset(bolused), glucose_by_offset(twin)
    # Same subject, seed and sensor: identical until the bolus is given ...
    assert all(with_bolus[o] == without[o] for o in range(0, MEAL_MIN + 1, 5))
    # ... then lower once it acts, and clearly lower from 2.5 h after the meal (sensor noise is shared).
    assert all(with_bolus[o] <= without[o] for o in range(MEAL_MIN, END_MIN + 1, 5))
    late = range(MEAL_MIN + 150, END_MIN + 1, 5)
    differences = [without[o] - with_bolus[o] for o in late]
    assert min(differences) > 15, differences
    assert max(with_bolus.values()) < max(without.values()) - 15


def test_the_hub_reads_the_pump_status_after_a_day_of_an_adults_insulin() -> None:
    async def scenario() -> PumpStatus:
        clock = SimClock(START, manual=True)
        patient = VirtualPatient(SUBJECT, seed=SEED)
        pump_model = PumpModel(sink=patient, basal_profile=((0, patient.pump_basal_u_per_h()),), epoch=clock.start)
        patient.attach_pump(pump_model)
        await clock.step_min(18 * 60)
        pump_model.advance_to(clock.now_min())  # 22.9 U of basal today: more than SFLOAT's 20.47 at 0.01 U
        pump = IdsPumpPeripheral(pump_model, clock)
        async with InProcessAir([pump], clock) as air, air.radio() as radio:
            async with PumpSession(radio, PumpSessionConfig(scan_timeout_s=2.0, response_timeout_s=2.0)) as session:
                return await session.read_status()

    status = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert status.daily_total_u == pytest.approx(1.27 * 18, abs=0.1)
