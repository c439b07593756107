"""The air in the test's own event loop: no TCP, the hub's Radio talks straight to a virtual controller.

    async with InProcessAir([sensor]) as air, air.radio() as radio:
        device = await BleakScanner.find_device_by_filter(..., **radio.scanner_kwargs())
"""

from __future__ import annotations

from collections.abc import Sequence

from bumble.transport.common import AsyncPipeSink

from firmware_bridge.radio import DEFAULT_REQUESTED_MTU, Radio
from hardware_sim.air.peripheral import EmulatedPeripheral
from hardware_sim.air.session import LinkSession
from hardware_sim.clock import SimClock
from hardware_sim.faults import FaultPlan


class InProcessAir:
    """One hub link with its peripherals, on the running event loop."""

    def __init__(
        self,
        peripherals: Sequence[EmulatedPeripheral],
        clock: SimClock | None = None,
        fault_plan: FaultPlan | None = None,
    ) -> None:
        self.peripherals = list(peripherals)
        self.clock = clock or SimClock(manual=True)
        self.fault_plan = fault_plan or FaultPlan()
        self.session: LinkSession | None = None

    async def __aenter__(self) -> InProcessAir:
        self.session = LinkSession(self.peripherals, self.clock, self.fault_plan, name="inprocess-hub")
        await self.session.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _session(self) -> LinkSession:
        if self.session is None:
            raise RuntimeError("InProcessAir is not running: use `async with InProcessAir(...)`")
        return self.session

    def hci_transport(self) -> tuple[object, object]:
        """(hci_source, hci_sink) for ``Radio.from_transport``: the hub's virtual controller."""
        controller = self._session().hub_controller
        return controller, AsyncPipeSink(controller)

    def radio(self, requested_mtu: int = DEFAULT_REQUESTED_MTU) -> Radio:
        """A hub Radio on this link (enter it with ``async with``)."""
        source, sink = self.hci_transport()
        return Radio.from_transport(source, sink, requested_mtu=requested_mtu)

    async def drop_links(self) -> None:
        """Drop every connection now (supervision timeout); peripherals re-advertise while in range."""
        await self._session().drop_links()
