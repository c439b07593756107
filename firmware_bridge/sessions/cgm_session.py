"""Hub-side CGM session over the plain bleak API: every reading exactly once, in order, across link drops.

Works with any standard CGMS (0x181F) peripheral; the radio decides the backend (BlueZ on a Pi, bumble
against the simulator)::

    async with Radio.from_spec(spec) as radio:
        session = CgmSession(radio)
        async for reading in session.readings():
            ...

What one connection does (and every reconnection repeats):

1. scan for a device advertising 0x181F (the same address once one was found), connect;
2. read CGM Feature: E2E-CRC on or off decides how every measurement is decoded;
3. read Session Start Time: a changed value means a new sensor session, whose time offsets restart;
4. subscribe to CGM Measurement (notify) and the RACP (indicate);
5. synchronise with RACP: anchor on the sensor's first stored record when nothing was delivered yet (checked
   with "number of records <= it" == 1, since a live reading may share the window), then
   "report records >= last delivered time offset"; if readings are still held behind a gap, ask the number of
   stored records in [last, newest held] and let :class:`~firmware_bridge.sessions.tracking.ReadingTracker`
   release them when nothing is missing (the sensor may simply not have taken a reading);
6. follow live notifications; whenever the tracker sees a gap, go back to 5.

A notification that does not decode (bad CRC, truncated, reserved values) is logged and dropped (its good
leading records are kept); the reading it carried comes back with the next backfill. The connection loop
reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from firmware_bridge.codec.cgms import (
    AnnunciationOrder,
    CgmMeasurement,
    SensorStatusAnnunciation,
    SessionStartTime,
    decode_cgm_feature,
    decode_cgm_measurement,
    decode_session_start_time,
)
from firmware_bridge.codec.racp import (
    RacpNumberOfRecords,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    decode_racp_response,
    encode_racp,
)
from firmware_bridge.codec.uuids import (
    CGM_FEATURE,
    CGM_MEASUREMENT,
    CGM_SERVICE,
    CGM_SESSION_START_TIME,
    RECORD_ACCESS_CONTROL_POINT,
)
from firmware_bridge.errors import BridgeError, DecodeError, LengthError
from firmware_bridge.radio import Radio
from firmware_bridge.sessions.tracking import Reading, ReadingTracker

logger = logging.getLogger(__name__)

ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
_MEASUREMENT_MIN_RECORD_OCTETS = 6


class CgmSessionError(BridgeError):
    """The peripheral does not behave as a CGM sensor (no CGMS, RACP refusing every request...)."""


@dataclass
class CgmSessionStats:
    connects: int = 0
    connect_failures: int = 0
    notifications: int = 0
    decode_errors: int = 0
    records_received: int = 0
    racp_requests: int = 0
    backfills: int = 0
    delivered: int = 0
    last_connect_s: float | None = None
    """Wall time of the last scan + connect + MTU exchange + discovery."""
    notification_cpu_s: float = 0.0
    """Hub CPU time (``time.process_time``) spent handling measurement notifications."""
    sessions_seen: int = 0
    last_error: str | None = None
    """The last reason a connection attempt failed or a link was lost."""


@dataclass
class CgmSessionConfig:
    interval_min: int = 5
    scan_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    racp_timeout_s: float = 10.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 30.0
    max_sync_rounds: int = 20
    annunciation_order: AnnunciationOrder = AnnunciationOrder.SPEC
    address: str | None = None
    """Connect only to this address (else the first device advertising 0x181F, then stick to it)."""
    gap_check_s: float = 1.0


@functools.lru_cache(maxsize=256)
def annunciation_names(raw: int) -> frozenset[str]:
    """Names of the Sensor Status Annunciation bits set in ``raw`` (cached: few distinct values occur)."""
    return frozenset(flag.name or "" for flag in SensorStatusAnnunciation if raw & int(flag))


def reading_from_measurement(measurement: CgmMeasurement, via: str, session_start_iso: str | None = None) -> Reading:
    names = annunciation_names(int(measurement.annunciation))
    return Reading(
        time_offset_min=measurement.time_offset_min,
        glucose_mg_dl=measurement.glucose_mg_dl,
        trend_mg_dl_min=measurement.trend_mg_dl_min,
        quality_pct=measurement.quality_percent,
        annunciations=names,
        via=via,
        session_start_iso=session_start_iso,
    )


def decode_notification(
    data: bytes, *, e2e_crc: bool, annunciation_order: AnnunciationOrder
) -> tuple[list[CgmMeasurement], DecodeError | None]:
    """Decode the records of one notification, keeping the good ones before the first bad one."""
    records: list[CgmMeasurement] = []
    offset = 0
    data = bytes(data)
    if not data:
        return records, LengthError("CGM Measurement (0x2AA7)", "empty notification", data)
    while offset < len(data):
        size = data[offset]
        if size < _MEASUREMENT_MIN_RECORD_OCTETS or offset + size > len(data):
            return records, LengthError(
                "CGM Measurement (0x2AA7)", f"record at offset {offset} has Size {size}, {len(data) - offset} left", data
            )
        try:
            records.append(
                decode_cgm_measurement(data[offset : offset + size], e2e_crc=e2e_crc, annunciation_order=annunciation_order)
            )
        except DecodeError as error:
            return records, error
        offset += size
    return records, None


class _Procedure:
    """One outstanding RACP request: its response future and what arrived while it ran."""

    def __init__(self) -> None:
        self.response: asyncio.Future[RacpResponse | RacpNumberOfRecords] = asyncio.get_running_loop().create_future()
        self.errors = 0
        self.offsets: list[int] = []


class CgmSession:
    """Follow one CGM sensor forever (or until the consumer stops iterating)."""

    def __init__(self, radio: Radio, config: CgmSessionConfig | None = None) -> None:
        self.radio = radio
        self.config = config or CgmSessionConfig()
        self.tracker: ReadingTracker[Reading] = ReadingTracker(interval_min=self.config.interval_min)
        self.stats = CgmSessionStats()
        self.address: str | None = self.config.address
        self.e2e_crc: bool | None = None
        self.session_start_time: SessionStartTime | None = None
        self._procedure: _Procedure | None = None
        self._gap = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._on_reading: Callable[[Reading], None] | None = None
        self._in_backfill = False
        self._session_check = asyncio.Event()
        self.session_start_iso: str | None = None

    # -- public API -------------------------------------------------------------------------------------------
    async def readings(self) -> AsyncIterator[Reading]:
        """Readings, each exactly once, in increasing time offset; runs the connection loop meanwhile."""
        queue: asyncio.Queue[Reading] = asyncio.Queue()
        runner = asyncio.get_running_loop().create_task(self.run(queue.put_nowait))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                runner.result()  # re-raise what stopped the loop
                return
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner

    async def run(self, on_reading: Callable[[Reading], None]) -> None:
        """Connect, synchronise, follow; reconnect with exponential backoff; never returns on its own."""
        self._on_reading = on_reading
        backoff_s = self.config.backoff_initial_s
        while True:
            try:
                synced = await self._one_connection()
            except asyncio.CancelledError:
                raise
            except (BleakError, BridgeError, TimeoutError, OSError, EOFError) as error:
                self.stats.connect_failures += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                logger.info("CGM link lost or not established (%s: %s); retrying in %.2f s", type(error).__name__, error, backoff_s)
                synced = False
            except Exception as error:  # a radio stack raises more types than these; the hub must keep following
                self.stats.connect_failures += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                logger.warning("unexpected error on the CGM link; retrying in %.2f s", backoff_s, exc_info=True)
                synced = False
            if synced:
                backoff_s = self.config.backoff_initial_s
            else:
                await asyncio.sleep(backoff_s)
                backoff_s = min(self.config.backoff_max_s, backoff_s * 2)

    # -- one connection ---------------------------------------------------------------------------------------
    async def _find(self) -> BLEDevice:
        wanted = self.address.upper() if self.address else None

        def match(device: BLEDevice, advertisement: AdvertisementData) -> bool:
            if wanted is not None:
                return device.address.upper() == wanted
            return CGM_SERVICE in [uuid.lower() for uuid in advertisement.service_uuids]

        device = await BleakScanner.find_device_by_filter(
            match, timeout=self.config.scan_timeout_s, **self.radio.scanner_kwargs()
        )
        if device is None:
            raise CgmSessionError("no CGM sensor (service 0x181F) found" + (f" at {self.address}" if self.address else ""))
        return device

    async def _one_connection(self) -> bool:
        """Returns True once the connection synchronised (even if it dropped later)."""
        started = time.perf_counter()
        device = await self._find()
        self._disconnected.clear()
        synced = False
        client = BleakClient(
            device,
            disconnected_callback=lambda _client: self._disconnected.set(),
            timeout=self.config.connect_timeout_s,
            **self.radio.client_kwargs(),
        )
        async with client:
            self.stats.connects += 1
            self.stats.last_connect_s = time.perf_counter() - started
            self.address = device.address
            feature = decode_cgm_feature(await client.read_gatt_char(CGM_FEATURE))
            self.e2e_crc = feature.e2e_crc_supported
            await self._check_session(client)
            await client.start_notify(CGM_MEASUREMENT, self._on_measurement)
            await client.start_notify(RECORD_ACCESS_CONTROL_POINT, self._on_racp)
            logger.info("CGM %s connected (E2E-CRC %s, MTU %d)", device.address, "on" if self.e2e_crc else "off", client.mtu_size)
            await self._synchronise(client)
            synced = True
            while client.is_connected and not self._disconnected.is_set():
                waits = {asyncio.ensure_future(event.wait()) for event in (self._gap, self._disconnected, self._session_check)}
                try:
                    await asyncio.wait(waits, timeout=self.config.gap_check_s, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
                if self._disconnected.is_set():
                    break
                if self._session_check.is_set():
                    self._session_check.clear()
                    await self._check_session(client)
                if self._gap.is_set() or self.tracker.needs_backfill:
                    await self._synchronise(client)
        self._procedure = None
        return synced

    async def _check_session(self, client: BleakClient) -> None:
        try:
            raw = await client.read_gatt_char(CGM_SESSION_START_TIME)
            start = decode_session_start_time(raw, e2e_crc=bool(self.e2e_crc))
        except (BleakError, DecodeError) as error:  # optional for the hub: offsets still order readings
            logger.info("CGM Session Start Time unavailable (%s)", error)
            return
        if self.session_start_time is not None and start != self.session_start_time:
            logger.info("CGM session restarted (%s -> %s): time offsets start over", self.session_start_time, start)
            self.tracker = ReadingTracker(interval_min=self.config.interval_min)
            self._gap.set()
        if start != self.session_start_time:
            self.stats.sessions_seen += 1
        self.session_start_time = start
        try:
            self.session_start_iso = start.to_datetime().isoformat()
        except DecodeError:  # zone or date unknown: offsets are still ordered, absolute time is not known
            self.session_start_iso = None

    # -- synchronisation --------------------------------------------------------------------------------------
    async def _synchronise(self, client: BleakClient) -> None:
        """Backfill until nothing is held behind a gap (bounded; the follow loop retries later)."""
        self.stats.backfills += 1
        self._in_backfill = True
        try:
            for _ in range(self.config.max_sync_rounds):
                self._gap.clear()
                if not self.tracker.needs_backfill:
                    return
                last = self.tracker.last_delivered_offset
                if last is None:
                    procedure, response = await self._racp(client, RacpRequest.report_first())
                    if _code(response) is RacpResponseCode.NO_RECORDS_FOUND:
                        self._emit(self.tracker.backfill_complete())
                        return
                    if _code(response) is RacpResponseCode.SUCCESS and not procedure.errors and procedure.offsets:
                        # A live reading may have arrived in the same window: the candidate is the oldest seen,
                        # and it is the first stored record only if the sensor holds exactly one record <= it.
                        candidate = min(procedure.offsets)
                        _, count = await self._racp(client, RacpRequest.report_number(RacpOperator.LESS_THAN_OR_EQUAL_TO, None, candidate))
                        first = self.tracker.held(candidate)
                        if isinstance(count, RacpNumberOfRecords) and count.number_of_records == 1 and first is not None:
                            self._emit(self.tracker.anchor(first))
                    continue
                procedure, response = await self._racp(client, RacpRequest.report_at_or_after(last))
                if self.tracker.held_offsets:
                    last = self.tracker.last_delivered_offset
                    assert last is not None
                    high = self.tracker.held_offsets[-1]
                    request = RacpRequest.report_number(RacpOperator.WITHIN_RANGE_OF, last, high)
                    _, count = await self._racp(client, request)
                    if isinstance(count, RacpNumberOfRecords):
                        self._emit(self.tracker.confirm_range(last, high, count.number_of_records))
        finally:
            self._in_backfill = False

    async def _racp(
        self, client: BleakClient, request: RacpRequest
    ) -> tuple[_Procedure, RacpResponse | RacpNumberOfRecords]:
        procedure = _Procedure()
        self._procedure = procedure
        self.stats.racp_requests += 1
        try:
            try:
                await client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(request), response=True)
            except BleakError as error:
                if error.args[:1] == (ATT_PROCEDURE_ALREADY_IN_PROGRESS,):
                    # A procedure of a previous connection or request is still running: abort it and retry.
                    await client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(RacpRequest.abort()), response=True)
                    await asyncio.sleep(0.05)
                    await client.write_gatt_char(RECORD_ACCESS_CONTROL_POINT, encode_racp(request), response=True)
                else:
                    raise
            response = await asyncio.wait_for(procedure.response, self.config.racp_timeout_s)
        finally:
            if self._procedure is procedure:
                self._procedure = None
        if isinstance(response, RacpResponse) and response.response_code not in (
            RacpResponseCode.SUCCESS,
            RacpResponseCode.NO_RECORDS_FOUND,
        ):
            logger.warning("RACP %s answered %s", request, response.response_code.name)
        return procedure, response

    # -- notification handlers (bleak callbacks, synchronous) -------------------------------------------------
    def _on_measurement(self, _characteristic: object, data: bytearray) -> None:
        started = time.process_time()
        self.stats.notifications += 1
        records, error = decode_notification(
            bytes(data), e2e_crc=bool(self.e2e_crc), annunciation_order=self.config.annunciation_order
        )
        procedure = self._procedure
        if error is not None:
            self.stats.decode_errors += 1
            if procedure is not None:
                procedure.errors += 1
            logger.warning("dropped corrupted CGM notification (%d good record(s) kept): %s", len(records), error)
            self._gap.set()  # whatever it carried comes back with the next backfill
        via = "backfill" if self._in_backfill else "live"
        last = self.tracker.last_delivered_offset
        for measurement in records:
            self.stats.records_received += 1
            if procedure is not None:
                procedure.offsets.append(measurement.time_offset_min)
            if via == "live" and last is not None and measurement.time_offset_min + 3 * self.config.interval_min < last:
                # Far older than what was delivered, and not asked for: the sensor may have started a new
                # session (offsets restart at 0). Re-read its Session Start Time before trusting offsets.
                self._session_check.set()
            self._emit(self.tracker.offer(reading_from_measurement(measurement, via, self.session_start_iso)))
        if self.tracker.needs_backfill and self.tracker.synced:
            self._gap.set()
        self.stats.notification_cpu_s += time.process_time() - started

    def _on_racp(self, _characteristic: object, data: bytearray) -> None:
        try:
            response = decode_racp_response(bytes(data))
        except DecodeError as error:
            logger.warning("dropped undecodable RACP indication: %s", error)
            return
        procedure = self._procedure
        if procedure is not None and not procedure.response.done():
            procedure.response.set_result(response)

    def _emit(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.stats.delivered += 1
            if self._on_reading is not None:
                self._on_reading(reading)


def _code(response: RacpResponse | RacpNumberOfRecords) -> RacpResponseCode | None:
    return response.response_code if isinstance(response, RacpResponse) else None
