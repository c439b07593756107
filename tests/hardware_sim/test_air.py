"""The simulated air: link sessions per hub, out-of-range periods, hub restarts, SimClock and FaultPlan."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import Awaitable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.backends.bumble_scanner import advertisement_data_from_bytes
from firmware_bridge.radio import Radio
from hardware_sim.air import InProcessAir, advertising_data, static_address_for
from hardware_sim.clock import ClockError, SimClock
from hardware_sim.faults import FaultPlan, FaultPlanError, corrupt_crc, truncate
from tests.hardware_sim.air_test_peripheral import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    SINK_UUID,
    BatteryPeripheral,
    ServerProcess,
)

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")
BRIEF_PLAN = (
    "drop_every_min=120,drop_duration_min=30,corrupt_crc=0.02,duplicate=0.02,truncate=0.01,"
    "out_of_order=0.01,mtu=23,response_delay_ms=50,seed=1"
)


def run(coroutine: Awaitable[T], timeout_s: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout_s)

    return asyncio.run(bounded())


def is_battery(device: Any, advertisement: Any) -> bool:
    return BATTERY_SERVICE_UUID in advertisement.service_uuids


async def find_battery(radio: Radio, timeout_s: float = 5.0) -> Any:
    device = await BleakScanner.find_device_by_filter(is_battery, timeout=timeout_s, **radio.scanner_kwargs())
    assert device is not None, "battery peripheral not found"
    return device


# -- several hubs, hub restarts (real loopback TCP to a server process) ------------------------------------------
@pytest.fixture(scope="module")
def server() -> Any:
    with ServerProcess() as process:
        yield process


def test_two_hubs_share_the_device_models(server: ServerProcess) -> None:
    async def scenario(spec: str) -> None:
        async with Radio.from_spec(spec) as radio_a, Radio.from_spec(spec) as radio_b:
            device_a, device_b = await asyncio.gather(find_battery(radio_a), find_battery(radio_b))
            assert device_a.address == device_b.address  # the same peripheral, seen by each hub on its own link
            async with BleakClient(device_a, **radio_a.client_kwargs()) as hub_a, BleakClient(
                device_b, **radio_b.client_kwargs()
            ) as hub_b:
                await hub_a.write_gatt_char(SINK_UUID, b"written by hub A", response=True)
                assert await hub_b.read_gatt_char(SINK_UUID) == b"written by hub A"
                assert await hub_a.read_gatt_char(BATTERY_LEVEL_UUID) == await hub_b.read_gatt_char(BATTERY_LEVEL_UUID)

    run(scenario(server.spec))


HUB_THAT_DIES = """
import asyncio, sys
from bleak import BleakClient, BleakScanner
from firmware_bridge.radio import Radio
async def main():
    async with Radio.from_spec(sys.argv[1]) as radio:
        device = await BleakScanner.find_device_by_filter(
            lambda d, a: "0000180f-0000-1000-8000-00805f9b34fb" in a.service_uuids, timeout=5, **radio.scanner_kwargs())
        client = BleakClient(device, **radio.client_kwargs())
        await client.connect()
        await client.write_gatt_char("7e570003-9c2b-4f00-9a5e-6f1d0c2a0001", b"from the dead hub", response=True)
        print("CONNECTED", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


def test_hub_process_killed_then_a_new_hub_connects(server: ServerProcess) -> None:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}

    async def new_hub(spec: str) -> None:
        async with Radio.from_spec(spec) as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                assert await client.read_gatt_char(SINK_UUID) == b"from the dead hub"

    hub = subprocess.Popen(
        [sys.executable, "-c", HUB_THAT_DIES, server.spec], cwd=root, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert hub.stdout is not None and hub.stdout.readline().strip() == "CONNECTED"
    finally:
        hub.kill()  # no disconnect, no socket shutdown handshake from the hub: the air must clean up
        hub.wait(timeout=5)
        if hub.stdout is not None:
            hub.stdout.close()
    run(new_hub(server.spec))
    run(new_hub(server.spec))  # and again: each hub link is torn down when its socket closes


def test_out_of_range_period_over_tcp_with_accelerated_clock() -> None:
    # 1200x: 20 sim minutes per real second; out of range from sim minute 30 to 33 (real 1.5 s to 1.65 s)
    async def scenario(spec: str) -> None:
        async with Radio.from_spec(spec) as radio:
            device = await find_battery(radio)
            dropped = asyncio.Event()
            client = BleakClient(device, disconnected_callback=lambda _: dropped.set(), **radio.client_kwargs())
            await client.connect()
            await asyncio.wait_for(dropped.wait(), 8)
            assert not client.is_connected
            device = await find_battery(radio, timeout_s=5)
            await client.connect()
            assert await client.read_gatt_char(BATTERY_LEVEL_UUID) == bytearray([87])
            await client.disconnect()

    with ServerProcess("drop_every_min=30,drop_duration_min=3", acceleration=1200) as server:
        run(scenario(server.spec))


# -- out of range in process, on a manual clock (deterministic) ---------------------------------------------------
def test_out_of_range_in_sim_time_manual_clock() -> None:
    async def scenario() -> None:
        clock = SimClock(manual=True)
        plan = FaultPlan(drop_every_min=120, drop_duration_min=30)
        peripheral = BatteryPeripheral()
        async with InProcessAir([peripheral], clock, plan) as air, air.radio() as radio:
            device = await find_battery(radio)
            dropped = asyncio.Event()
            client = BleakClient(device, disconnected_callback=lambda _: dropped.set(), **radio.client_kwargs())
            await client.connect()

            await clock.step_min(119)
            assert client.is_connected and air.session is not None and air.session.in_range

            await clock.step_min(2)  # sim minute 121: out of range
            await asyncio.wait_for(dropped.wait(), 5)
            assert peripheral.disconnect_reasons == [0x08]
            assert await BleakScanner.discover(timeout=0.3, **radio.scanner_kwargs()) == []

            await clock.step_min(30)  # sim minute 151: back in range
            device = await find_battery(radio)
            await client.connect()
            assert client.is_connected
            await client.disconnect()

    run(scenario())


def test_slow_responses_still_answer() -> None:
    async def scenario() -> None:
        async with InProcessAir([BatteryPeripheral()], fault_plan=FaultPlan(response_delay_ms=20)) as air, air.radio() as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                assert await client.read_gatt_char(BATTERY_LEVEL_UUID) == bytearray([87])

    run(scenario())


def test_model_notifies_every_attached_link() -> None:
    async def scenario() -> None:
        peripheral = BatteryPeripheral()
        async with InProcessAir([peripheral]) as air, air.radio() as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                levels: asyncio.Queue[int] = asyncio.Queue()
                await client.start_notify(BATTERY_LEVEL_UUID, lambda _, data: levels.put_nowait(data[0]))
                await peripheral.set_level(42)
                assert await asyncio.wait_for(levels.get(), 5) == 42
        assert peripheral.connections == 1 and len(peripheral.disconnect_reasons) == 1

    run(scenario())


# -- SimClock -----------------------------------------------------------------------------------------------------
def test_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    async def scenario() -> list[tuple[str, float]]:
        clock = SimClock(datetime(2026, 1, 1, tzinfo=timezone.utc), manual=True)
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, minutes: float) -> None:
            await clock.sleep_min(minutes)
            woke.append((name, clock.now_min()))

        async def periodic() -> None:
            for _ in range(3):
                await clock.sleep_min(5)
                woke.append(("tick", clock.now_min()))

        tasks = [asyncio.create_task(sleeper("late", 12)), asyncio.create_task(sleeper("early", 3)), asyncio.create_task(periodic())]
        await asyncio.sleep(0)
        await clock.step_min(20)
        await asyncio.gather(*tasks)
        assert clock.now() == datetime(2026, 1, 1, 0, 20, tzinfo=timezone.utc)
        return woke

    assert run(scenario()) == [("early", 3), ("tick", 5), ("tick", 10), ("late", 12), ("tick", 15)]


def test_accelerated_clock_runs_faster_than_real_time() -> None:
    async def scenario() -> float:
        clock = SimClock(acceleration=6000)  # 100 sim minutes per real second
        await clock.sleep_min(5)  # 50 ms real
        return clock.now_min()

    assert run(scenario()) >= 5
    assert SimClock(acceleration=60).real_seconds(10) == pytest.approx(10)


@pytest.mark.parametrize("kwargs", [{"acceleration": 0}, {"acceleration": -1}, {"start": datetime(2026, 1, 1)}])
def test_invalid_clock_is_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ClockError):
        SimClock(**kwargs)


def test_clock_misuse_is_rejected() -> None:
    with pytest.raises(ClockError):
        SimClock().advance_min(1)  # not manual
    with pytest.raises(ClockError):
        SimClock(manual=True).advance_min(-1)


# -- FaultPlan ----------------------------------------------------------------------------------------------------
def test_fault_plan_parses_the_cli_string() -> None:
    plan = FaultPlan.parse(BRIEF_PLAN)
    assert plan == FaultPlan(120, 30, 0.02, 0.02, 0.01, 0.01, 23, 50, 1)
    assert FaultPlan.parse(plan.to_string()) == plan
    assert FaultPlan.parse(None) == FaultPlan.parse("") == FaultPlan.parse("none") == FaultPlan()


@pytest.mark.parametrize(
    "text",
    ["mtu=100", "corrupt_crc=1.5", "duplicate=-0.1", "bogus=1", "seed=abc", "mtu", "drop_every_min=10,drop_duration_min=10",
     "drop_duration_min=5", "seed=1,seed=2", "response_delay_ms=nan"],
)
def test_invalid_fault_plans_are_typed_errors(text: str) -> None:
    with pytest.raises(FaultPlanError):
        FaultPlan.parse(text)


plans = st.builds(
    FaultPlan,
    drop_every_min=st.sampled_from([0.0, 60.0, 120.0, 90.5]),
    drop_duration_min=st.just(0.0),
    corrupt_crc=st.floats(0, 1),
    duplicate=st.floats(0, 1),
    truncate=st.floats(0, 1),
    out_of_order=st.floats(0, 1),
    mtu=st.sampled_from([23, 247]),
    response_delay_ms=st.floats(0, 1000),
    seed=st.integers(0, 2**31),
).map(lambda p: FaultPlan(**{**p.__dict__, "drop_duration_min": p.drop_every_min / 4}))


@given(plans)
def test_fault_plan_string_round_trips(plan: FaultPlan) -> None:
    assert FaultPlan.parse(plan.to_string()) == plan


@given(st.floats(0, 10_000))
@settings(max_examples=200)
def test_range_is_constant_until_the_next_change(sim_min: float) -> None:
    plan = FaultPlan(drop_every_min=120, drop_duration_min=30)
    expected_in_range = sim_min < 120 or sim_min % 120 >= 30
    assert plan.in_range(sim_min) == expected_in_range
    change = plan.next_range_change_min(sim_min)
    assert change is not None and change > sim_min
    assert plan.in_range((sim_min + change) / 2) == plan.in_range(sim_min)
    assert plan.in_range(change) != plan.in_range(sim_min)


def test_perfect_link_is_always_in_range() -> None:
    assert FaultPlan().next_range_change_min(5) is None
    assert all(FaultPlan().in_range(t) for t in (0, 1e6))


def test_payload_faults_are_reproducible_and_follow_the_probabilities() -> None:
    plan = FaultPlan(corrupt_crc=0.1, duplicate=0.0, truncate=1.0, out_of_order=0.5, seed=7)
    first = [plan.payload_faults(plan.rng("cgm")) for _ in range(1)]
    rng_a, rng_b = plan.rng("cgm"), plan.rng("cgm")
    draws_a = [plan.payload_faults(rng_a) for _ in range(5000)]
    assert draws_a == [plan.payload_faults(rng_b) for _ in range(5000)]
    assert draws_a[:1] == first
    assert draws_a != [plan.payload_faults(plan.rng("pump")) for _ in range(5000)]  # independent streams
    assert 0.08 < sum(f.corrupt_crc for f in draws_a) / 5000 < 0.12
    assert 0.45 < sum(f.out_of_order for f in draws_a) / 5000 < 0.55
    assert not any(f.duplicate for f in draws_a) and all(f.truncate for f in draws_a)


@given(st.binary(min_size=2, max_size=40), st.integers(0, 1000))
def test_payload_helpers_corrupt_and_truncate(payload: bytes, seed: int) -> None:
    corrupted = corrupt_crc(payload)
    assert len(corrupted) == len(payload) and corrupted[:-2] == payload[:-2] and corrupted != payload
    shorter = truncate(payload, random.Random(seed))
    assert 1 <= len(shorter) < len(payload) and payload.startswith(shorter)


# -- advertising --------------------------------------------------------------------------------------------------
@given(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30),
    st.lists(st.integers(0x1800, 0x18FF), min_size=1, max_size=3, unique=True),
)
def test_advertising_data_round_trips_through_the_scanner_parser(name: str, uuids16: list[int]) -> None:
    raw = advertising_data(name, uuids16)
    assert len(raw) <= 31
    parsed = advertisement_data_from_bytes(raw, rssi=-60)
    assert parsed.service_uuids == [f"0000{u:04x}-0000-1000-8000-00805f9b34fb" for u in uuids16]
    assert parsed.local_name is not None and name.startswith(parsed.local_name)
    assert parsed.rssi == -60


def test_advertising_data_with_a_128_bit_uuid() -> None:
    custom = "7e570001-9c2b-4f00-9a5e-6f1d0c2a0001"
    parsed = advertisement_data_from_bytes(advertising_data("GT", [custom]), rssi=0)
    assert parsed.service_uuids == [custom] and parsed.local_name == "GT"


def test_scanner_parser_ignores_malformed_structures() -> None:
    parsed = advertisement_data_from_bytes(bytes([3, 0x03, 0x0F, 0x18, 9, 0x09, 0x41]), rssi=-1)  # name overruns
    assert parsed.service_uuids == ["0000180f-0000-1000-8000-00805f9b34fb"] and parsed.local_name is None


def test_static_addresses_are_stable_and_static_random() -> None:
    assert static_address_for("GT-CGM") == static_address_for("GT-CGM") != static_address_for("GT-Pump")
    assert int(static_address_for("GT-CGM")[:2], 16) & 0xC0 == 0xC0


def test_clock_start_is_kept() -> None:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    clock = SimClock(start, manual=True)
    clock.advance_min(90)
    assert clock.now() == start + timedelta(minutes=90)


def test_one_hub_holds_two_peripherals_while_scanning() -> None:
    async def scenario() -> None:
        cgm_like, pump_like = BatteryPeripheral("GT-One", level=11), BatteryPeripheral("GT-Two", level=22)
        async with InProcessAir([cgm_like, pump_like]) as air, air.radio() as radio:
            seen: dict[str, Any] = {}
            async with BleakScanner(lambda d, a: seen.setdefault(a.local_name, d), **radio.scanner_kwargs()):
                while len(seen) < 2:
                    await asyncio.sleep(0.01)
                # connect while the scanner still runs, both at once
                clients = [BleakClient(seen[name], **radio.client_kwargs()) for name in ("GT-One", "GT-Two")]
                await asyncio.gather(*(client.connect() for client in clients))
            levels: dict[int, asyncio.Queue[int]] = {0: asyncio.Queue(), 1: asyncio.Queue()}
            for index, client in enumerate(clients):
                assert await client.read_gatt_char(BATTERY_LEVEL_UUID) == bytearray([(11, 22)[index]])
                await client.start_notify(BATTERY_LEVEL_UUID, lambda _, data, i=index: levels[i].put_nowait(data[0]))
            await pump_like.set_level(23)
            await cgm_like.set_level(12)
            assert await asyncio.wait_for(levels[0].get(), 5) == 12
            assert await asyncio.wait_for(levels[1].get(), 5) == 23
            assert levels[0].empty() and levels[1].empty()
            for client in clients:
                await client.disconnect()

    run(scenario())


def test_simulator_process_gone_is_a_disconnection_for_the_hub() -> None:
    async def scenario(server: ServerProcess) -> None:
        async with Radio.from_spec(server.spec) as radio:
            dropped = asyncio.Event()
            client = BleakClient(await find_battery(radio), disconnected_callback=lambda _: dropped.set(), **radio.client_kwargs())
            await client.connect()
            await asyncio.get_running_loop().run_in_executor(None, server.kill)
            await asyncio.wait_for(dropped.wait(), 5)
            assert not client.is_connected and not radio.is_alive
            with pytest.raises(BleakError):
                await client.read_gatt_char(BATTERY_LEVEL_UUID)
            await client.disconnect()  # harmless

    with ServerProcess() as server:
        run(scenario(server))


def test_clients_that_leave_at_once_leave_no_link_behind() -> None:
    from hardware_sim.air import serve

    async def scenario() -> None:
        server = await serve([BatteryPeripheral()], port=0)
        try:
            for _ in range(3):
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.close()
            async with Radio.from_spec(server.spec) as radio:  # a real hub still gets a working link
                async with BleakClient(await find_battery(radio), **radio.client_kwargs()) as client:
                    assert await client.read_gatt_char(BATTERY_LEVEL_UUID) == bytearray([87])
            for _ in range(100):
                if not server.sessions:
                    break
                await asyncio.sleep(0.01)
            assert not server.sessions
        finally:
            await server.close()

    run(scenario())
