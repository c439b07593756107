"""Hub CGM session against the emulated sensor, in process, through the plain bleak API."""

from __future__ import annotations

import asyncio
import logging

import pytest

from firmware_bridge.codec.cgms import AnnunciationOrder, CgmMeasurement, SensorStatusAnnunciation, encode_cgm_measurement
from firmware_bridge.sessions.cgm_session import CgmSession, CgmSessionConfig, decode_notification
from firmware_bridge.sessions.tracking import Reading
from hardware_sim.air.inprocess import InProcessAir
from hardware_sim.clock import SimClock
from hardware_sim.devices.cgm_model import CgmSensorConfig, CgmSensorModel
from hardware_sim.devices.cgm_sensor import CgmSensorPeripheral
from hardware_sim.devices.glucose_source import ScriptedTrace
from hardware_sim.faults import FaultPlan

pytestmark = pytest.mark.timeout(90)

TRACE = ScriptedTrace.demo_day()
FAST = CgmSessionConfig(scan_timeout_s=0.3, backoff_initial_s=0.02, backoff_max_s=0.2, racp_timeout_s=2.0)


async def collect(
    sensor: CgmSensorPeripheral,
    clock: SimClock,
    plan: FaultPlan,
    until_offset_min: int,
    config: CgmSessionConfig = FAST,
    mtu: int = 247,
) -> tuple[list[Reading], CgmSession]:
    readings: list[Reading] = []
    async with InProcessAir([sensor], clock, plan) as air, air.radio(requested_mtu=mtu) as radio:
        session = CgmSession(radio, config)
        async for reading in session.readings():
            readings.append(reading)
            if reading.time_offset_min >= until_offset_min:
                break
    await sensor.stop()
    return readings, session


def expected_glucose(offset_min: int) -> float:
    return float(min(400, max(40, round(TRACE.interstitial_glucose_mg_dl(offset_min)))))


@pytest.mark.parametrize("e2e_crc, mtu", [(True, 23), (False, 247)])
def test_six_hours_with_link_drops_and_payload_faults_arrive_exactly_once_in_order(e2e_crc: bool, mtu: int) -> None:
    clock = SimClock(acceleration=10_000)
    plan = FaultPlan(
        drop_every_min=60, drop_duration_min=15, corrupt_crc=0.08, duplicate=0.05, truncate=0.05, out_of_order=0.03, seed=11
    )
    sensor = CgmSensorPeripheral(CgmSensorModel(TRACE, CgmSensorConfig(e2e_crc=e2e_crc)), clock, plan)
    readings, session = asyncio.run(collect(sensor, clock, plan, until_offset_min=360, mtu=mtu))
    offsets = [r.time_offset_min for r in readings]
    assert offsets == list(range(0, 361, 5))
    assert [r.glucose_mg_dl for r in readings] == [expected_glucose(o) for o in offsets]
    assert session.stats.connects >= 3  # it really reconnected after drops (a loaded machine may sleep through one)
    assert sensor.stats.faults_applied > 0
    assert session.e2e_crc is e2e_crc
    if e2e_crc:  # at MTU 23 ~100 notifications: P(no corrupted or truncated one) < 1e-4
        assert session.stats.decode_errors > 0  # corrupted packets were seen, dropped and recovered


def test_hub_joining_late_backfills_the_whole_session_first() -> None:
    clock = SimClock(acceleration=10_000)
    sensor = CgmSensorPeripheral(CgmSensorModel(TRACE, CgmSensorConfig(e2e_crc=True)), clock, FaultPlan())

    async def scenario() -> tuple[list[Reading], CgmSession]:
        sensor.start()
        await clock.sleep_until_min(180)  # three hours stored before the hub appears
        return await collect(sensor, clock, FaultPlan(), until_offset_min=300)

    readings, session = asyncio.run(scenario())
    assert [r.time_offset_min for r in readings] == list(range(0, 301, 5))
    assert readings[0].via == "backfill" and any(r.via == "live" for r in readings)


def test_readings_the_sensor_never_took_do_not_stall_the_stream() -> None:
    clock = SimClock(acceleration=10_000)
    config = CgmSensorConfig(e2e_crc=True, malfunction_windows_min=((40, 60),))
    sensor = CgmSensorPeripheral(CgmSensorModel(TRACE, config), clock, FaultPlan())
    readings, session = asyncio.run(collect(sensor, clock, FaultPlan(), until_offset_min=90))
    offsets = [r.time_offset_min for r in readings]
    assert offsets == [o for o in range(0, 91, 5) if not 40 <= o < 60]
    assert session.tracker.stats.gaps_opened >= 1


def test_a_new_sensor_session_restarts_offsets_and_is_followed() -> None:
    clock = SimClock(acceleration=10_000)
    sensor = CgmSensorPeripheral(CgmSensorModel(TRACE, CgmSensorConfig(e2e_crc=True)), clock, FaultPlan())
    readings: list[Reading] = []

    async def scenario() -> None:
        async with InProcessAir([sensor], clock) as air, air.radio() as radio:
            session = CgmSession(radio, FAST)
            async for reading in session.readings():
                readings.append(reading)
                if reading.time_offset_min == 60 and len(readings) == 13:
                    sensor.model.stop_session(clock.now_min())
                    await asyncio.sleep(0.2)  # the hub catches up with the stopped session
                    await clock.sleep_min(30)
                    sensor.model.start_session(clock.now_min())  # a new sensor: offsets restart at 0
                    sensor._wake.set()
                if len(readings) > 13 and reading.time_offset_min >= 30:
                    break
        await sensor.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    first = [r for r in readings if r.session_start_iso == readings[0].session_start_iso]
    second = readings[len(first):]
    assert [r.time_offset_min for r in first][:13] == list(range(0, 61, 5))
    assert [r.time_offset_min for r in second] == list(range(0, 31, 5))
    assert second[0].session_start_iso is not None and second[0].session_start_iso > first[0].session_start_iso


def test_readings_carry_trend_and_annunciations() -> None:
    clock = SimClock(acceleration=10_000)
    config = CgmSensorConfig(e2e_crc=True, low_battery_after_min=20)
    sensor = CgmSensorPeripheral(CgmSensorModel(TRACE, config), clock, FaultPlan())
    readings, _ = asyncio.run(collect(sensor, clock, FaultPlan(), until_offset_min=30))
    assert readings[0].trend_mg_dl_min is None and readings[1].trend_mg_dl_min is not None
    assert "DEVICE_BATTERY_LOW" in readings[-1].annunciations and not readings[0].annunciations
    assert readings[-1].as_json_dict()["annunciations"] == ["DEVICE_BATTERY_LOW"]


@pytest.mark.parametrize("order", list(AnnunciationOrder))
def test_annunciation_octet_order_is_configurable_per_sensor(order: AnnunciationOrder) -> None:
    """Nordic's nRF5 SDK sends the octets in flag-bit order (Warning, Cal/Temp, Status), the spec the reverse."""
    clock = SimClock(acceleration=10_000)
    config = CgmSensorConfig(e2e_crc=True, low_battery_after_min=0, hypo_mg_dl=300)  # Status + Warning octets
    sensor = CgmSensorPeripheral(CgmSensorModel(TRACE, config), clock, FaultPlan(), annunciation_order=order)
    hub_config = CgmSessionConfig(scan_timeout_s=0.3, backoff_initial_s=0.02, backoff_max_s=0.2, annunciation_order=order)
    readings, _ = asyncio.run(collect(sensor, clock, FaultPlan(), until_offset_min=10, config=hub_config))
    assert {"DEVICE_BATTERY_LOW", "RESULT_BELOW_HYPO"} <= readings[-1].annunciations


def test_decode_notification_keeps_good_leading_records_and_reports_the_bad_one(caplog: pytest.LogCaptureFixture) -> None:
    records = [CgmMeasurement(100.0 + i, i * 5, SensorStatusAnnunciation(0), 0.5) for i in range(3)]
    payload = b"".join(encode_cgm_measurement(m, e2e_crc=True) for m in records)
    good, error = decode_notification(payload, e2e_crc=True, annunciation_order=AnnunciationOrder.SPEC)
    assert good == records and error is None
    corrupted = bytearray(payload)
    corrupted[-1] ^= 0x01  # CRC of the last record
    good, error = decode_notification(bytes(corrupted), e2e_crc=True, annunciation_order=AnnunciationOrder.SPEC)
    assert good == records[:2] and error is not None and "CRC" in str(error)
    good, error = decode_notification(payload[:-3], e2e_crc=True, annunciation_order=AnnunciationOrder.SPEC)
    assert good == records[:2] and error is not None
    good, error = decode_notification(b"", e2e_crc=True, annunciation_order=AnnunciationOrder.SPEC)
    assert good == [] and error is not None
    logging.getLogger(__name__).debug("decoded")
