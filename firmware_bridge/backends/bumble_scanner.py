"""``BaseBleakScanner`` over a bumble host (see :mod:`firmware_bridge.radio`)."""

from __future__ import annotations

import struct
import uuid
from typing import TYPE_CHECKING, Any, Literal, Optional

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.uuids import normalize_uuid_16, normalize_uuid_32

if TYPE_CHECKING:
    from bumble.device import Advertisement

    from firmware_bridge.radio import Radio

# AD types (Bluetooth Core Supplement, Part A, 1.1 - 1.11)
_UUID16_LISTS = (0x02, 0x03)
_UUID32_LISTS = (0x04, 0x05)
_UUID128_LISTS = (0x06, 0x07)
_SHORT_NAME, _COMPLETE_NAME = 0x08, 0x09
_TX_POWER = 0x0A
_SERVICE_DATA_16, _SERVICE_DATA_32, _SERVICE_DATA_128 = 0x16, 0x20, 0x21
_MANUFACTURER = 0xFF


def _uuid128_from_le(octets: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(reversed(octets))))


def advertisement_data_from_bytes(data: bytes, rssi: int, platform_data: tuple[Any, ...] = ()) -> AdvertisementData:
    """Parse raw advertising (+ scan response) AD structures into bleak's ``AdvertisementData``.

    Malformed trailing structures are ignored, as radios do: an advertisement is untrusted input.
    """
    local_name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    service_uuids: list[str] = []
    tx_power: int | None = None
    offset = 0
    while offset < len(data):
        length = data[offset]
        if length == 0 or offset + 1 + length > len(data):
            break
        ad_type, value = data[offset + 1], bytes(data[offset + 2 : offset + 1 + length])
        offset += 1 + length
        if ad_type in _UUID16_LISTS:
            service_uuids += [normalize_uuid_16(u) for (u,) in struct.iter_unpack("<H", value[: len(value) // 2 * 2])]
        elif ad_type in _UUID32_LISTS:
            service_uuids += [normalize_uuid_32(u) for (u,) in struct.iter_unpack("<I", value[: len(value) // 4 * 4])]
        elif ad_type in _UUID128_LISTS:
            service_uuids += [_uuid128_from_le(value[i : i + 16]) for i in range(0, len(value) // 16 * 16, 16)]
        elif ad_type in (_SHORT_NAME, _COMPLETE_NAME):
            if ad_type == _COMPLETE_NAME or local_name is None:
                local_name = value.decode("utf-8", errors="replace")
        elif ad_type == _TX_POWER and value:
            tx_power = struct.unpack("<b", value[:1])[0]
        elif ad_type == _SERVICE_DATA_16 and len(value) >= 2:
            service_data[normalize_uuid_16(struct.unpack_from("<H", value)[0])] = value[2:]
        elif ad_type == _SERVICE_DATA_32 and len(value) >= 4:
            service_data[normalize_uuid_32(struct.unpack_from("<I", value)[0])] = value[4:]
        elif ad_type == _SERVICE_DATA_128 and len(value) >= 16:
            service_data[_uuid128_from_le(value[:16])] = value[16:]
        elif ad_type == _MANUFACTURER and len(value) >= 2:
            manufacturer[struct.unpack_from("<H", value)[0]] = value[2:]
    return AdvertisementData(
        local_name=local_name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=list(dict.fromkeys(service_uuids)),
        tx_power=tx_power,
        rssi=rssi,
        platform_data=platform_data,
    )


class BumbleScannerBackend(BaseBleakScanner):
    """Scans with the radio's bumble device; several scanners may share one radio."""

    def __init__(
        self,
        detection_callback: Optional[AdvertisementDataCallback],
        service_uuids: Optional[list[str]],
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        radio: Radio,
        **kwargs: Any,  # bluez=, cb= and other backends' arguments are accepted and ignored
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = radio
        self._scanning_mode = scanning_mode
        self._token = object()

    async def start(self) -> None:
        self.seen_devices = {}
        await self._radio.add_scan_listener(self._token, self._on_advertisement)

    async def stop(self) -> None:
        await self._radio.remove_scan_listener(self._token)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        address = advertisement.address.to_string(with_type_qualifier=False)
        # advertisement.data merges a scan response with its advertisement; data_bytes would not
        raw = b"".join(bytes((len(value) + 1, int(ad_type))) + bytes(value) for ad_type, value in advertisement.data.ad_structures)
        data = advertisement_data_from_bytes(raw, int(advertisement.rssi), (advertisement,))
        if not self.is_allowed_uuid(data.service_uuids):
            return
        device = self.create_or_update_device(address, address, data.local_name, advertisement.address, data)
        self.call_detection_callbacks(device, data)
