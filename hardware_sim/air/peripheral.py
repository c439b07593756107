"""The contract between the simulated air and a device emulation (CGM sensor, insulin pump, ...).

A device MODEL (stored records, session state, reservoir...) lives outside bumble and survives hub
reconnects and hub restarts. The air creates a fresh bumble ``Device`` for the model each time a hub
attaches a link (one per TCP client, or one in process) and calls :meth:`EmulatedPeripheral.attach` on it;
several devices may be attached to one model at the same time (two hubs). The model keeps, per attached
device, the GATT characteristics it created, to notify/indicate through ``device.notify_subscribers(...)``
or ``device.indicate_subscriber(connection, ...)``.

The air owns advertising and the link: it starts advertising ``device.advertising_data`` after ``attach``,
re-advertises after each disconnection while in range, and applies the link faults of the FaultPlan.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bumble.device import Connection, Device

MAX_LEGACY_ADVERTISING_OCTETS = 31


@runtime_checkable
class EmulatedPeripheral(Protocol):
    """What a device emulation implements to be served on the air."""

    name: str
    """Local name advertised (and GAP device name)."""
    address: str
    """Static random Bluetooth address, stable across hub links ("C4:..." style: top two bits set)."""

    def attach(self, device: Device) -> None:
        """Add this peripheral's GATT services to ``device`` and set ``device.advertising_data``
        (use :func:`advertising_data`). Called once per fresh bumble device, before advertising starts."""
        ...

    def on_connected(self, device: Device, connection: Connection) -> None:
        """A hub connected to ``device`` (reset per-connection state such as E2E counters here)."""
        ...

    def on_disconnected(self, device: Device, connection: Connection, reason: int) -> None:
        """The link to a hub dropped or was closed (clear busy control points here)."""
        ...

    def detach(self, device: Device) -> None:
        """``device`` is being destroyed (its hub went away): forget its characteristics."""
        ...


def advertising_data(name: str, service_uuids: list[str | int], *, flags: int = 0x06) -> bytes:
    """Legacy advertising payload: Flags, complete list of 16-bit (or 128-bit) service UUIDs, local name.

    The name is shortened (AD type 0x08) if the 31-octet budget requires it.
    """
    uuids16: list[int] = []
    uuids128: list[bytes] = []
    for service in service_uuids:
        if isinstance(service, int):
            uuids16.append(service)
            continue
        full = uuid.UUID(service if len(service) > 8 else f"0000{int(service, 16):04x}-0000-1000-8000-00805f9b34fb")
        if str(full).endswith("-0000-1000-8000-00805f9b34fb") and full.int >> 112 == 0:
            uuids16.append((full.int >> 96) & 0xFFFF)
        else:
            uuids128.append(bytes(reversed(full.bytes)))
    payload = bytes((2, 0x01, flags))
    if uuids16:
        body = b"".join(struct.pack("<H", u) for u in uuids16)
        payload += bytes((len(body) + 1, 0x03)) + body
    for u128 in uuids128:
        payload += bytes((17, 0x07)) + u128
    encoded = name.encode("utf-8")
    room = MAX_LEGACY_ADVERTISING_OCTETS - len(payload) - 2
    if room < 1:
        raise ValueError(f"advertising data for {name!r} does not fit in 31 octets")
    ad_type = 0x09 if len(encoded) <= room else 0x08
    encoded = encoded[:room]
    return payload + bytes((len(encoded) + 1, ad_type)) + encoded


def static_address_for(name: str) -> str:
    """A stable static random address derived from a device name (two top bits set, as required)."""
    digest = zlib.crc32(name.encode("utf-8")).to_bytes(4, "big") + zlib.adler32(name.encode("utf-8")).to_bytes(4, "big")
    octets = bytearray(digest[:6])
    octets[0] |= 0xC0
    return ":".join(f"{octet:02X}" for octet in octets)
