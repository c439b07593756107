"""``BaseBleakClient`` over a bumble host (see :mod:`firmware_bridge.radio`).

Semantics follow bleak's own backends: ``connect`` also exchanges the MTU (unless the radio asks for 23) and
discovers every service, characteristic and descriptor; ``start_notify`` prefers notifications and falls back
to indications (control points indicate); ATT error responses raise ``BleakGATTProtocolError`` with the code
(0xFE procedure already in progress, 0x80/0x81 CRC errors, ...); the disconnected callback fires only on a
disconnection the hub did not ask for (link drop, peripheral out of range).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuid_module
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError

if TYPE_CHECKING:
    from bumble.device import Connection
    from bumble.gatt_client import CharacteristicProxy

    from firmware_bridge.radio import Radio

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def bleak_uuid(bumble_uuid: Any) -> str:
    """bumble ``UUID`` -> bleak's normalised lower-case 128-bit string."""
    return str(uuid_module.UUID(bytes=bytes(reversed(bumble_uuid.to_bytes(force_128=True)))))


def _property_names(properties: int) -> list[CharacteristicPropertyName]:
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if properties & bit]


class BumbleClientBackend(BaseBleakClient):
    """One LE connection from the radio's bumble device to a peripheral."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        radio: Radio,
        services: set[str] | None = None,
        **kwargs: Any,  # bluez=, winrt= and other backends' arguments are accepted and ignored
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._radio = radio
        self._ble_device = address_or_ble_device if isinstance(address_or_ble_device, BLEDevice) else None
        self._services_filter = services
        self._connection: Connection | None = None
        self._disconnecting = False
        self._disconnected = asyncio.Event()
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        if self._ble_device is not None and self._ble_device.name:
            return self._ble_device.name
        return self.address

    @property
    def mtu_size(self) -> int:
        if self._connection is None:
            return 23
        return int(self._connection.gatt_client.mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._disconnected.is_set()

    # -- connection -------------------------------------------------------------------------------------------
    def _peer_address(self) -> Any:
        from bumble.hci import Address

        if self._ble_device is not None and isinstance(self._ble_device.details, Address):
            return self._ble_device.details
        known = self._radio.known_address(self.address)
        if known is not None:
            return known
        try:
            return Address(self.address, Address.RANDOM_DEVICE_ADDRESS)
        except Exception as error:
            raise BleakError(f"invalid Bluetooth address {self.address!r}") from error

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        from bumble.core import PhysicalTransport

        if pair:
            logger.info("bumble backend: pairing is not supported, connecting without it")
        if self.is_connected:
            return
        timeout = float(kwargs.get("timeout", self._timeout))
        device = self._radio.device
        peer = self._peer_address()
        self._disconnected = asyncio.Event()
        self._disconnecting = False
        async with self._radio.connect_lock:
            try:
                # the outer bound is a safety net for controllers that never answer a connection cancel
                connection = await asyncio.wait_for(
                    device.connect(peer, transport=PhysicalTransport.LE, timeout=timeout), timeout + 2.0
                )
            except Exception as error:
                if _is_timeout(error):
                    raise TimeoutError(f"connection to {self.address} timed out after {timeout:g} s") from error
                raise BleakError(f"connection to {self.address} failed: {error}") from error
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._radio.add_lost_listener(self, self._on_radio_lost)
        try:
            if self._radio.requested_mtu > 23:
                await self._gatt(connection.gatt_client.request_mtu(self._radio.requested_mtu))
            self.services = await self._discover(connection)
        except BaseException:
            await self.disconnect()
            raise

    def _on_radio_lost(self) -> None:
        """The HCI transport is gone: no disconnection event will ever come, so make one up (and fail the
        pending request, as bumble does on a disconnection)."""
        if self._connection is None or self._disconnected.is_set():
            return
        with contextlib.suppress(Exception):
            self._connection.gatt_client.on_disconnection()
        self._on_disconnection(0x08)  # connection timeout: what a supervision timeout would report

    def _on_disconnection(self, reason: int) -> None:
        self._radio.remove_lost_listener(self)
        solicited = self._disconnecting
        self._disconnected.set()
        self._subscribers.clear()
        logger.debug("bumble backend: %s disconnected (reason 0x%02X, solicited=%s)", self.address, reason, solicited)
        if not solicited and self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None or self._disconnected.is_set():
            return
        self._disconnecting = True
        if not self._radio.is_alive:
            self._on_disconnection(0x16)  # nothing to send a disconnect over: just forget the connection
            return
        with contextlib.suppress(Exception):
            await connection.disconnect()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._disconnected.wait(), timeout=2.0)
        self._disconnected.set()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not supported by the bumble backend")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not supported by the bumble backend")

    # -- discovery --------------------------------------------------------------------------------------------
    async def _discover(self, connection: Connection) -> BleakGATTServiceCollection:
        client = connection.gatt_client
        collection = BleakGATTServiceCollection()
        for service in await self._gatt(client.discover_services()):
            service_uuid = bleak_uuid(service.uuid)
            if self._services_filter and service_uuid not in self._services_filter:
                continue
            bleak_service = BleakGATTService(service, service.handle, service_uuid)
            collection.add_service(bleak_service)
            for characteristic in await self._gatt(client.discover_characteristics((), service)):
                bleak_characteristic = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    bleak_uuid(characteristic.uuid),
                    _property_names(int(characteristic.properties)),
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_characteristic)
                for descriptor in await self._gatt(client.discover_descriptors(characteristic)):
                    collection.add_descriptor(
                        BleakGATTDescriptor(descriptor, descriptor.handle, bleak_uuid(descriptor.type), bleak_characteristic)
                    )
        return collection

    # -- I/O --------------------------------------------------------------------------------------------------
    def _require_connection(self) -> Connection:
        if not self.is_connected or self._connection is None:
            raise BleakError("Not connected")
        return self._connection

    async def _gatt(self, operation: Awaitable[_T]) -> _T:
        """Run a bumble GATT operation, translating its errors into bleak's."""
        from bumble.att import ATT_Error

        try:
            return await operation
        except ATT_Error as error:
            raise BleakGATTProtocolError(int(error.error_code)) from error
        except asyncio.CancelledError:
            if self._disconnected.is_set():  # bumble cancels the pending request when the link drops
                raise BleakError(f"{self.address} disconnected during a GATT operation") from None
            raise
        except Exception as error:
            if _is_timeout(error):
                raise TimeoutError(f"GATT operation on {self.address} timed out") from error
            if self._disconnected.is_set():
                raise BleakError(f"{self.address} disconnected during a GATT operation: {error}") from error
            raise

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return await self._read(characteristic.handle, use_cached)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return await self._read(descriptor.handle, use_cached)

    async def _read(self, handle: int, use_cached: bool) -> bytearray:
        client = self._require_connection().gatt_client
        if use_cached and handle in client.cached_values:
            return bytearray(client.cached_values[handle][1])
        return bytearray(await self._gatt(client.read_value(handle)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool) -> None:
        client = self._require_connection().gatt_client
        await self._gatt(client.write_value(characteristic.handle, bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        client = self._require_connection().gatt_client
        await self._gatt(client.write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any) -> None:
        """Enable notifications, or indications when the characteristic only indicates."""
        self._require_connection()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"characteristic {characteristic.uuid} can neither notify nor indicate")

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        if characteristic.handle in self._subscribers:
            await self.stop_notify(characteristic)
        self._subscribers[characteristic.handle] = subscriber
        await self._gatt(proxy.subscribe(subscriber, prefer_notify=True))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require_connection()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await self._gatt(proxy.unsubscribe(subscriber, force=subscriber is None))


def _is_timeout(error: BaseException) -> bool:
    from bumble import core

    return isinstance(error, (TimeoutError, asyncio.TimeoutError, core.TimeoutError))
