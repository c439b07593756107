"""Radio speed: connect + MTU exchange + full discovery, and time per notification.

Named baseline: in-process (hub and peripheral on one LocalLink, one event loop). Compared against the same
operations over a real loopback TCP hop to an air server in another process.

    .venv/bin/python -m pytest tests/firmware_bridge/test_bench_radio.py -m benchmark --benchmark-enable \
        --benchmark-group-by=group --benchmark-columns=min,median,mean,max,rounds

With the default ``--benchmark-disable`` each benchmark body runs once, as a smoke test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner

from firmware_bridge.radio import Radio
from hardware_sim.air import InProcessAir
from tests.hardware_sim.air_test_peripheral import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    CONTROL_POINT_UUID,
    OP_SEND_LEVELS,
    BatteryPeripheral,
    ServerProcess,
)

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(120)]
NOTIFICATIONS_PER_ROUND = 100


class Bench:
    """A hub radio kept open on its own event loop across benchmark rounds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, radio: Radio, device: Any) -> None:
        self.loop, self.radio, self.device = loop, radio, device

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, 10))


@contextlib.contextmanager
def bench(mode: str) -> Iterator[Bench]:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    server_stack = contextlib.ExitStack()
    try:
        async def open_radio() -> Radio:
            if mode == "inprocess":
                air = await stack.enter_async_context(InProcessAir([BatteryPeripheral()]))
                return await stack.enter_async_context(air.radio())
            server = server_stack.enter_context(ServerProcess())
            return await stack.enter_async_context(Radio.from_spec(server.spec))

        radio = loop.run_until_complete(open_radio())
        device = loop.run_until_complete(
            BleakScanner.find_device_by_filter(
                lambda d, a: BATTERY_SERVICE_UUID in a.service_uuids, timeout=5, **radio.scanner_kwargs()
            )
        )
        assert device is not None
        yield Bench(loop, radio, device)
    finally:
        loop.run_until_complete(stack.aclose())
        server_stack.close()
        loop.close()


@pytest.fixture(params=["inprocess", "tcp"], scope="module")
def radio_bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    with bench(str(request.param)) as b:
        yield b


@pytest.mark.benchmark(group="connect+mtu+discovery")
def test_bench_connect_mtu_discovery(benchmark: Any, radio_bench: Bench) -> None:
    async def connect_and_discover() -> int:
        client = BleakClient(radio_bench.device, **radio_bench.radio.client_kwargs())
        await client.connect()
        try:
            assert client.mtu_size == 247
            return len(client.services.characteristics)
        finally:
            await client.disconnect()

    characteristics = benchmark.pedantic(lambda: radio_bench.run(connect_and_discover()), rounds=20, iterations=1, warmup_rounds=1)
    assert characteristics >= 4


@pytest.mark.benchmark(group=f"{NOTIFICATIONS_PER_ROUND} notifications + 1 indication")
def test_bench_notifications(benchmark: Any, radio_bench: Bench) -> None:
    client = BleakClient(radio_bench.device, **radio_bench.radio.client_kwargs())
    received: list[bytes] = []
    done = asyncio.Event()
    radio_bench.run(client.connect())
    try:
        radio_bench.run(client.start_notify(BATTERY_LEVEL_UUID, lambda _, data: received.append(bytes(data))))
        radio_bench.run(client.start_notify(CONTROL_POINT_UUID, lambda _, data: done.set()))

        async def burst() -> int:
            received.clear()
            done.clear()
            await client.write_gatt_char(CONTROL_POINT_UUID, bytes([OP_SEND_LEVELS, NOTIFICATIONS_PER_ROUND]), response=True)
            await done.wait()
            return len(received)

        run_burst: Callable[[], int] = lambda: radio_bench.run(burst())  # noqa: E731
        count = benchmark.pedantic(run_burst, rounds=20, iterations=1, warmup_rounds=1)
        assert count == NOTIFICATIONS_PER_ROUND
    finally:
        radio_bench.run(client.disconnect())
