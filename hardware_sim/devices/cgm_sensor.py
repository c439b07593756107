"""Emulated CGM sensor on the air: the GATT front end of :class:`~hardware_sim.devices.cgm_model.CgmSensorModel`.

Continuous Glucose Monitoring Service 0x181F (advertised):

* CGM Measurement 0x2AA7 (notify): each new reading live, one record per notification; stored records
  answering an RACP request, packed several per notification to fit ATT_MTU - 3 (bumble silently truncates
  anything longer).
* CGM Feature / Status / Session Start Time / Session Run Time (read; SST also write, as the spec lets a
  collector set it).
* Record Access Control Point 0x2A52 (write + indicate): report / delete / number of stored records by time
  offset (all, <=, >=, range, first, last), abort. ATT errors 0xFD when the RACP indication is not enabled
  and 0xFE while a procedure runs. The busy flag is cleared BEFORE the final indication is queued, so a fast
  hub that writes its next request as soon as it sees the response is never refused (ble.md pitfall).
* CGM Specific Ops Control Point 0x2AAC (write + indicate): start / stop session, communication interval
  get/set, alert levels get/set (for the model's hypo/hyper/rate alerts).

Payload faults of the :class:`~hardware_sim.faults.FaultPlan` are applied to every Measurement notification
(live and backfill): corrupted E2E-CRC (only meaningful with E2E-CRC on: without a CRC a corrupted value
could not be detected by any hub, so the fault is skipped), truncation, duplication and swapping with the
next notification (out of order).

The sensor's own clock loop (:meth:`CgmSensorPeripheral.run`) takes readings at sim time; it starts with the
first ``attach`` (or explicitly with :meth:`start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bumble.att import ATT_Error
from bumble.gatt import Characteristic, CharacteristicValue, Service

from firmware_bridge.codec import cgms_socp as socp
from firmware_bridge.codec.cgms import (
    AnnunciationOrder,
    CgmFeature,
    CgmFeatureFlags,
    CgmMeasurement,
    SessionRunTime,
    SessionStartTime,
    decode_session_start_time,
    encode_cgm_feature,
    encode_cgm_measurement,
    encode_cgm_status,
    encode_session_run_time,
    encode_session_start_time,
    pack_cgm_measurements,
)
from firmware_bridge.codec.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    decode_racp_request,
    encode_racp,
    racp_error_response,
)
from firmware_bridge.codec.uuids import (
    CGM_FEATURE,
    CGM_MEASUREMENT,
    CGM_SERVICE,
    CGM_SESSION_RUN_TIME,
    CGM_SESSION_START_TIME,
    CGM_SPECIFIC_OPS_CONTROL_POINT,
    CGM_STATUS,
    RECORD_ACCESS_CONTROL_POINT,
)
from firmware_bridge.errors import DecodeError
from hardware_sim.air.peripheral import advertising_data, static_address_for
from hardware_sim.clock import SimClock
from hardware_sim.devices.clock_loop import ClockLoop
from hardware_sim.faults import FaultPlan, corrupt_crc, truncate

from .cgm_model import CgmSensorModel, SessionError

if TYPE_CHECKING:
    from bumble.device import Connection, Device

logger = logging.getLogger(__name__)

ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE

#: Features the emulated sensor declares (plus E2E_CRC when enabled).
BASE_FEATURES = (
    CgmFeatureFlags.HYPO_ALERTS
    | CgmFeatureFlags.HYPER_ALERTS
    | CgmFeatureFlags.RATE_OF_INCREASE_DECREASE_ALERTS
    | CgmFeatureFlags.SENSOR_MALFUNCTION_DETECTION
    | CgmFeatureFlags.SENSOR_RESULT_HIGH_LOW_DETECTION
    | CgmFeatureFlags.LOW_BATTERY_DETECTION
    | CgmFeatureFlags.TREND_INFORMATION
)

_ALERT_FIELDS = {
    socp.CgmAlert.HYPO: "hypo_mg_dl",
    socp.CgmAlert.HYPER: "hyper_mg_dl",
}


@dataclass
class _Gatt:
    """The characteristics created on one bumble device, and its per-connection procedure state."""

    measurement: Characteristic[bytes]
    racp: Characteristic[bytes]
    socp: Characteristic[bytes]
    busy: dict[int, asyncio.Task[None]] = field(default_factory=dict)  # connection handle -> RACP procedure
    abort: set[int] = field(default_factory=set)


@dataclass
class CgmSensorStats:
    live_notifications: int = 0
    backfill_notifications: int = 0
    faults_applied: int = 0
    racp_requests: int = 0


class CgmSensorPeripheral:
    """An :class:`~hardware_sim.air.peripheral.EmulatedPeripheral` serving one CGM sensor model.

    With ``start_session`` the sensor's session starts at ``session_start_min`` (default: the clock's epoch,
    so time offset N is the glucose source at sim minute N; None: when the sensor starts). Readings due
    before the sensor started are taken at once and stored."""

    def __init__(
        self,
        model: CgmSensorModel,
        clock: SimClock,
        fault_plan: FaultPlan | None = None,
        *,
        name: str = "GlucoTwin CGM",
        address: str | None = None,
        start_session: bool = True,
        session_start_min: float | None = 0.0,
        annunciation_order: AnnunciationOrder = AnnunciationOrder.SPEC,
    ) -> None:
        self.model = model
        self.clock = clock
        self.fault_plan = fault_plan or FaultPlan()
        self.name = name
        self.address = address or static_address_for(name)
        self.annunciation_order = annunciation_order
        self.start_session_on_start = start_session
        self.session_start_min = session_start_min
        self.communication_interval_min = model.config.interval_min
        self.session_start_time: SessionStartTime | None = None
        self.stats = CgmSensorStats()
        self._rng = self.fault_plan.rng(f"cgm:{name}")
        self._gatts: dict[Device, _Gatt] = {}
        self._held_back: dict[tuple[int, int], bytes] = {}  # (device id, handle) -> notification swapped later
        self._clock_loop = ClockLoop(self.run, f"{self.name} clock")
        self._wake = asyncio.Event()

    @property
    def e2e_crc(self) -> bool:
        return self.model.config.e2e_crc

    # -- lifetime ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sensor's clock loop on the running event loop (idempotent)."""
        if not self._clock_loop.running:
            if self.start_session_on_start and not self.model.session_running:
                start = self.clock.now_min() if self.session_start_min is None else self.session_start_min
                self.model.start_session(start)
            self._clock_loop.start()

    async def stop(self) -> None:
        await self._clock_loop.stop()

    async def run(self) -> None:
        """Take each reading when it is due and notify it to every connected, subscribed hub."""
        while True:
            due = self.model.next_reading_min()
            if due is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.clock.sleep_until_min(due)
            if self.model.next_reading_min() != due:
                continue  # the session was stopped or restarted meanwhile
            for reading in self.model.advance_to(self.clock.now_min()):
                await self._notify_live(reading)

    # -- EmulatedPeripheral -----------------------------------------------------------------------------------
    def attach(self, device: Device) -> None:
        measurement = Characteristic(
            CGM_MEASUREMENT, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
        )
        racp = Characteristic(
            RECORD_ACCESS_CONTROL_POINT,
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=lambda connection, value: self._on_racp_write(device, connection, value)),
        )
        socp_char = Characteristic(
            CGM_SPECIFIC_OPS_CONTROL_POINT,
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=lambda connection, value: self._on_socp_write(device, connection, value)),
        )
        readable = Characteristic.READABLE
        characteristics = [
            measurement,
            Characteristic(CGM_FEATURE, Characteristic.Properties.READ, readable, CharacteristicValue(read=self._read_feature)),
            Characteristic(CGM_STATUS, Characteristic.Properties.READ, readable, CharacteristicValue(read=self._read_status)),
            Characteristic(
                CGM_SESSION_START_TIME,
                Characteristic.Properties.READ | Characteristic.Properties.WRITE,
                readable | Characteristic.WRITEABLE,
                CharacteristicValue(read=self._read_session_start_time, write=self._write_session_start_time),
            ),
            Characteristic(
                CGM_SESSION_RUN_TIME, Characteristic.Properties.READ, readable, CharacteristicValue(read=self._read_run_time)
            ),
            racp,
            socp_char,
        ]
        device.add_service(Service(CGM_SERVICE, characteristics))
        device.advertising_data = advertising_data(self.name, [0x181F])
        self._gatts[device] = _Gatt(measurement, racp, socp_char)
        self.start()

    def on_connected(self, device: Device, connection: Connection) -> None:
        logger.debug("%s: hub connected (handle %d)", self.name, connection.handle)

    def on_disconnected(self, device: Device, connection: Connection, reason: int) -> None:
        gatt = self._gatts.get(device)
        if gatt is not None:
            task = gatt.busy.pop(connection.handle, None)
            if task is not None:
                task.cancel()
            gatt.abort.discard(connection.handle)
        for key in [key for key in self._held_back if key[0] == id(device)]:
            del self._held_back[key]

    def detach(self, device: Device) -> None:
        gatt = self._gatts.pop(device, None)
        if gatt is not None:
            for task in gatt.busy.values():
                task.cancel()

    # -- reads ------------------------------------------------------------------------------------------------
    def feature(self) -> CgmFeature:
        flags = BASE_FEATURES | (CgmFeatureFlags.E2E_CRC if self.e2e_crc else CgmFeatureFlags(0))
        return CgmFeature(flags)

    def _read_feature(self, connection: Connection) -> bytes:
        return encode_cgm_feature(self.feature())

    def _read_status(self, connection: Connection) -> bytes:
        return encode_cgm_status(self.model.status(self.clock.now_min()), e2e_crc=self.e2e_crc)

    def _read_session_start_time(self, connection: Connection) -> bytes:
        value = self.session_start_time
        if value is None:
            start_min = self.model.session_start_min or 0.0
            value = SessionStartTime.from_datetime(self.clock.start + _minutes(start_min))
        return encode_session_start_time(value, e2e_crc=self.e2e_crc)

    def _write_session_start_time(self, connection: Connection, value: bytes) -> None:
        try:
            self.session_start_time = decode_session_start_time(value, e2e_crc=self.e2e_crc)
        except DecodeError as error:
            raise ATT_Error(socp.ATT_ERROR_INVALID_CRC if "CRC" in error.reason else 0x13) from None

    def _read_run_time(self, connection: Connection) -> bytes:
        return encode_session_run_time(SessionRunTime(self.model.config.session_run_time_h), e2e_crc=self.e2e_crc)

    # -- notifications with faults ----------------------------------------------------------------------------
    def _faulty(self, device: Device, handle: int, payloads: Sequence[bytes]) -> list[bytes]:
        """Apply the fault plan to each notification of ``payloads`` (in order) and return what to send."""
        plan = self.fault_plan
        if not plan.has_payload_faults:
            return list(payloads)
        out: list[bytes] = []
        key = (id(device), handle)
        for payload in payloads:
            faults = plan.payload_faults(self._rng)
            if faults.any:
                self.stats.faults_applied += 1
            if faults.corrupt_crc and self.e2e_crc:
                payload = corrupt_crc(payload)
            if faults.truncate:
                payload = truncate(payload, self._rng)
            copies = [payload, payload] if faults.duplicate else [payload]
            held = self._held_back.pop(key, None)
            if faults.out_of_order and held is None:
                self._held_back[key] = copies[-1]  # sent after the next notification
                copies = copies[:-1]
            out.extend(copies)
            if held is not None:
                out.append(held)
        return out

    def _subscribed(self, device: Device, connection: Connection, characteristic: Characteristic[Any], bit: int) -> bool:
        cccds = device.gatt_server.subscribers.get(connection, {})
        cccd = cccds.get(characteristic.handle)
        return bool(cccd) and len(cccd) == 2 and bool(cccd[0] & bit)

    async def _notify_live(self, reading: CgmMeasurement) -> None:
        record = encode_cgm_measurement(reading, e2e_crc=self.e2e_crc, annunciation_order=self.annunciation_order)
        for device, gatt in list(self._gatts.items()):
            for connection in list(device.connections.values()):
                if not self._subscribed(device, connection, gatt.measurement, 0x01):
                    continue
                for payload in self._faulty(device, connection.handle, [record]):
                    with contextlib.suppress(Exception):
                        await device.notify_subscriber(connection, gatt.measurement, payload)
                        self.stats.live_notifications += 1

    # -- Record Access Control Point --------------------------------------------------------------------------
    def _on_racp_write(self, device: Device, connection: Connection, value: bytes) -> None:
        gatt = self._gatts.get(device)
        if gatt is None:
            raise ATT_Error(0x0E)  # unlikely error: detached
        if not self._subscribed(device, connection, gatt.racp, 0x02):
            raise ATT_Error(ATT_CCCD_IMPROPERLY_CONFIGURED)
        self.stats.racp_requests += 1
        busy = connection.handle in gatt.busy
        raw = bytes(value)
        if busy and not (raw[:1] == bytes([RacpOpcode.ABORT_OPERATION])):
            raise ATT_Error(ATT_PROCEDURE_ALREADY_IN_PROGRESS)
        try:
            request = decode_racp_request(raw)
        except DecodeError as error:
            self._spawn_indicate(device, connection, gatt.racp, encode_racp(racp_error_response(error, raw)))
            return
        if request.opcode is RacpOpcode.ABORT_OPERATION:
            task = gatt.busy.pop(connection.handle, None)
            if task is not None:
                gatt.abort.add(connection.handle)
            response = RacpResponse(RacpOpcode.ABORT_OPERATION, RacpResponseCode.SUCCESS)
            self._spawn_indicate(device, connection, gatt.racp, encode_racp(response))
            return
        selected = self._select(request)
        if request.opcode is RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
            self._spawn_indicate(device, connection, gatt.racp, encode_racp(RacpNumberOfRecords(len(selected))))
            return
        if request.opcode is RacpOpcode.DELETE_STORED_RECORDS:
            doomed = {id(record) for record in selected}
            self.model.records[:] = [r for r in self.model.records if id(r) not in doomed]
            code = RacpResponseCode.SUCCESS if selected else RacpResponseCode.NO_RECORDS_FOUND
            self._spawn_indicate(device, connection, gatt.racp, encode_racp(RacpResponse(request.opcode, code)))
            return
        # REPORT_STORED_RECORDS
        if not selected:
            response = RacpResponse(request.opcode, RacpResponseCode.NO_RECORDS_FOUND)
            self._spawn_indicate(device, connection, gatt.racp, encode_racp(response))
            return
        gatt.abort.discard(connection.handle)
        task = asyncio.get_running_loop().create_task(self._report(device, connection, gatt, selected))
        gatt.busy[connection.handle] = task

    def _select(self, request: RacpRequest) -> list[CgmMeasurement]:
        offsets = [record.time_offset_min for record in self.model.records]
        return [self.model.records[i] for i in request.select_indices(offsets)]

    async def _report(self, device: Device, connection: Connection, gatt: _Gatt, records: list[CgmMeasurement]) -> None:
        handle = connection.handle
        try:
            await asyncio.sleep(0)  # let the ATT write response go first
            payloads = pack_cgm_measurements(
                records, mtu=connection.att_mtu, e2e_crc=self.e2e_crc, annunciation_order=self.annunciation_order
            )
            to_send = self._faulty(device, handle, payloads)
            held = self._held_back.pop((id(device), handle), None)
            if held is not None:
                to_send.append(held)  # reordered, but still before the response: an ATT bearer keeps order
            for payload in to_send:
                if handle in gatt.abort:
                    break
                await device.notify_subscriber(connection, gatt.measurement, payload)
                self.stats.backfill_notifications += 1
                await asyncio.sleep(0)  # interleave with live readings and abort requests, as a real stack does
            aborted = handle in gatt.abort
            gatt.abort.discard(handle)
            code = RacpResponseCode.PROCEDURE_NOT_COMPLETED if aborted else RacpResponseCode.SUCCESS
            # Clear the busy state BEFORE queuing the final indication (see module docstring).
            if gatt.busy.get(handle) is asyncio.current_task():
                del gatt.busy[handle]
            if not aborted:
                await self._indicate(device, connection, gatt.racp, encode_racp(RacpResponse(RacpOpcode.REPORT_STORED_RECORDS, code)))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("%s: RACP report ended early", self.name, exc_info=True)
        finally:
            if gatt.busy.get(handle) is asyncio.current_task():
                del gatt.busy[handle]

    def _spawn_indicate(self, device: Device, connection: Connection, characteristic: Characteristic[Any], value: bytes) -> None:
        asyncio.get_running_loop().create_task(self._indicate(device, connection, characteristic, value))

    async def _indicate(self, device: Device, connection: Connection, characteristic: Characteristic[Any], value: bytes) -> None:
        await asyncio.sleep(0)  # after the write response
        with contextlib.suppress(Exception):
            await device.indicate_subscriber(connection, characteristic, value)

    # -- CGM Specific Ops Control Point -----------------------------------------------------------------------
    def _on_socp_write(self, device: Device, connection: Connection, value: bytes) -> None:
        gatt = self._gatts.get(device)
        if gatt is None:
            raise ATT_Error(0x0E)
        if not self._subscribed(device, connection, gatt.socp, 0x02):
            raise ATT_Error(ATT_CCCD_IMPROPERLY_CONFIGURED)
        raw = bytes(value)
        try:
            request = socp.decode_socp_request(raw, e2e_crc=self.e2e_crc)
        except DecodeError as error:
            att_error = socp.socp_att_error(error)
            if att_error is not None:
                raise ATT_Error(att_error) from None
            reply: socp.SocpMessage = socp.socp_error_response(error, raw)
        else:
            reply = self._socp_reply(request)
        self._spawn_indicate(device, connection, gatt.socp, socp.encode_socp(reply, e2e_crc=self.e2e_crc))

    def _socp_reply(self, request: socp.SocpRequest) -> socp.SocpMessage:
        ok = socp.SocpResponseCode.SUCCESS
        now = self.clock.now_min()
        if isinstance(request, socp.StartSession):
            try:
                self.model.start_session(now)
            except SessionError:
                return socp.SocpResponse(socp.SocpOpcode.START_SESSION, socp.SocpResponseCode.PROCEDURE_NOT_COMPLETED)
            self.session_start_time = None
            self._wake.set()
            return socp.SocpResponse(socp.SocpOpcode.START_SESSION, ok)
        if isinstance(request, socp.StopSession):
            try:
                self.model.stop_session(now)
            except SessionError:
                return socp.SocpResponse(socp.SocpOpcode.STOP_SESSION, socp.SocpResponseCode.PROCEDURE_NOT_COMPLETED)
            return socp.SocpResponse(socp.SocpOpcode.STOP_SESSION, ok)
        if isinstance(request, socp.GetCommunicationInterval):
            return socp.CommunicationIntervalResponse(self.communication_interval_min)
        if isinstance(request, socp.SetCommunicationInterval):
            interval = request.interval_min
            self.communication_interval_min = self.model.config.interval_min if interval == 0xFF else interval
            return socp.SocpResponse(socp.SocpOpcode.SET_COMMUNICATION_INTERVAL, ok)
        if isinstance(request, (socp.GetAlertLevel, socp.SetAlertLevel)) and request.alert in _ALERT_FIELDS:
            name = _ALERT_FIELDS[request.alert]
            if isinstance(request, socp.SetAlertLevel):
                if not 20 <= request.level <= 500:
                    return socp.SocpResponse(request.alert.set_opcode, socp.SocpResponseCode.PARAMETER_OUT_OF_RANGE)
                self.model.config = replace(self.model.config, **{name: float(request.level)})
                return socp.SocpResponse(request.alert.set_opcode, ok)
            return socp.AlertLevelResponse(request.alert, getattr(self.model.config, name))
        opcode = _request_opcode(request)
        return socp.SocpResponse(opcode, socp.SocpResponseCode.OP_CODE_NOT_SUPPORTED)


def _request_opcode(request: socp.SocpRequest) -> int:
    return socp.encode_socp(request, e2e_crc=False)[0]


def _minutes(value: float) -> Any:
    from datetime import timedelta

    return timedelta(minutes=value)


def make_cgm_sensor(
    clock: SimClock,
    source: Any,
    fault_plan: FaultPlan | None = None,
    *,
    e2e_crc: bool = True,
    interval_min: int = 5,
    name: str = "GlucoTwin CGM",
) -> CgmSensorPeripheral:
    """Convenience: a sensor model with the usual configuration, on the air (a virtual patient is a ``source``)."""
    from .cgm_model import CgmSensorConfig

    model = CgmSensorModel(source, CgmSensorConfig(interval_min=interval_min, e2e_crc=e2e_crc))
    return CgmSensorPeripheral(model, clock, fault_plan, name=name)
