"""BLE benchmarks: connect + discovery, backfilling 24 h of CGM records (288) at MTU 23 vs 247, hub CPU per notification.

Run the measurements (CI runs each once, untimed, as a smoke test)::

    .venv/bin/python -m pytest tests/firmware_bridge/test_bench_ble.py -m benchmark --benchmark-enable \
        --benchmark-group-by=group --benchmark-columns=min,median,mean,max,rounds

Set-up: the air server (``hardware_sim.air.server.serve``) and the hub share one process and event loop but
talk over real loopback TCP (``tcp-client:127.0.0.1:PORT``, TCP_NODELAY), with a manual sim clock so that
exactly 288 records are stored and no live reading interferes. Baselines, named in each group:
``mtu23`` is the baseline for backfill (what BlueZ reports to bleak); ``single_record`` for CPU per
notification.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner

from firmware_bridge.codec.cgms import AnnunciationOrder, CgmMeasurement, SensorStatusAnnunciation, pack_cgm_measurements
from firmware_bridge.codec.racp import RacpRequest, RacpResponse, RacpResponseCode, decode_racp_response, encode_racp
from firmware_bridge.codec.uuids import CGM_MEASUREMENT, CGM_SERVICE, RECORD_ACCESS_CONTROL_POINT
from firmware_bridge.radio import Radio
from firmware_bridge.sessions.cgm_session import decode_notification, reading_from_measurement
from firmware_bridge.sessions.tracking import Reading, ReadingTracker
from hardware_sim.air.server import serve
from hardware_sim.clock import SimClock
from hardware_sim.devices.cgm_model import CgmSensorConfig, CgmSensorModel
from hardware_sim.devices.cgm_sensor import CgmSensorPeripheral
from hardware_sim.devices.glucose_source import ScriptedTrace

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(300)]

DAY_RECORDS = 288
LAST_OFFSET_MIN = 24 * 60 - 5


class Rig:
    """A sensor with one stored day, served over loopback TCP, and a connected hub (one event loop)."""

    def __init__(self, mtu: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.mtu = mtu
        self.clock = SimClock(manual=True)
        self.sensor = CgmSensorPeripheral(CgmSensorModel(ScriptedTrace.demo_day(), CgmSensorConfig(e2e_crc=True)), self.clock)
        self.notifications = 0
        self.cpu_s = 0.0
        self.tracker: ReadingTracker[Reading] = ReadingTracker()
        self.records = 0
        self.response: asyncio.Future[bytes] | None = None
        self.run(self._start())

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def _start(self) -> None:
        self.sensor.start()
        await self.clock.step_min(LAST_OFFSET_MIN)
        assert len(self.sensor.model.records) == DAY_RECORDS
        self.server = await serve([self.sensor], clock=self.clock)
        self.radio = Radio.from_spec(self.server.spec, requested_mtu=self.mtu)
        await self.radio.__aenter__()
        self.device = await BleakScanner.find_device_by_filter(
            lambda d, adv: CGM_SERVICE in adv.service_uuids, timeout=5, **self.radio.scanner_kwargs()
        )
        assert self.device is not None
        self.client = BleakClient(self.device, **self.radio.client_kwargs())
        await self.client.connect()
        await self.client.start_notify(CGM_MEASUREMENT, self._on_notification)
        await self.client.start_notify(RECORD_ACCESS_CONTROL_POINT, self._on_racp)

    def _on_notification(self, _c: object, data: bytearray) -> None:
        started = time.process_time()
        records, error = decode_notification(bytes(data), e2e_crc=True, annunciation_order=AnnunciationOrder.SPEC)
        assert error is None
        for measurement in records:
            self.tracker.offer(reading_from_measurement(measurement, "backfill"))
        self.records += len(records)
        self.notifications += 1
        self.cpu_s += time.process_time() - started

    def _on_racp(self, _c: object, data: bytearray) -> None:
        if self.response is not None and not self.response.done():
            self.response.set_result(bytes(data))

    async def backfill_day(self) -> int:
        """RACP: report the 288 stored records of the day; returns how many arrived before the response."""
        self.records = 0
        self.tracker = ReadingTracker()
        self.response = self.loop.create_future()
        await self.client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(RacpRequest.report_range(0, LAST_OFFSET_MIN)), response=True)
        assert decode_racp_response(await asyncio.wait_for(self.response, 30)) == RacpResponse(1, RacpResponseCode.SUCCESS)
        return self.records

    async def reconnect(self) -> float:
        """Disconnect, then connect again (LE connection + MTU exchange + full discovery)."""
        await self.client.disconnect()
        started = time.perf_counter()
        client = BleakClient(self.device, **self.radio.client_kwargs())
        await client.connect()
        elapsed = time.perf_counter() - started
        self.client = client
        await client.start_notify(CGM_MEASUREMENT, self._on_notification)
        await client.start_notify(RECORD_ACCESS_CONTROL_POINT, self._on_racp)
        return elapsed

    def close(self) -> None:
        async def stop() -> None:
            await self.client.disconnect()
            await self.radio.__aexit__(None, None, None)
            await self.server.close()
            await self.sensor.stop()

        self.run(stop())
        self.loop.close()


@pytest.fixture(params=[23, 247], ids=["mtu23", "mtu247"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    rig = Rig(request.param)
    yield rig
    rig.close()


def test_backfill_a_day_of_records(rig: Rig, benchmark: Any) -> None:
    """Time to backfill 288 records. Baseline: mtu23 (2 records per notification); mtu247 packs 24."""
    benchmark.group = "backfill 288 records (baseline: mtu23)"
    received = benchmark.pedantic(lambda: rig.run(rig.backfill_day()), rounds=5, iterations=1, warmup_rounds=1)
    assert received == DAY_RECORDS
    per_notification = rig.cpu_s / rig.notifications
    benchmark.extra_info.update(
        mtu=rig.mtu,
        notifications_per_backfill=rig.notifications // 6,
        hub_cpu_us_per_notification=round(per_notification * 1e6, 1),
        hub_cpu_us_per_record=round(rig.cpu_s / (6 * DAY_RECORDS) * 1e6, 1),
    )
    print(f"\nMTU {rig.mtu}: {rig.notifications // 6} notifications per backfill, hub CPU "
          f"{per_notification * 1e6:.1f} us/notification, {rig.cpu_s / (6 * DAY_RECORDS) * 1e6:.1f} us/record")


@pytest.fixture
def rig247() -> Iterator[Rig]:
    rig = Rig(247)
    yield rig
    rig.close()


def test_connect_and_discovery(rig247: Rig, benchmark: Any) -> None:
    """LE connection + MTU exchange (to 247) + discovery of every service, characteristic and descriptor."""
    rig = rig247
    benchmark.group = "connect + MTU exchange + discovery"
    elapsed = benchmark.pedantic(lambda: rig.run(rig.reconnect()), rounds=10, iterations=1, warmup_rounds=1)
    assert elapsed > 0 and rig.client.is_connected


def _payload(records: int) -> bytes:
    day = [CgmMeasurement(100.0 + i % 50, i * 5, SensorStatusAnnunciation(0), 0.4) for i in range(records)]
    (payload,) = pack_cgm_measurements(day, mtu=247, e2e_crc=True)
    return payload


@pytest.mark.parametrize("records", [1, 24], ids=["single_record", "24_records"])
def test_hub_cpu_per_notification(records: int, benchmark: Any) -> None:
    """Decode (with E2E-CRC) + track one notification. Baseline: single_record (one live reading)."""
    benchmark.group = "hub CPU per notification (baseline: single_record)"
    payload = _payload(records)

    def handle() -> int:
        tracker: ReadingTracker[Reading] = ReadingTracker()
        decoded, error = decode_notification(payload, e2e_crc=True, annunciation_order=AnnunciationOrder.SPEC)
        for measurement in decoded:
            tracker.offer(reading_from_measurement(measurement, "live"))
        return len(decoded) if error is None else -1

    assert benchmark(handle) == records
