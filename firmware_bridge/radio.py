"""The one place that chooses the hub's BLE radio from configuration.

The hub talks plain bleak (``BleakScanner`` / ``BleakClient``) and splats the keyword arguments of a
:class:`Radio` into them, so the same code runs on a Raspberry Pi (BlueZ, the platform default), on a USB
dongle driven by Google's bumble host (``usb:0``), against the simulator over loopback TCP
(``tcp-client:127.0.0.1:PORT``) or against an in-process emulated link in tests::

    async with Radio.from_spec(spec) as radio:          # spec None -> platform default backend
        device = await BleakScanner.find_device_by_filter(match, **radio.scanner_kwargs())
        async with BleakClient(device, **radio.client_kwargs()) as client:
            ...

A bumble radio owns ONE bumble ``Device`` (host + HCI transport) for its whole ``async with`` lifetime; bumble
objects bind to the running event loop, so a Radio must be entered and left on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware_bridge.errors import BridgeError

if TYPE_CHECKING:  # bumble is imported lazily so a Pi running BlueZ never loads it
    from bumble.device import Advertisement, Device

logger = logging.getLogger(__name__)

#: Specs that mean "the platform's own bleak backend" (BlueZ on Linux).
DEFAULT_SPECS = frozenset({"", "default", "bluez", "platform"})
#: ATT MTU asked for after connecting (the largest LE data length payload); 23 means "no MTU exchange".
DEFAULT_REQUESTED_MTU = 247
ATT_DEFAULT_MTU = 23
#: Static random address of the hub's bumble device (top two bits set, as a static address requires).
HUB_ADDRESS = "F0:C7:0D:00:00:01"


class RadioError(BridgeError):
    """The radio cannot be opened, or is used outside its ``async with`` lifetime."""


class Radio:
    """A configured BLE radio: the platform default, or a bumble host over an HCI transport."""

    def __init__(
        self,
        spec: str | None,
        *,
        hci_source: Any = None,
        hci_sink: Any = None,
        requested_mtu: int = DEFAULT_REQUESTED_MTU,
        address: str = HUB_ADDRESS,
    ) -> None:
        if not ATT_DEFAULT_MTU <= requested_mtu <= 517:
            raise RadioError(f"requested_mtu must be within 23..517, got {requested_mtu}")
        self.spec = spec
        self.requested_mtu = requested_mtu
        self.address = address
        self._hci_source = hci_source
        self._hci_sink = hci_sink
        self._transport: Any = None
        self._device: Device | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scan_listeners: dict[object, Callable[[Advertisement], None]] = {}
        self._seen_addresses: dict[str, Any] = {}
        self._scan_lock = asyncio.Lock()
        self.connect_lock = asyncio.Lock()
        self._lost_listeners: dict[object, Callable[[], None]] = {}
        self._lost = False
        """Serialises LE connection attempts (a host has at most one pending LE connection)."""

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str | None, *, requested_mtu: int = DEFAULT_REQUESTED_MTU) -> Radio:
        """A radio from a configuration string.

        ``None`` / ``"default"`` / ``"bluez"``: the platform's bleak backend (no bumble involved).
        Anything else is a bumble HCI transport spec: ``tcp-client:127.0.0.1:9001``, ``usb:0``, ``serial:...``.
        """
        if spec is not None and spec.strip().lower() in DEFAULT_SPECS:
            spec = None
        return cls(spec.strip() if spec else None, requested_mtu=requested_mtu)

    @classmethod
    def from_transport(
        cls, hci_source: Any, hci_sink: Any, *, requested_mtu: int = DEFAULT_REQUESTED_MTU
    ) -> Radio:
        """A bumble radio over an already open HCI source/sink pair (e.g. a controller on a LocalLink)."""
        return cls("in-process", hci_source=hci_source, hci_sink=hci_sink, requested_mtu=requested_mtu)

    @property
    def is_default(self) -> bool:
        """True when the platform's own bleak backend is used."""
        return self.spec is None

    # -- lifetime ---------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Radio:
        if self.is_default:
            return self
        if self._device is not None:
            raise RadioError("radio already open")
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.transport import open_transport

        self._loop = asyncio.get_running_loop()
        self._lost = False
        if self._hci_source is None:
            try:
                self._transport = await open_transport(self.spec)
            except Exception as error:  # bumble raises many types (OSError, TransportInitError, ...)
                raise RadioError(f"cannot open HCI transport {self.spec!r}: {error}") from error
            source, sink = self._transport.source, self._transport.sink
            _set_tcp_nodelay(sink)
            terminated = getattr(source, "terminated", None)
            if isinstance(terminated, asyncio.Future):
                terminated.add_done_callback(lambda _: self._on_transport_lost())
        else:
            source, sink = self._hci_source, self._hci_sink
        device = Device.with_hci("glucotwin-hub", Address(self.address), source, sink)
        device.on(device.EVENT_ADVERTISEMENT, self._dispatch_advertisement)
        try:
            await asyncio.wait_for(device.power_on(), timeout=10.0)
        except Exception as error:
            await self._close_transport()
            raise RadioError(f"bumble host did not power on over {self.spec!r}: {error}") from error
        self._device = device
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.is_default or self._device is None:
            return
        device, self._device = self._device, None
        self._scan_listeners.clear()
        self._lost_listeners.clear()
        for connection in list(device.connections.values()) if not self._lost else []:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), timeout=2.0)
        with contextlib.suppress(Exception):
            if device.is_scanning and not self._lost:
                await asyncio.wait_for(device.stop_scanning(), timeout=2.0)
        await self._close_transport()

    async def _close_transport(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            with contextlib.suppress(Exception):
                await transport.close()

    # -- what the hub splats into bleak -----------------------------------------------------------------------
    def scanner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BleakScanner(...)`` / ``BleakScanner.find_device_by_filter(...)``."""
        if self.is_default:
            return {}
        from firmware_bridge.backends.bumble_scanner import BumbleScannerBackend

        return {"backend": BumbleScannerBackend, "radio": self}

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BleakClient(...)``."""
        if self.is_default:
            return {}
        from firmware_bridge.backends.bumble_client import BumbleClientBackend

        return {"backend": BumbleClientBackend, "radio": self}

    # -- used by the backends ---------------------------------------------------------------------------------
    @property
    def device(self) -> Device:
        """The bumble device (host) of this radio; only inside ``async with``."""
        if self._device is None:
            raise RadioError("radio is not open: use `async with radio:`")
        if self._lost:
            raise RadioError(f"the HCI transport {self.spec!r} is lost: open a new Radio")
        if self._loop is not asyncio.get_running_loop():
            raise RadioError("radio used from another event loop than the one that opened it")
        return self._device

    async def add_scan_listener(self, token: object, listener: Callable[[Advertisement], None]) -> None:
        """Start delivering advertisements to ``listener``; scanning runs while any listener is registered."""
        async with self._scan_lock:
            device = self.device
            self._scan_listeners[token] = listener
            if not device.is_scanning:
                await device.start_scanning(active=True, filter_duplicates=False)

    async def remove_scan_listener(self, token: object) -> None:
        async with self._scan_lock:
            self._scan_listeners.pop(token, None)
            device = self._device
            if not self._scan_listeners and device is not None and device.is_scanning and not self._lost:
                await asyncio.wait_for(device.stop_scanning(), timeout=2.0)

    @property
    def is_alive(self) -> bool:
        """False once the HCI transport is gone (simulator stopped, dongle unplugged): open a new Radio."""
        return self._device is not None and not self._lost

    def add_lost_listener(self, token: object, listener: Callable[[], None]) -> None:
        """Call ``listener`` if the HCI transport is lost (the backends turn it into a disconnection)."""
        self._lost_listeners[token] = listener

    def remove_lost_listener(self, token: object) -> None:
        self._lost_listeners.pop(token, None)

    def _on_transport_lost(self) -> None:
        if self._lost or self._device is None:
            return
        self._lost = True
        logger.warning("radio %s: HCI transport lost", self.spec)
        for listener in list(self._lost_listeners.values()):
            try:
                listener()
            except Exception:
                logger.exception("transport-lost listener failed")

    def known_address(self, address: str) -> Any:
        """The bumble ``Address`` (with its public/random type) last seen advertising as ``address``."""
        return self._seen_addresses.get(address.upper())

    def _dispatch_advertisement(self, advertisement: Advertisement) -> None:
        self._seen_addresses[advertisement.address.to_string(with_type_qualifier=False).upper()] = advertisement.address
        for listener in list(self._scan_listeners.values()):
            try:
                listener(advertisement)
            except Exception:  # one faulty listener must not starve the others
                logger.exception("scan listener failed")

    def __repr__(self) -> str:
        return f"Radio({self.spec or 'platform default'!s}, requested_mtu={self.requested_mtu})"


def _set_tcp_nodelay(sink: Any) -> None:
    """Disable Nagle on a TCP HCI transport: every ATT round trip would otherwise wait ~40 ms for an ACK."""
    import socket

    transport = getattr(sink, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
