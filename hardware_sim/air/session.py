"""One hub's view of the air: a LocalLink with the hub's virtual controller and one bumble Device per peripheral.

Each hub (each TCP client, or an in-process test) gets its own :class:`LinkSession`, so hubs never share a
virtual controller: bumble's virtual controller has no supervision timeout and ignores HCI Reset, so a link
must be torn down explicitly when its hub goes away (:meth:`LinkSession.close`), which disconnects the
peripherals' connections (they see ``on_disconnected``) and frees the device models for the next hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from bumble import hci
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.hci import HCI_CONNECTION_TIMEOUT_ERROR, HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR, Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from hardware_sim.air.peripheral import EmulatedPeripheral
from hardware_sim.clock import SimClock
from hardware_sim.faults import FaultPlan

logger = logging.getLogger(__name__)

#: Advertising interval of the emulated peripherals (ms): short, so scans find them within milliseconds.
ADVERTISING_INTERVAL_MS = 20.0


class HubController(Controller):
    """bumble's virtual controller, fixed for the hub's side of the link.

    bumble's LE Create Connection Cancel answers SUCCESS but neither clears the pending connection nor sends the
    LE Connection Complete event (status 0x02, Unknown Connection Identifier) that a real controller sends: the
    host then waits forever after a connection timeout and every later connection attempt is refused with
    Command Disallowed. Out-of-range peripherals make connection timeouts routine, so the hub side needs this.
    """

    def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
        result = super().on_hci_le_create_connection_cancel_command(command)
        pending = self.pending_le_connection
        if pending is not None:
            self.pending_le_connection = None
            event = hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,
                peer_address=pending.peer_address,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
            # after the Command Complete that the dispatcher sends for this command
            asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return result


class LinkSession:
    """The emulated radio world of ONE hub; create, ``await start()``, ``await close()`` on one event loop."""

    def __init__(
        self,
        peripherals: Sequence[EmulatedPeripheral],
        clock: SimClock,
        fault_plan: FaultPlan,
        *,
        hub_source: Any = None,
        hub_sink: Any = None,
        name: str = "hub",
    ) -> None:
        self.peripherals = list(peripherals)
        self.clock = clock
        self.fault_plan = fault_plan
        self.link = LocalLink()
        self.hub_controller = HubController(f"{name}-controller", host_source=hub_source, host_sink=hub_sink, link=self.link)
        self.devices: list[Device] = []
        self._controllers: list[Controller] = [self.hub_controller]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._in_range = True
        self._range_task: asyncio.Task[Any] | None = None
        self._range_sleeping = False
        self._start_begun = False
        self._start_done = asyncio.Event()

    # -- lifetime ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._start_begun = True
        try:
            await self._start()
        finally:
            self._start_done.set()

    async def _start(self) -> None:
        for index, peripheral in enumerate(self.peripherals):
            if self._closed:
                return
            controller = Controller(f"{peripheral.name}-controller-{index}", link=self.link)
            self._controllers.append(controller)
            device = Device(
                name=peripheral.name,
                address=Address(peripheral.address, Address.RANDOM_DEVICE_ADDRESS),
                host=Host(controller, AsyncPipeSink(controller)),
            )
            device.gatt_server.max_mtu = self.fault_plan.mtu
            if self.fault_plan.response_delay_ms > 0:
                _delay_responses(device, self.fault_plan.response_delay_ms / 1000.0)
            peripheral.attach(device)
            device.on(device.EVENT_CONNECTION, lambda connection, p=peripheral, d=device: self._on_connection(p, d, connection))
            await device.power_on()
            self.devices.append(device)
        self._in_range = self.fault_plan.in_range(self.clock.now_min())
        if self._in_range and not self._closed:
            for device in self.devices:
                await self._advertise(device)
        if self.fault_plan.next_range_change_min(self.clock.now_min()) is not None:
            self._range_task = self._spawn(self._range_loop())

    async def close(self) -> None:
        """Drop every connection of this link (peripherals see a disconnection) and detach the devices."""
        if self._closed:
            return
        self._closed = True
        if self._start_begun:  # a hub that leaves at once: let the devices finish powering on, then drop them
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._start_done.wait(), timeout=5.0)
        # Cancel only what is sleeping: cancelling a task in the middle of an HCI command leaves bumble's host
        # with a cancelled pending response that the controller's answer then trips over.
        if self._range_task is not None and self._range_sleeping:
            self._range_task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        self.hub_controller.host = None  # the hub is gone: nothing may be written to its transport any more
        for peripheral, device in zip(self.peripherals, self.devices):
            await self._drop_connections(device, HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
            with contextlib.suppress(Exception):
                await device.stop_advertising()
            try:
                peripheral.detach(device)
            except Exception:
                logger.exception("detach of %s failed", peripheral.name)
        for controller in self._controllers:
            with contextlib.suppress(KeyError):
                self.link.remove_controller(controller)

    # -- link faults ------------------------------------------------------------------------------------------
    async def drop_links(self, reason: int = HCI_CONNECTION_TIMEOUT_ERROR) -> None:
        """Drop every connection now, as a link loss would; peripherals re-advertise if in range."""
        for device in self.devices:
            await self._drop_connections(device, reason)

    async def _range_loop(self) -> None:
        while not self._closed:
            change_min = self.fault_plan.next_range_change_min(self.clock.now_min())
            if change_min is None:
                return
            self._range_sleeping = True
            try:
                await self.clock.sleep_until_min(change_min)
            finally:
                self._range_sleeping = False
            if self._closed:
                return
            in_range = self.fault_plan.in_range(self.clock.now_min())
            if in_range == self._in_range:
                continue
            self._in_range = in_range
            logger.info("air: peripherals %s range at sim minute %.1f", "back in" if in_range else "out of", change_min)
            for device in self.devices:
                if in_range:
                    await self._advertise(device)
                else:
                    with contextlib.suppress(Exception):
                        await device.stop_advertising()
                    await self._drop_connections(device, HCI_CONNECTION_TIMEOUT_ERROR)

    @property
    def in_range(self) -> bool:
        return self._in_range

    # -- internals --------------------------------------------------------------------------------------------
    def _on_connection(self, peripheral: EmulatedPeripheral, device: Device, connection: Connection) -> None:
        try:
            peripheral.on_connected(device, connection)
        except Exception:
            logger.exception("on_connected of %s failed", peripheral.name)

        def on_disconnection(reason: int) -> None:
            try:
                peripheral.on_disconnected(device, connection, reason)
            except Exception:
                logger.exception("on_disconnected of %s failed", peripheral.name)
            if not self._closed and self._in_range:
                self._spawn(self._advertise(device))

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    async def _advertise(self, device: Device) -> None:
        if self._closed or device.connections:
            return
        try:
            await device.start_advertising(
                advertising_interval_min=ADVERTISING_INTERVAL_MS, advertising_interval_max=ADVERTISING_INTERVAL_MS
            )
        except Exception:
            logger.exception("advertising of %s failed", device.name)

    @staticmethod
    async def _drop_connections(device: Device, reason: int) -> None:
        for connection in list(device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(reason), timeout=2.0)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _delay_responses(device: Device, delay_s: float) -> None:
    """Make the GATT server answer every ATT request ``delay_s`` late (a slow peripheral)."""
    server = device.gatt_server
    send_response = server.send_response

    def delayed(bearer: Any, response: Any) -> None:
        asyncio.get_running_loop().call_later(delay_s, send_response, bearer, response)

    server.send_response = delayed  # type: ignore[method-assign]
