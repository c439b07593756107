"""The plain bleak API over the bumble backend, against an emulated peripheral.

Every scenario runs twice: in process (hub and peripheral on one LocalLink) and over a real loopback TCP hop
to an air server running in another Python process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from firmware_bridge.backends import BumbleClientBackend, BumbleScannerBackend
from firmware_bridge.radio import Radio, RadioError
from hardware_sim.air import InProcessAir
from tests.hardware_sim.air_test_peripheral import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    BULK_LENGTH,
    BULK_UUID,
    CONTROL_POINT_UUID,
    OP_SEND_BULK,
    OP_SEND_LEVELS,
    RESPONSE,
    SINK_UUID,
    SUCCESS,
    BatteryPeripheral,
    ServerProcess,
)

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")
HEART_RATE_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"


def run(coroutine: Awaitable[T], timeout_s: float = 15.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout_s)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def server() -> Any:
    with ServerProcess() as process:
        yield process


@pytest.fixture(params=["inprocess", "tcp"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def hub(mode: str, server: ServerProcess, requested_mtu: int = 247) -> AsyncIterator[Radio]:
    if mode == "inprocess":
        async with InProcessAir([BatteryPeripheral()]) as air, air.radio(requested_mtu) as radio:
            yield radio
    else:
        async with Radio.from_spec(server.spec, requested_mtu=requested_mtu) as radio:
            yield radio


def is_battery(device: BLEDevice, advertisement: Any) -> bool:
    return BATTERY_SERVICE_UUID in advertisement.service_uuids


async def find_battery(radio: Radio, timeout_s: float = 5.0) -> BLEDevice:
    device = await BleakScanner.find_device_by_filter(is_battery, timeout=timeout_s, **radio.scanner_kwargs())
    assert device is not None, "battery peripheral not found"
    return device


# -- configuration ----------------------------------------------------------------------------------------------
def test_default_spec_selects_the_platform_backend() -> None:
    for spec in (None, "", "default", "bluez"):
        radio = Radio.from_spec(spec)
        assert radio.is_default
        assert radio.scanner_kwargs() == {} and radio.client_kwargs() == {}


def test_transport_spec_selects_the_bumble_backend() -> None:
    radio = Radio.from_spec("tcp-client:127.0.0.1:1")
    assert radio.scanner_kwargs()["backend"] is BumbleScannerBackend
    assert radio.client_kwargs()["backend"] is BumbleClientBackend
    assert radio.client_kwargs()["radio"] is radio


def test_unreachable_transport_is_a_typed_error() -> None:
    async def scenario() -> None:
        with socket_port_closed() as port:
            async with Radio.from_spec(f"tcp-client:127.0.0.1:{port}"):
                pass

    with pytest.raises(RadioError):
        run(scenario())


def test_invalid_requested_mtu_is_rejected() -> None:
    with pytest.raises(RadioError):
        Radio.from_spec("tcp-client:127.0.0.1:1", requested_mtu=22)


@contextlib.contextmanager
def socket_port_closed() -> Any:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


# -- scanning ---------------------------------------------------------------------------------------------------
def test_scan_by_service_uuid_reports_advertisement_data(mode: str, server: ServerProcess) -> None:
    async def scenario() -> None:
        async with hub(mode, server) as radio:
            found: dict[str, Any] = {}
            async with BleakScanner(
                lambda d, a: found.setdefault(d.address, a), service_uuids=[BATTERY_SERVICE_UUID], **radio.scanner_kwargs()
            ) as scanner:
                for _ in range(200):
                    if found:
                        break
                    await asyncio.sleep(0.01)
            assert len(found) == 1
            (address, advertisement), = found.items()
            assert advertisement.local_name == "GT-Battery"
            assert BATTERY_SERVICE_UUID in advertisement.service_uuids
            assert isinstance(advertisement.rssi, int)
            assert address in {d.address for d in scanner.discovered_devices}

            by_address = await BleakScanner.find_device_by_address(address, timeout=5, **radio.scanner_kwargs())
            assert by_address is not None and by_address.name == "GT-Battery"

            other = await BleakScanner.discover(timeout=0.3, service_uuids=[HEART_RATE_SERVICE_UUID], **radio.scanner_kwargs())
            assert other == []

    run(scenario())


# -- GATT -------------------------------------------------------------------------------------------------------
def test_connect_discover_read_write(mode: str, server: ServerProcess) -> None:
    async def scenario() -> None:
        async with hub(mode, server) as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                assert client.is_connected
                assert client.mtu_size == 247
                service = client.services.get_service(BATTERY_SERVICE_UUID)
                assert service is not None
                assert {c.uuid for c in service.characteristics} == {BATTERY_LEVEL_UUID, CONTROL_POINT_UUID, BULK_UUID, SINK_UUID}
                level = service.get_characteristic(BATTERY_LEVEL_UUID)
                assert level is not None and set(level.properties) == {"read", "notify"}
                assert level.get_descriptor("00002902-0000-1000-8000-00805f9b34fb") is not None
                assert (await client.read_gatt_char(BATTERY_LEVEL_UUID)) == bytearray([87])

                await client.write_gatt_char(SINK_UUID, b"with-response", response=True)
                assert await client.read_gatt_char(SINK_UUID) == b"with-response"
                await client.write_gatt_char(SINK_UUID, b"no-response", response=False)
                assert await client.read_gatt_char(SINK_UUID) == b"no-response"  # the read queues behind the command

                with pytest.raises(BleakGATTProtocolError) as error:
                    await client.write_gatt_char(BATTERY_LEVEL_UUID, b"\x01", response=True)
                assert error.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
            assert not client.is_connected
            with pytest.raises(BleakError):
                await client.read_gatt_char(BATTERY_LEVEL_UUID)

    run(scenario())


def test_notifications_then_indication_in_order(mode: str, server: ServerProcess) -> None:
    async def scenario() -> None:
        async with hub(mode, server) as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                events: list[tuple[str, bytes]] = []
                done = asyncio.Event()

                def on_indication(_: Any, data: bytearray) -> None:
                    events.append(("indication", bytes(data)))
                    done.set()

                await client.start_notify(BATTERY_LEVEL_UUID, lambda _, data: events.append(("notification", bytes(data))))
                await client.start_notify(CONTROL_POINT_UUID, on_indication)
                await client.write_gatt_char(CONTROL_POINT_UUID, bytes([OP_SEND_LEVELS, 25]), response=True)
                await asyncio.wait_for(done.wait(), 5)
                assert events == [("notification", bytes([i])) for i in range(25)] + [
                    ("indication", bytes([RESPONSE, OP_SEND_LEVELS, SUCCESS]))
                ]

                # a fast client writes its next request as soon as it sees the indication
                done.clear()
                events.clear()
                await client.write_gatt_char(CONTROL_POINT_UUID, bytes([OP_SEND_LEVELS, 2]), response=True)
                await asyncio.wait_for(done.wait(), 5)
                assert events[-1] == ("indication", bytes([RESPONSE, OP_SEND_LEVELS, SUCCESS]))

                await client.stop_notify(BATTERY_LEVEL_UUID)
                done.clear()
                events.clear()
                await client.write_gatt_char(CONTROL_POINT_UUID, bytes([OP_SEND_LEVELS, 3]), response=True)
                await asyncio.wait_for(done.wait(), 5)
                assert events == [("indication", bytes([RESPONSE, OP_SEND_LEVELS, SUCCESS]))]

    run(scenario())


@pytest.mark.parametrize("requested_mtu", [23, 247])
def test_notifications_are_truncated_to_mtu_minus_3(mode: str, server: ServerProcess, requested_mtu: int) -> None:
    async def scenario() -> None:
        async with hub(mode, server, requested_mtu=requested_mtu) as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                assert client.mtu_size == requested_mtu
                bulk = client.services.get_characteristic(BULK_UUID)
                assert bulk is not None and bulk.max_write_without_response_size == requested_mtu - 3
                received: asyncio.Queue[bytes] = asyncio.Queue()
                indicated = asyncio.Event()
                await client.start_notify(BULK_UUID, lambda _, data: received.put_nowait(bytes(data)))
                await client.start_notify(CONTROL_POINT_UUID, lambda _, data: indicated.set())
                await client.write_gatt_char(CONTROL_POINT_UUID, bytes([OP_SEND_BULK, BULK_LENGTH]), response=True)
                await asyncio.wait_for(indicated.wait(), 5)
                payload = await asyncio.wait_for(received.get(), 5)
                assert payload == bytes(range(min(BULK_LENGTH, requested_mtu - 3)))

    run(scenario())


def test_peripheral_mtu_cap_wins() -> None:
    from hardware_sim.faults import FaultPlan

    async def scenario() -> None:
        async with InProcessAir([BatteryPeripheral()], fault_plan=FaultPlan(mtu=23)) as air, air.radio(247) as radio:
            device = await find_battery(radio)
            async with BleakClient(device, **radio.client_kwargs()) as client:
                assert client.mtu_size == 23

    run(scenario())


# -- link loss --------------------------------------------------------------------------------------------------
def test_link_drop_fires_disconnected_callback_and_reconnect_works() -> None:
    async def scenario() -> None:
        peripheral = BatteryPeripheral()
        async with InProcessAir([peripheral]) as air, air.radio() as radio:
            device = await find_battery(radio)
            dropped = asyncio.Event()
            client = BleakClient(device, disconnected_callback=lambda _: dropped.set(), **radio.client_kwargs())
            await client.connect()
            await client.write_gatt_char(SINK_UUID, b"before the drop", response=True)
            await air.drop_links()
            await asyncio.wait_for(dropped.wait(), 5)
            assert not client.is_connected
            assert peripheral.disconnect_reasons == [0x08]  # connection timeout, as a real link loss

            device = await find_battery(radio)  # the peripheral advertises again
            await client.connect()
            assert client.is_connected
            assert await client.read_gatt_char(SINK_UUID) == b"before the drop"  # device state survived
            dropped.clear()
            await client.disconnect()
            await asyncio.sleep(0.05)
            assert not dropped.is_set()  # a disconnection the hub asked for is not reported as a drop
            assert peripheral.connections == 2

    run(scenario())


def test_link_drop_during_a_pending_request_raises_bleak_error() -> None:
    from hardware_sim.faults import FaultPlan

    async def scenario() -> None:
        plan = FaultPlan(response_delay_ms=80)  # every discovery request is slow too
        async with InProcessAir([BatteryPeripheral()], fault_plan=plan) as air, air.radio(23) as radio:
            device = await find_battery(radio)
            client = BleakClient(device, **radio.client_kwargs())
            await client.connect()
            pending = asyncio.ensure_future(client.read_gatt_char(BATTERY_LEVEL_UUID))
            await asyncio.sleep(0.02)  # the read request is out, its response is 80 ms late
            await air.drop_links()
            with pytest.raises(BleakError):
                await asyncio.wait_for(pending, 5)
            assert not client.is_connected

    run(scenario())


def test_connecting_to_an_absent_device_times_out() -> None:
    async def scenario() -> None:
        async with InProcessAir([BatteryPeripheral()]) as air, air.radio() as radio:
            client = BleakClient("C1:22:33:44:55:66", timeout=0.3, **radio.client_kwargs())
            with pytest.raises(TimeoutError):
                await client.connect()
            assert not client.is_connected
            # the radio is usable again after a connection timeout (bumble's virtual controller needed a fix)
            async with BleakClient(await find_battery(radio), **radio.client_kwargs()) as battery:
                assert battery.is_connected

    run(scenario())
