"""The simulated air: emulated peripherals served to hubs in process or over loopback TCP."""

from hardware_sim.air.inprocess import InProcessAir
from hardware_sim.air.peripheral import EmulatedPeripheral, advertising_data, static_address_for
from hardware_sim.air.server import AirServer, serve
from hardware_sim.air.session import LinkSession

__all__ = [
    "AirServer",
    "EmulatedPeripheral",
    "InProcessAir",
    "LinkSession",
    "advertising_data",
    "serve",
    "static_address_for",
]
