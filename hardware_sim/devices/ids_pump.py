"""Emulated insulin pump on the air: the GATT front end of :class:`~hardware_sim.devices.pump_model.PumpModel`.

Insulin Delivery Service 0x183A (advertised), characteristics 0x2B20..0x2B28:

* IDD Status Changed / Status / Annunciation Status: read + indicate (indicated when they change);
* IDD Features: read (E2E-Protection, basal, TBR absolute + relative, fast + extended bolus, IOB);
* IDD Status Reader CP: active bolus ids and delivery, active basal rate (with TBR), total daily insulin,
  delivered insulin, insulin on board, reset status;
* IDD Command CP: set / cancel bolus, set / cancel TBR, set therapy control state;
* IDD Command Data: notify (present for completeness, unused);
* IDD RACP + IDD History Data: stored history events by sequence number, as History Data notifications
  followed by the RACP response indication (busy cleared before it is queued).

E2E protection (when ``dialect.e2e``): every value the pump sends carries a per-connection,
per-characteristic counter (1..255, reset at each connection) and the CRC; every value the hub writes must
too. A write with a bad CRC is refused with ATT error 0x81 (invalid CRC, the CGMS code; IDS leaves the code to
the application) and a repeated or skipped counter with 0x82; the pump never acts on such a write.

Op codes that are not valid Hamming codes get no response at all, as some real pumps do (ble.md): the hub
must expect a timeout. The ``dialect`` (:class:`~firmware_bridge.codec.ids_common.IdsDialect`) imitates the
disagreeing public implementations: 32-bit FLOAT amounts, 2-octet annunciation status, RACP responses
without the operator, History Data with a counter.

FaultPlan payload faults apply to History Data notifications (the record stream the hub must reassemble).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bumble.att import ATT_Error
from bumble.gatt import Characteristic, CharacteristicValue, Service

from firmware_bridge.codec import ids
from firmware_bridge.codec.ids_common import is_hamming_code
from firmware_bridge.codec.uuids import (
    IDD_ANNUNCIATION_STATUS,
    IDD_COMMAND_CONTROL_POINT,
    IDD_COMMAND_DATA,
    IDD_FEATURES,
    IDD_HISTORY_DATA,
    IDD_RECORD_ACCESS_CONTROL_POINT,
    IDD_STATUS,
    IDD_STATUS_CHANGED,
    IDD_STATUS_READER_CONTROL_POINT,
    IDS_SERVICE,
)
from firmware_bridge.errors import CrcError, DecodeError
from hardware_sim.air.peripheral import advertising_data, static_address_for
from hardware_sim.clock import SimClock
from hardware_sim.devices.clock_loop import ClockLoop
from hardware_sim.faults import FaultPlan, corrupt_crc, truncate

from .glucose_source import InsulinLedger
from .pump_model import Bolus, PumpModel

if TYPE_CHECKING:
    from bumble.device import Connection, Device

logger = logging.getLogger(__name__)

__all__ = ["IdsPumpPeripheral", "PumpModel", "Bolus", "InsulinLedger", "ATT_INVALID_CRC", "ATT_INVALID_COUNTER"]

ATT_INVALID_CRC = 0x81
ATT_INVALID_COUNTER = 0x82
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE

F = ids.IddFeatureBit
FEATURES = F.BASAL_RATE | F.TBR_ABSOLUTE | F.TBR_RELATIVE | F.FAST_BOLUS | F.EXTENDED_BOLUS | F.INSULIN_ON_BOARD


def _sfloat_exact(value: float) -> float:
    """The nearest value an SFLOAT carries exactly (e.g. 25.37 -> 25.4)."""
    from firmware_bridge.codec.numbers import decode_sfloat, encode_sfloat

    return decode_sfloat(encode_sfloat(value))


@dataclass
class _Link:
    """Per-connection state: E2E counters both ways, the running RACP procedure."""

    bank: ids.E2ECounterBank = field(default_factory=lambda: ids.E2ECounterBank(first_expected=1))
    racp_task: asyncio.Task[None] | None = None
    abort: bool = False


@dataclass
class _Gatt:
    chars: dict[str, Characteristic[bytes]]
    links: dict[int, _Link] = field(default_factory=dict)


@dataclass
class PumpStats:
    commands: int = 0
    status_reads: int = 0
    history_notifications: int = 0
    refused_writes: int = 0
    ignored_writes: int = 0


class IdsPumpPeripheral:
    """An :class:`~hardware_sim.air.peripheral.EmulatedPeripheral` serving one insulin pump model."""

    def __init__(
        self,
        model: PumpModel,
        clock: SimClock,
        fault_plan: FaultPlan | None = None,
        *,
        name: str = "GlucoTwin Pump",
        address: str | None = None,
        dialect: ids.IdsDialect | None = None,
    ) -> None:
        self.model = model
        self.clock = clock
        self.fault_plan = fault_plan or FaultPlan()
        self.name = name
        self.address = address or static_address_for(name)
        self.dialect = dialect or ids.IdsDialect(e2e=True)
        self.stats = PumpStats()
        self.status_changed = ids.StatusChangedFlag(0)
        self._rng = self.fault_plan.rng(f"pump:{name}")
        self._gatts: dict[Device, _Gatt] = {}
        self._clock_loop = ClockLoop(self.run, f"{self.name} clock")
        self._last_seen: tuple[Any, ...] | None = None

    # -- lifetime ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._clock_loop.start()

    async def stop(self) -> None:
        await self._clock_loop.stop()

    async def run(self) -> None:
        """Deliver insulin as sim time passes (one-minute steps) and indicate what changed."""
        while True:
            await self.clock.sleep_until_min(self.model.now_min + 1.0)
            self.advance()

    def advance(self) -> None:
        self.model.advance_to(self.clock.now_min())
        self._signal_changes()

    def _snapshot(self) -> tuple[Any, ...]:
        m = self.model
        return (
            m.therapy_state,
            round(m.reservoir_u, 1),
            len(m.annunciations),
            len(m.history),
            tuple(b.bolus_id for b in m.active_boluses()),
            m.tbr is not None,
            round(m.daily_basal_u + m.daily_bolus_u, 1),
        )

    def _signal_changes(self) -> None:
        now = self._snapshot()
        before, self._last_seen = self._last_seen, now
        if before is None or before == now:
            return
        S = ids.StatusChangedFlag
        flags = S(0)
        if before[0] != now[0]:
            flags |= S.THERAPY_CONTROL_STATE_CHANGED
        if before[1] != now[1]:
            flags |= S.RESERVOIR_STATUS_CHANGED
        if before[2] != now[2]:
            flags |= S.ANNUNCIATION_STATUS_CHANGED
        if before[3] != now[3]:
            flags |= S.HISTORY_EVENT_RECORDED
        if before[4] != now[4]:
            flags |= S.ACTIVE_BOLUS_STATUS_CHANGED
        if before[5] != now[5]:
            flags |= S.ACTIVE_BASAL_RATE_STATUS_CHANGED
        if before[6] != now[6]:
            flags |= S.TOTAL_DAILY_INSULIN_STATUS_CHANGED
        self.status_changed |= flags
        if flags & (S.THERAPY_CONTROL_STATE_CHANGED | S.ACTIVE_BOLUS_STATUS_CHANGED | S.ACTIVE_BASAL_RATE_STATUS_CHANGED | S.ANNUNCIATION_STATUS_CHANGED):
            for device, gatt in list(self._gatts.items()):
                for connection in list(device.connections.values()):
                    self._spawn_indicate(device, connection, gatt, "status_changed", self._status_changed_value)
                    if flags & S.ANNUNCIATION_STATUS_CHANGED:
                        self._spawn_indicate(device, connection, gatt, "annunciation", self._annunciation_value)

    # -- EmulatedPeripheral -----------------------------------------------------------------------------------
    def attach(self, device: Device) -> None:
        P = Characteristic.Properties
        readable, writeable = Characteristic.READABLE, Characteristic.WRITEABLE

        def reader(key: str, value: Callable[[Connection], bytes]) -> CharacteristicValue:
            return CharacteristicValue(read=lambda connection: value(connection))

        def writer(handler: Callable[[Device, Connection, bytes], None]) -> CharacteristicValue:
            return CharacteristicValue(write=lambda connection, value: handler(device, connection, bytes(value)))

        chars = {
            "status_changed": Characteristic(IDD_STATUS_CHANGED, P.READ | P.INDICATE, readable, reader("status_changed", lambda c: self._status_changed_value(device, c))),
            "status": Characteristic(IDD_STATUS, P.READ | P.INDICATE, readable, reader("status", lambda c: self._status_value(device, c))),
            "annunciation": Characteristic(IDD_ANNUNCIATION_STATUS, P.READ | P.INDICATE, readable, reader("annunciation", lambda c: self._annunciation_value(device, c))),
            "features": Characteristic(IDD_FEATURES, P.READ, readable, reader("features", lambda c: self._features_value(device, c))),
            "status_reader": Characteristic(IDD_STATUS_READER_CONTROL_POINT, P.WRITE | P.INDICATE, writeable, writer(self._on_status_reader)),
            "command": Characteristic(IDD_COMMAND_CONTROL_POINT, P.WRITE | P.INDICATE, writeable, writer(self._on_command)),
            "command_data": Characteristic(IDD_COMMAND_DATA, P.NOTIFY, readable, b""),
            "racp": Characteristic(IDD_RECORD_ACCESS_CONTROL_POINT, P.WRITE | P.INDICATE, writeable, writer(self._on_racp)),
            "history": Characteristic(IDD_HISTORY_DATA, P.NOTIFY, readable, b""),
        }
        device.add_service(Service(IDS_SERVICE, list(chars.values())))
        device.advertising_data = advertising_data(self.name, [0x183A])
        self._gatts[device] = _Gatt(chars)
        self.start()

    def on_connected(self, device: Device, connection: Connection) -> None:
        gatt = self._gatts.get(device)
        if gatt is not None:
            gatt.links[connection.handle] = _Link()  # E2E counters restart at each connection

    def on_disconnected(self, device: Device, connection: Connection, reason: int) -> None:
        gatt = self._gatts.get(device)
        if gatt is not None:
            link = gatt.links.pop(connection.handle, None)
            if link is not None and link.racp_task is not None:
                link.racp_task.cancel()

    def detach(self, device: Device) -> None:
        gatt = self._gatts.pop(device, None)
        if gatt is not None:
            for link in gatt.links.values():
                if link.racp_task is not None:
                    link.racp_task.cancel()

    # -- helpers ----------------------------------------------------------------------------------------------
    def _link(self, device: Device, connection: Connection) -> _Link:
        gatt = self._gatts[device]
        return gatt.links.setdefault(connection.handle, _Link())

    def _counter(self, device: Device, connection: Connection, key: str) -> int | None:
        return self._link(device, connection).bank.next(key) if self.dialect.e2e else None

    def _checker(self, device: Device, connection: Connection, key: str) -> ids.E2ECounterChecker | None:
        return self._link(device, connection).bank.checker(key) if self.dialect.e2e else None

    def _subscribed(self, device: Device, connection: Connection, characteristic: Characteristic[Any], bit: int) -> bool:
        cccd = device.gatt_server.subscribers.get(connection, {}).get(characteristic.handle)
        return bool(cccd) and len(cccd) == 2 and bool(cccd[0] & bit)

    def _require_indications(self, device: Device, connection: Connection, key: str) -> None:
        if not self._subscribed(device, connection, self._gatts[device].chars[key], 0x02):
            self.stats.refused_writes += 1
            raise ATT_Error(ATT_CCCD_IMPROPERLY_CONFIGURED)

    def _refuse(self, error: DecodeError) -> None:
        self.stats.refused_writes += 1
        if isinstance(error, ids.E2ECounterError):
            raise ATT_Error(ATT_INVALID_COUNTER) from None
        raise ATT_Error(ATT_INVALID_CRC) from None

    def _spawn_indicate(
        self, device: Device, connection: Connection, gatt: _Gatt, key: str, value: Callable[[Device, Connection], bytes]
    ) -> None:
        async def indicate() -> None:
            await asyncio.sleep(0)  # after the ATT write response
            characteristic = gatt.chars[key]
            if not self._subscribed(device, connection, characteristic, 0x02):
                return
            with contextlib.suppress(Exception):
                await device.indicate_subscriber(connection, characteristic, value(device, connection))

        asyncio.get_running_loop().create_task(indicate())

    # -- reads ------------------------------------------------------------------------------------------------
    def _features_value(self, device: Device, connection: Connection) -> bytes:
        flags = int(FEATURES | (F.E2E_PROTECTION if self.dialect.e2e else 0))
        features = ids.IddFeatures(self.model.concentration_u_per_ml, flags)
        return ids.encode_idd_features(features, e2e_counter=self._counter(device, connection, "features"))

    def _status_value(self, device: Device, connection: Connection) -> bytes:
        self.stats.status_reads += 1
        self.advance()
        m = self.model
        status = ids.IddStatus(m.therapy_state, ids.OperationalState.READY, round(m.reservoir_u, 1), True)
        return ids.encode_idd_status(status, e2e_counter=self._counter(device, connection, "status"), number_format=self.dialect.number_format)

    def _status_changed_value(self, device: Device, connection: Connection) -> bytes:
        value = ids.IddStatusChanged(self.status_changed)
        return ids.encode_idd_status_changed(value, e2e_counter=self._counter(device, connection, "status_changed"))

    def _annunciation_value(self, device: Device, connection: Connection) -> bytes:
        latest = self.model.latest_annunciation
        annunciation = None if latest is None else ids.Annunciation(*latest)
        return ids.encode_idd_annunciation_status(
            ids.IddAnnunciationStatus(annunciation),
            e2e_counter=self._counter(device, connection, "annunciation"),
            status_octets=self.dialect.annunciation_status_octets,
        )

    # -- Status Reader CP -------------------------------------------------------------------------------------
    def _on_status_reader(self, device: Device, connection: Connection, value: bytes) -> None:
        self._require_indications(device, connection, "status_reader")
        opcode = int.from_bytes(value[:2], "little") if len(value) >= 2 else -1
        if not is_hamming_code(opcode):
            self.stats.ignored_writes += 1
            return  # no response at all (ble.md)
        try:
            request = ids.decode_status_reader_request(value, e2e=self.dialect.e2e, checker=self._checker(device, connection, "status_reader_rx"))
        except (CrcError, ids.E2ECounterError) as error:
            self._refuse(error)
            return
        except DecodeError:
            response: Any = ids.StatusReaderResponseCode(self._status_reader_opcode(opcode), ids.ResponseCode.OP_CODE_NOT_SUPPORTED)
        else:
            self.advance()
            response = self._status_reader_response(request)
        gatt = self._gatts[device]

        def encode(d: Device, c: Connection) -> bytes:
            return ids.encode_status_reader_response(
                response, e2e_counter=self._counter(d, c, "status_reader"), number_format=self.dialect.number_format
            )

        self._spawn_indicate(device, connection, gatt, "status_reader", encode)

    @staticmethod
    def _status_reader_opcode(opcode: int) -> Any:
        try:
            return ids.StatusReaderOpcode(opcode)
        except ValueError:
            return ids.StatusReaderOpcode.RESPONSE_CODE

    def _status_reader_response(self, request: Any) -> Any:
        m = self.model
        now = self.clock.now_min()
        R = ids.StatusReaderOpcode
        if isinstance(request, ids.GetActiveBolusIds):
            return ids.ActiveBolusIdsResponse(tuple(b.bolus_id for b in m.active_boluses())[: ids.MAX_ACTIVE_BOLUS_IDS])
        if isinstance(request, ids.GetActiveBolusDelivery):
            bolus = m.boluses.get(request.bolus_id)
            if bolus is None or not bolus.active:
                return ids.StatusReaderResponseCode(R.GET_ACTIVE_BOLUS_DELIVERY, ids.ResponseCode.PROCEDURE_NOT_APPLICABLE)
            fast, extended = _bolus_amounts(bolus, request.value_selection)
            return ids.ActiveBolusDeliveryResponse(bolus.bolus_id, bolus.bolus_type, fast, extended, bolus.duration_min)
        if isinstance(request, ids.GetActiveBasalRateDelivery):
            tbr = None
            if m.tbr is not None:
                tbr = ids.ActiveTbr(m.tbr.tbr_type, m.tbr.adjustment, m.tbr.duration_min, m.tbr_remaining_min(now))
            return ids.ActiveBasalRateDeliveryResponse(1, m.programmed_rate_u_per_h(now), tbr)
        if isinstance(request, ids.GetTotalDailyInsulinStatus):
            # Totals are SFLOATs on the wire: 0.01 U resolution only reaches 20.47 U, so round to what the
            # format can carry (3-4 significant digits) instead of failing to answer above 20.47 U/day.
            bolus, basal = _sfloat_exact(m.daily_bolus_u), _sfloat_exact(m.daily_basal_u)
            return ids.TotalDailyInsulinResponse(bolus, basal, _sfloat_exact(bolus + basal))
        if isinstance(request, ids.GetDeliveredInsulin):
            return ids.DeliveredInsulinResponse(round(m.delivered_bolus_u, 2), round(m.delivered_basal_u, 2))
        if isinstance(request, ids.GetInsulinOnBoard):
            return ids.InsulinOnBoardResponse(_sfloat_exact(m.insulin_on_board_u(now)), None)
        if isinstance(request, ids.ResetStatus):
            self.status_changed &= ~request.flags
            return ids.StatusReaderResponseCode(R.RESET_STATUS, ids.ResponseCode.SUCCESS)
        return ids.StatusReaderResponseCode(R.RESPONSE_CODE, ids.ResponseCode.OP_CODE_NOT_SUPPORTED)  # pragma: no cover

    # -- Command CP -------------------------------------------------------------------------------------------
    def _on_command(self, device: Device, connection: Connection, value: bytes) -> None:
        self._require_indications(device, connection, "command")
        opcode = int.from_bytes(value[:2], "little") if len(value) >= 2 else -1
        if not is_hamming_code(opcode):
            self.stats.ignored_writes += 1
            return
        try:
            request = ids.decode_command_request(
                value, e2e=self.dialect.e2e, checker=self._checker(device, connection, "command_rx"), number_format="auto"
            )
        except (CrcError, ids.E2ECounterError) as error:
            self._refuse(error)
            return
        except DecodeError:
            try:
                request_opcode = ids.CommandOpcode(opcode)
            except ValueError:
                request_opcode = ids.CommandOpcode.RESPONSE_CODE
            code = ids.ResponseCode.INVALID_OPERAND if request_opcode != ids.CommandOpcode.RESPONSE_CODE else ids.ResponseCode.OP_CODE_NOT_SUPPORTED
            response: Any = ids.CommandResponseCode(request_opcode, code)
        else:
            self.stats.commands += 1
            response = self._execute(request)
            self._signal_changes()
        gatt = self._gatts[device]
        self._spawn_indicate(
            device, connection, gatt, "command",
            lambda d, c: ids.encode_command_response(response, e2e_counter=self._counter(d, c, "command")),
        )

    def _execute(self, request: Any) -> Any:
        m = self.model
        now = self.clock.now_min()
        C = ids.CommandOpcode
        if isinstance(request, ids.SetBolus):
            code, bolus_id = m.set_bolus(request.bolus_type, request.fast_u, request.extended_u, request.duration_min, now)
            return ids.SetBolusResponse(bolus_id) if bolus_id is not None else ids.CommandResponseCode(C.SET_BOLUS, code)
        if isinstance(request, ids.CancelBolus):
            code = m.cancel_bolus(request.bolus_id, now)
            if code == ids.ResponseCode.SUCCESS:
                return ids.CancelBolusResponse(request.bolus_id)
            return ids.CommandResponseCode(C.CANCEL_BOLUS, code)
        if isinstance(request, ids.SetTbr):
            return ids.CommandResponseCode(C.SET_TBR_ADJUSTMENT, m.set_tbr(request.tbr_type, request.adjustment, request.duration_min, now))
        if isinstance(request, ids.CancelTbr):
            return ids.CommandResponseCode(C.CANCEL_TBR_ADJUSTMENT, m.cancel_tbr(now))
        if isinstance(request, ids.SetTherapyControlState):
            m.advance_to(now)
            if request.state == ids.TherapyControlState.RUN and (m.occluded or m.reservoir_u <= 0):
                return ids.CommandResponseCode(C.SET_THERAPY_CONTROL_STATE, ids.ResponseCode.PROCEDURE_NOT_APPLICABLE)
            m._set_therapy(request.state, now)
            return ids.CommandResponseCode(C.SET_THERAPY_CONTROL_STATE, ids.ResponseCode.SUCCESS)
        opcode = ids.encode_command_request(request)[:2]
        return ids.CommandResponseCode(ids.CommandOpcode(int.from_bytes(opcode, "little")), ids.ResponseCode.OP_CODE_NOT_SUPPORTED)

    # -- IDD RACP + History Data ------------------------------------------------------------------------------
    def _on_racp(self, device: Device, connection: Connection, value: bytes) -> None:
        self._require_indications(device, connection, "racp")
        link = self._link(device, connection)
        if link.racp_task is not None and not value.startswith(bytes([ids.RacpOpcode.ABORT_OPERATION])):
            raise ATT_Error(ATT_PROCEDURE_ALREADY_IN_PROGRESS)
        try:
            request = ids.decode_racp_request(value, e2e=self.dialect.e2e, checker=self._checker(device, connection, "racp_rx"))
        except (CrcError, ids.E2ECounterError) as error:
            self._refuse(error)
            return
        except DecodeError:
            opcode = value[0] if value else 0
            request_opcode = ids.RacpOpcode(opcode) if opcode in ids.RacpOpcode._value2member_map_ else ids.RacpOpcode.REPORT_STORED_RECORDS
            self._indicate_racp(device, connection, ids.RacpResponseCode(request_opcode, ids.RacpResult.INVALID_OPERAND))
            return
        problem = ids.racp_request_problem(request)
        if problem is not None:
            self._indicate_racp(device, connection, ids.RacpResponseCode(request.opcode, problem))
            return
        if request.opcode == ids.RacpOpcode.ABORT_OPERATION:
            if link.racp_task is not None:
                link.abort = True
                link.racp_task = None
            self._indicate_racp(device, connection, ids.RacpResponseCode(request.opcode, ids.RacpResult.SUCCESS))
            return
        self.advance()
        selected = self._select(request)
        if request.opcode == ids.RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
            self._indicate_racp(device, connection, ids.RacpNumberOfRecords(len(selected)))
            return
        if request.opcode == ids.RacpOpcode.DELETE_STORED_RECORDS:
            self._indicate_racp(device, connection, ids.RacpResponseCode(request.opcode, ids.RacpResult.OPERATOR_NOT_SUPPORTED))
            return
        if not selected:
            self._indicate_racp(device, connection, ids.RacpResponseCode(request.opcode, ids.RacpResult.NO_RECORDS_FOUND))
            return
        link.abort = False
        link.racp_task = asyncio.get_running_loop().create_task(self._report(device, connection, link, selected))

    def _select(self, request: ids.RacpRequest) -> list[ids.HistoryEvent]:
        events = self.model.history
        op = request.operator
        if op == ids.RacpOperator.ALL:
            return list(events)
        if op == ids.RacpOperator.FIRST:
            return events[:1]
        if op == ids.RacpOperator.LAST:
            return events[-1:]
        low = request.minimum if request.minimum is not None else 0
        high = request.maximum if request.maximum is not None else 0xFFFFFFFF
        return [event for event in events if low <= event.sequence <= high]

    async def _report(self, device: Device, connection: Connection, link: _Link, events: list[ids.HistoryEvent]) -> None:
        gatt = self._gatts.get(device)
        if gatt is None:
            return
        history = gatt.chars["history"]
        try:
            await asyncio.sleep(0)
            payloads = [self._history_value(device, connection, event) for event in events]
            held: bytes | None = None
            for payload in payloads:
                if link.abort:
                    break
                for out in self._faulty(payload):
                    if out is None:
                        continue
                    await device.notify_subscriber(connection, history, out)
                    self.stats.history_notifications += 1
                await asyncio.sleep(0)
            held = self._held
            self._held = None
            if held is not None and not link.abort:
                await device.notify_subscriber(connection, history, held)
            aborted = link.abort
            link.racp_task = None  # busy cleared BEFORE the final indication is queued
            if not aborted:
                self._indicate_racp(device, connection, ids.RacpResponseCode(ids.RacpOpcode.REPORT_STORED_RECORDS, ids.RacpResult.SUCCESS))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("%s: history report ended early", self.name, exc_info=True)
        finally:
            if link.racp_task is asyncio.current_task():
                link.racp_task = None

    _held: bytes | None = None

    def _faulty(self, payload: bytes) -> list[bytes | None]:
        plan = self.fault_plan
        if not plan.has_payload_faults:
            return [payload]
        faults = plan.payload_faults(self._rng)
        if faults.corrupt_crc and self.dialect.e2e:
            payload = corrupt_crc(payload)
        if faults.truncate:
            payload = truncate(payload, self._rng)
        out: list[bytes | None] = [payload, payload] if faults.duplicate else [payload]
        held, self._held = self._held, None
        if faults.out_of_order and held is None:
            self._held = out.pop()
        if held is not None:
            out.append(held)
        return out

    def _history_value(self, device: Device, connection: Connection, event: ids.HistoryEvent) -> bytes:
        counter = self._counter(device, connection, "history") if self.dialect.e2e and self.dialect.history_counter else None
        return ids.encode_history_data(event, e2e=self.dialect.e2e, counter=counter, number_format=self.dialect.number_format)

    def _indicate_racp(self, device: Device, connection: Connection, response: Any) -> None:
        gatt = self._gatts[device]
        self._spawn_indicate(
            device, connection, gatt, "racp",
            lambda d, c: ids.encode_racp_response(
                response, e2e_counter=self._counter(d, c, "racp"), include_operator=self.dialect.racp_response_operator
            ),
        )


def _bolus_amounts(bolus: Bolus, selection: ids.BolusValueSelection) -> tuple[float, float]:
    if selection == ids.BolusValueSelection.REMAINING:
        return round(bolus.remaining_fast_u, 2), round(bolus.remaining_extended_u, 2)
    if selection == ids.BolusValueSelection.DELIVERED:
        return round(bolus.delivered_fast_u, 2), round(bolus.delivered_extended_u, 2)
    return bolus.fast_u, bolus.extended_u
