"""Emulated CGM sensor: the state model alone, then its GATT front end through the real bleak API."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from contextlib import asynccontextmanager

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from firmware_bridge.codec import cgms_socp as socp
from firmware_bridge.codec.cgms import (
    SensorStatusAnnunciation as A,
)
from firmware_bridge.codec.cgms import (
    decode_cgm_feature,
    decode_cgm_measurements,
    decode_cgm_status,
    decode_session_run_time,
)
from firmware_bridge.codec.racp import (
    RacpNumberOfRecords,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    decode_racp_response,
    encode_racp,
)
from firmware_bridge.codec.uuids import (
    CGM_FEATURE,
    CGM_MEASUREMENT,
    CGM_SERVICE,
    CGM_SESSION_RUN_TIME,
    CGM_SPECIFIC_OPS_CONTROL_POINT,
    CGM_STATUS,
    RECORD_ACCESS_CONTROL_POINT,
)
from firmware_bridge.radio import Radio
from hardware_sim.air.inprocess import InProcessAir
from hardware_sim.clock import SimClock
from hardware_sim.devices.cgm_model import CgmSensorConfig, CgmSensorModel, SessionError
from hardware_sim.devices.cgm_sensor import CgmSensorPeripheral
from hardware_sim.devices.glucose_source import InsulinLedger, ScriptedTrace, TraceError
from hardware_sim.faults import FaultPlan

pytestmark = pytest.mark.timeout(60)


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (bumble objects must not outlive their loop)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return wrapper


TRACE = ScriptedTrace.from_points([(0, 100), (60, 160), (120, 30), (180, 450), (240, 120)])


# -- glucose source ---------------------------------------------------------------------------------------------
def test_scripted_trace_interpolates_and_holds_its_ends() -> None:
    assert TRACE.interstitial_glucose_mg_dl(-5) == 100
    assert TRACE.interstitial_glucose_mg_dl(30) == pytest.approx(130)
    assert TRACE.interstitial_glucose_mg_dl(1000) == 120
    with pytest.raises(TraceError):
        ScriptedTrace.from_points([(0, 100), (0, 110)])
    with pytest.raises(TraceError):
        ScriptedTrace.from_points([(0, float("nan"))])


def test_trace_from_csv_and_demo_day(tmp_path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("minute,glucose_mg_dl\n0,100\n10,120\n")
    assert ScriptedTrace.from_csv(path).interstitial_glucose_mg_dl(5) == pytest.approx(110)
    day = ScriptedTrace.demo_day()
    values = [day.interstitial_glucose_mg_dl(m) for m in range(0, 1440, 5)]
    assert all(v == int(v) for v in values) and 60 < min(values) < max(values) < 300


def test_insulin_ledger_refuses_negative_doses() -> None:
    ledger = InsulinLedger()
    ledger.deliver_insulin(0.5, 10)
    ledger.deliver_insulin(1.0, 20)
    assert ledger.total_u == pytest.approx(1.5) and ledger.total_between_u(15, 30) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ledger.deliver_insulin(-1, 30)


# -- state model ------------------------------------------------------------------------------------------------
def test_model_takes_a_reading_every_interval_with_offset_trend_and_range_flags() -> None:
    model = CgmSensorModel(TRACE)
    model.start_session(0)
    readings = model.advance_to(240)
    assert [r.time_offset_min for r in readings] == list(range(0, 241, 5))
    by_offset = {r.time_offset_min: r for r in readings}
    assert by_offset[0].trend_mg_dl_min is None
    assert by_offset[30].glucose_mg_dl == 130 and by_offset[30].trend_mg_dl_min == pytest.approx(1.0)
    assert by_offset[120].glucose_mg_dl == 40 and A.RESULT_BELOW_DEVICE_RANGE in by_offset[120].annunciation
    assert A.RESULT_BELOW_HYPO in by_offset[120].annunciation
    assert by_offset[180].glucose_mg_dl == 400 and A.RESULT_ABOVE_DEVICE_RANGE in by_offset[180].annunciation
    assert by_offset[100].trend_mg_dl_min == pytest.approx(-2.2)  # 160 -> 30 in 60 min: below the 3/min alert
    assert not by_offset[100].annunciation & (A.RATE_OF_DECREASE_EXCEEDED | A.RATE_OF_INCREASE_EXCEEDED)
    assert A.RATE_OF_INCREASE_EXCEEDED in by_offset[150].annunciation  # 30 -> 450 in 60 min: +7/min
    assert model.advance_to(240) == []  # nothing twice


def test_model_warmup_malfunction_battery_and_session_stop() -> None:
    config = CgmSensorConfig(warmup_min=12, malfunction_windows_min=((130, 145),), low_battery_after_min=150)
    model = CgmSensorModel(TRACE, config)
    assert A.SESSION_STOPPED in model.status(0).annunciation
    model.start_session(100)
    assert A.CALIBRATION_NOT_ALLOWED in model.status(105).annunciation
    offsets = [r.time_offset_min for r in model.advance_to(160)]
    assert offsets[0] == 15  # first reading after warm-up, on the interval grid
    assert not {30, 35, 40} & set(offsets) and 45 in offsets  # sim minutes 130..145 (session started at 100)
    assert A.DEVICE_BATTERY_LOW in model.records[-1].annunciation
    with pytest.raises(SessionError):
        model.start_session(160)
    model.stop_session(170)
    assert model.next_reading_min() is None and A.SESSION_STOPPED in model.status(171).annunciation


def test_model_selects_and_deletes_like_racp() -> None:
    model = CgmSensorModel(TRACE)
    model.start_session(0)
    model.advance_to(60)
    assert [r.time_offset_min for r in model.select(">=", 50)] == [50, 55, 60]
    assert [r.time_offset_min for r in model.select("<=", 5)] == [0, 5]
    assert [r.time_offset_min for r in model.select("range", 10, 20)] == [10, 15, 20]
    assert model.select("first")[0].time_offset_min == 0 and model.select("last")[0].time_offset_min == 60
    assert model.delete("<=", 30) == 7 and model.select("first")[0].time_offset_min == 35


# -- GATT front end through bleak -------------------------------------------------------------------------------
class Hub:
    """A bleak client connected to the sensor, collecting notifications and RACP/SOCP indications."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.notifications: list[bytes] = []
        self.racp: asyncio.Queue[bytes] = asyncio.Queue()
        self.socp: asyncio.Queue[bytes] = asyncio.Queue()

    async def subscribe(self) -> None:
        await self.client.start_notify(CGM_MEASUREMENT, lambda _c, d: self.notifications.append(bytes(d)))
        await self.client.start_notify(RECORD_ACCESS_CONTROL_POINT, lambda _c, d: self.racp.put_nowait(bytes(d)))
        await self.client.start_notify(CGM_SPECIFIC_OPS_CONTROL_POINT, lambda _c, d: self.socp.put_nowait(bytes(d)))

    async def racp_request(self, request: RacpRequest) -> RacpResponse | RacpNumberOfRecords:
        await self.client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(request), response=True)
        return decode_racp_response(await asyncio.wait_for(self.racp.get(), 5))

    def offsets(self, e2e_crc: bool) -> list[int]:
        return [m.time_offset_min for n in self.notifications for m in decode_cgm_measurements(n, e2e_crc=e2e_crc)]


@asynccontextmanager
async def connected(
    sensor: CgmSensorPeripheral, clock: SimClock, plan: FaultPlan | None = None, mtu: int = 247
) -> AsyncIterator[Hub]:
    async with InProcessAir([sensor], clock, plan) as air:
        radio: Radio = air.radio(requested_mtu=mtu)
        async with radio:
            device = await BleakScanner.find_device_by_filter(
                lambda d, adv: CGM_SERVICE in adv.service_uuids, timeout=5, **radio.scanner_kwargs()
            )
            assert device is not None
            async with BleakClient(device, **radio.client_kwargs()) as client:
                yield Hub(client)
    await sensor.stop()


def make_sensor(clock: SimClock, plan: FaultPlan | None = None, e2e_crc: bool = True) -> CgmSensorPeripheral:
    return CgmSensorPeripheral(CgmSensorModel(TRACE, CgmSensorConfig(e2e_crc=e2e_crc)), clock, plan)


@pytest.mark.parametrize("e2e_crc", [True, False])
@run_async
async def test_reads_feature_status_run_time_and_notifies_live(e2e_crc: bool) -> None:
    clock = SimClock(manual=True)
    sensor = make_sensor(clock, e2e_crc=e2e_crc)
    async with connected(sensor, clock) as hub:
        feature = decode_cgm_feature(await hub.client.read_gatt_char(CGM_FEATURE))
        assert feature.e2e_crc_supported is e2e_crc
        status = decode_cgm_status(await hub.client.read_gatt_char(CGM_STATUS), e2e_crc=e2e_crc)
        assert status.time_offset_min == 0 and A.SESSION_STOPPED not in status.annunciation
        run_time = decode_session_run_time(await hub.client.read_gatt_char(CGM_SESSION_RUN_TIME), e2e_crc=e2e_crc)
        assert run_time.run_time_h == 14 * 24
        await hub.subscribe()
        await clock.step_min(20)
        await asyncio.sleep(0.05)
        # offset 0 was taken before the hub subscribed; 5..20 arrive live, one record each
        assert hub.offsets(e2e_crc) == [5, 10, 15, 20]
        assert len(hub.notifications) == 4


@pytest.mark.parametrize("mtu, most_records_per_notification", [(23, 2), (247, 24)])
@run_async
async def test_racp_reports_stored_records_packed_to_the_mtu_then_success(mtu: int, most_records_per_notification: int) -> None:
    clock = SimClock(manual=True)
    sensor = make_sensor(clock)
    sensor.start()
    await clock.step_min(24 * 60)  # a day stored before any hub connects
    async with connected(sensor, clock, mtu=mtu) as hub:
        await hub.subscribe()
        response = await hub.racp_request(RacpRequest.report_all())
        assert response == RacpResponse(1, RacpResponseCode.SUCCESS)
        assert hub.offsets(True) == list(range(0, 24 * 60 + 1, 5))
        assert all(len(n) <= mtu - 3 for n in hub.notifications)
        per_notification = [len(decode_cgm_measurements(n, e2e_crc=True)) for n in hub.notifications]
        assert max(per_notification) == most_records_per_notification


@run_async
async def test_racp_operators_number_delete_and_errors() -> None:
    clock = SimClock(manual=True)
    sensor = make_sensor(clock)
    sensor.start()
    await clock.step_min(60)
    async with connected(sensor, clock) as hub:
        await hub.subscribe()
        for request, expected in [
            (RacpRequest.report_at_or_after(50), [50, 55, 60]),
            (RacpRequest.report_at_or_before(5), [0, 5]),
            (RacpRequest.report_range(20, 30), [20, 25, 30]),
            (RacpRequest.report_first(), [0]),
            (RacpRequest.report_last(), [60]),
        ]:
            hub.notifications.clear()
            assert await hub.racp_request(request) == RacpResponse(1, RacpResponseCode.SUCCESS)
            assert hub.offsets(True) == expected, request
        number = await hub.racp_request(RacpRequest.report_number(RacpOperator.WITHIN_RANGE_OF, 10, 30))
        assert number == RacpNumberOfRecords(5)
        assert await hub.racp_request(RacpRequest.report_at_or_after(1000)) == RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND)
        delete = RacpRequest(2, RacpOperator.LESS_THAN_OR_EQUAL_TO, None, 30)
        assert await hub.racp_request(delete) == RacpResponse(2, RacpResponseCode.SUCCESS)
        assert await hub.racp_request(RacpRequest.report_number()) == RacpNumberOfRecords(6)
        # malformed: unknown operator -> response code, not silence
        await hub.client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, bytes([1, 9]), response=True)
        assert decode_racp_response(await asyncio.wait_for(hub.racp.get(), 5)) == RacpResponse(1, RacpResponseCode.INVALID_OPERATOR)


@run_async
async def test_racp_refuses_without_indications_and_while_busy_then_abort_works() -> None:
    clock = SimClock(manual=True)
    sensor = make_sensor(clock)
    sensor.start()
    await clock.step_min(24 * 60)
    async with connected(sensor, clock, mtu=23) as hub:
        with pytest.raises(BleakError) as refused:
            await hub.client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(RacpRequest.report_all()), response=True)
        assert refused.value.args[0] == 0xFD
        await hub.subscribe()
        await hub.client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(RacpRequest.report_all()), response=True)
        with pytest.raises(BleakError) as busy:
            await hub.client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(RacpRequest.report_last()), response=True)
        assert busy.value.args[0] == 0xFE
        assert await hub.racp_request(RacpRequest.abort()) == RacpResponse(3, RacpResponseCode.SUCCESS)
        assert 0 < len(hub.offsets(True)) < 289  # stopped early
        # not busy any more: the next request is served at once
        hub.notifications.clear()
        assert await hub.racp_request(RacpRequest.report_last()) == RacpResponse(1, RacpResponseCode.SUCCESS)
        assert hub.offsets(True) == [1440]


@run_async
async def test_back_to_back_requests_are_never_refused_as_busy() -> None:
    """The busy flag is cleared before the final indication: a hub writing on the indication gets served."""
    clock = SimClock(manual=True)
    sensor = make_sensor(clock)
    sensor.start()
    await clock.step_min(120)
    async with connected(sensor, clock) as hub:
        await hub.subscribe()
        for _ in range(20):
            assert await hub.racp_request(RacpRequest.report_at_or_after(100)) == RacpResponse(1, RacpResponseCode.SUCCESS)


@run_async
async def test_socp_stops_and_starts_a_session() -> None:
    clock = SimClock(manual=True)
    sensor = make_sensor(clock)
    async with connected(sensor, clock) as hub:
        await hub.subscribe()

        async def socp_request(message: socp.SocpMessage) -> socp.SocpMessage:
            await hub.client.write_gatt_char(CGM_SPECIFIC_OPS_CONTROL_POINT, socp.encode_socp(message, e2e_crc=True), response=True)
            return socp.decode_socp_reply(await asyncio.wait_for(hub.socp.get(), 5), e2e_crc=True)

        assert await socp_request(socp.StopSession()) == socp.SocpResponse(socp.SocpOpcode.STOP_SESSION, socp.SocpResponseCode.SUCCESS)
        status = decode_cgm_status(await hub.client.read_gatt_char(CGM_STATUS), e2e_crc=True)
        assert A.SESSION_STOPPED in status.annunciation
        await clock.step_min(30)
        assert hub.notifications == []
        assert await socp_request(socp.StartSession()) == socp.SocpResponse(socp.SocpOpcode.START_SESSION, socp.SocpResponseCode.SUCCESS)
        await clock.step_min(10)
        await asyncio.sleep(0.05)
        assert hub.offsets(True) == [0, 5, 10]  # a new session: offsets restart
        reply = await socp_request(socp.GetAlertLevel(socp.CgmAlert.HYPO))
        assert reply == socp.AlertLevelResponse(socp.CgmAlert.HYPO, 70.0)
        # a wrong CRC is an ATT error 0x81, not an indication
        bad = bytearray(socp.encode_socp(socp.StopSession(), e2e_crc=True))
        bad[-1] ^= 0xFF
        with pytest.raises(BleakError) as refused:
            await hub.client.write_gatt_char(CGM_SPECIFIC_OPS_CONTROL_POINT, bytes(bad), response=True)
        assert refused.value.args[0] == 0x81


@run_async
async def test_payload_faults_are_applied_to_notifications() -> None:
    clock = SimClock(manual=True)
    plan = FaultPlan(corrupt_crc=0.3, duplicate=0.3, truncate=0.2, out_of_order=0.2, seed=7)
    sensor = make_sensor(clock, plan)
    sensor.start()
    await clock.step_min(24 * 60)
    async with connected(sensor, clock, plan, mtu=23) as hub:
        await hub.subscribe()
        assert await hub.racp_request(RacpRequest.report_all()) == RacpResponse(1, RacpResponseCode.SUCCESS)
    good: list[int] = []
    bad = 0
    for notification in hub.notifications:
        try:
            good.extend(m.time_offset_min for m in decode_cgm_measurements(notification, e2e_crc=True))
        except ValueError:
            bad += 1
    assert bad > 10 and sensor.stats.faults_applied > 10
    assert len(good) != len(set(good)) or good != sorted(good)  # duplicated or reordered
    assert set(good) < set(range(0, 1441, 5))  # something was lost to corruption
