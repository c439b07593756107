"""Hub-side insulin pump (IDS, 0x183A) session over the plain bleak API.

Reading is free: :meth:`PumpSession.read_status` (therapy state, reservoir, active basal and TBR, active
boluses, insulin on board, delivered and daily totals, latest annunciation) and :meth:`PumpSession.read_history`
(every History Data event from a sequence number on, de-duplicated and ordered, re-requesting what was lost).

Changing what the pump delivers is not: :meth:`PumpSession.execute` accepts only a :class:`ConfirmedCommand`,
which exists only as the result of a person confirming a :class:`DoseProposal` (the hub recommends, a person
confirms). A confirmed command is single-use and expires (``max_confirmation_age_s``), and a dosing command is
written AT MOST ONCE: if its response is lost or fails its E2E check, the outcome is reported as unknown
(after reading the active boluses) and never retried blindly, since a retried bolus could be a double dose.

Robust to the disagreements between public IDS implementations (ble.md): 16-bit SFLOAT or 32-bit FLOAT
insulin amounts ("auto"), 1- or 2-octet annunciation status, IDD RACP responses with or without the operator
octet, History Data with or without an E2E-Counter. E2E protection follows IDD Features bit 0: the hub's
writes carry a per-connection, per-characteristic counter (1..255, restarting at each connection) and the CRC;
every value received is CRC-checked and its counter must advance (a repeat is a replay and is rejected).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from firmware_bridge.codec import ids
from firmware_bridge.codec.uuids import (
    IDD_ANNUNCIATION_STATUS,
    IDD_COMMAND_CONTROL_POINT,
    IDD_FEATURES,
    IDD_HISTORY_DATA,
    IDD_RECORD_ACCESS_CONTROL_POINT,
    IDD_STATUS,
    IDD_STATUS_CHANGED,
    IDD_STATUS_READER_CONTROL_POINT,
    IDS_SERVICE,
)
from firmware_bridge.errors import BridgeError, DecodeError
from firmware_bridge.radio import Radio

logger = logging.getLogger(__name__)


class PumpSessionError(BridgeError):
    """The pump cannot be reached, refused a request, or answered something the hub cannot trust."""


class CommandRefusedError(PumpSessionError):
    """A command was refused before anything was sent (unconfirmed, reused, expired, unsupported)."""


class OutcomeUnknownError(PumpSessionError):
    """A dosing command was sent but its response was lost or untrustworthy: check the pump before any retry."""

    def __init__(self, message: str, active_bolus_ids: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.active_bolus_ids = active_bolus_ids


# -- proposals and confirmations -------------------------------------------------------------------------------
ACTIONS = ("fast_bolus", "extended_bolus", "tbr", "cancel_bolus", "cancel_tbr")


@dataclass(frozen=True)
class DoseProposal:
    """What the hub (or a person typing it) proposes; inert until a person confirms it."""

    action: str
    fast_u: float = 0.0
    extended_u: float = 0.0
    duration_min: int = 0
    tbr_type: ids.TbrType | None = None
    tbr_adjustment: float | None = None
    bolus_id: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {ACTIONS}")
        for name in ("fast_u", "extended_u"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite amount >= 0 U, got {value!r}")
        if self.action == "fast_bolus" and not self.fast_u > 0:
            raise ValueError("a fast bolus needs an amount > 0 U")
        if self.action == "extended_bolus" and not (self.extended_u > 0 and self.duration_min > 0):
            raise ValueError("an extended bolus needs an extended amount > 0 U and a duration > 0 min")
        if self.action == "tbr":
            if self.tbr_type is None or self.tbr_adjustment is None or not math.isfinite(self.tbr_adjustment) or self.tbr_adjustment < 0:
                raise ValueError("a temporary basal needs a type and a finite adjustment >= 0")
            if self.duration_min <= 0:
                raise ValueError("a temporary basal needs a duration > 0 min")

    def confirm(self, confirmed_by: str, *, at: datetime | None = None) -> ConfirmedCommand:
        """A person confirms this proposal: the only way to obtain a :class:`ConfirmedCommand`."""
        if not confirmed_by or not confirmed_by.strip():
            raise CommandRefusedError("a confirmation must name who confirmed")
        return ConfirmedCommand(self, confirmed_by.strip(), at or datetime.now(timezone.utc), uuid.uuid4().hex, _CONFIRMATION_KEY)

    def describe(self) -> str:
        if self.action == "fast_bolus":
            return f"fast bolus {self.fast_u:g} U"
        if self.action == "extended_bolus":
            return f"extended bolus {self.fast_u:g} U now + {self.extended_u:g} U over {self.duration_min} min"
        if self.action == "tbr":
            value = f"{self.tbr_adjustment:g} U/h" if self.tbr_type == ids.TbrType.ABSOLUTE else f"{(self.tbr_adjustment or 0) * 100:g} %"
            return f"temporary basal {value} for {self.duration_min} min"
        return self.action.replace("_", " ") + (f" {self.bolus_id}" if self.bolus_id is not None else "")


_CONFIRMATION_KEY = object()


@dataclass(frozen=True)
class ConfirmedCommand:
    """A proposal a named person confirmed at a given time; single-use (``token``)."""

    proposal: DoseProposal
    confirmed_by: str
    confirmed_at: datetime
    token: str
    _key: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._key is not _CONFIRMATION_KEY:
            raise CommandRefusedError("a ConfirmedCommand is created only by DoseProposal.confirm()")

    # Convenience constructors for a person who typed the command AND its confirmation (the CLI).
    @classmethod
    def fast_bolus(cls, units: float, *, confirmed_by: str, reason: str = "") -> ConfirmedCommand:
        return DoseProposal("fast_bolus", fast_u=float(units), reason=reason).confirm(confirmed_by)

    @classmethod
    def temporary_basal(
        cls,
        *,
        percent: float | None = None,
        rate_u_per_h: float | None = None,
        duration_min: int,
        confirmed_by: str,
        reason: str = "",
    ) -> ConfirmedCommand:
        if (percent is None) == (rate_u_per_h is None):
            raise ValueError("give exactly one of percent and rate_u_per_h")
        if percent is not None:
            proposal = DoseProposal("tbr", duration_min=duration_min, tbr_type=ids.TbrType.RELATIVE, tbr_adjustment=percent / 100.0, reason=reason)
        else:
            proposal = DoseProposal("tbr", duration_min=duration_min, tbr_type=ids.TbrType.ABSOLUTE, tbr_adjustment=rate_u_per_h, reason=reason)
        return proposal.confirm(confirmed_by)

    @classmethod
    def cancel(cls, what: str, *, bolus_id: int | None = None, confirmed_by: str) -> ConfirmedCommand:
        if what == "tbr":
            return DoseProposal("cancel_tbr").confirm(confirmed_by)
        return DoseProposal("cancel_bolus", bolus_id=bolus_id).confirm(confirmed_by)


# -- results -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActiveBolus:
    bolus_id: int
    bolus_type: str
    programmed_u: float
    remaining_u: float


@dataclass(frozen=True)
class PumpStatus:
    therapy_state: str
    reservoir_u: float
    reservoir_attached: bool
    basal_rate_u_per_h: float
    tbr: dict[str, Any] | None
    active_boluses: tuple[ActiveBolus, ...]
    iob_u: float | None
    delivered_bolus_u: float
    delivered_basal_u: float
    daily_total_u: float | None
    annunciation: dict[str, Any] | None
    e2e_protection: bool

    def as_json_dict(self) -> dict[str, Any]:
        return {
            "therapy_state": self.therapy_state,
            "reservoir_u": self.reservoir_u,
            "reservoir_attached": self.reservoir_attached,
            "basal_rate_u_per_h": self.basal_rate_u_per_h,
            "tbr": self.tbr,
            "active_boluses": [b.__dict__ for b in self.active_boluses],
            "iob_u": self.iob_u,
            "delivered_bolus_u": self.delivered_bolus_u,
            "delivered_basal_u": self.delivered_basal_u,
            "daily_total_u": self.daily_total_u,
            "annunciation": self.annunciation,
            "e2e_protection": self.e2e_protection,
        }


@dataclass(frozen=True)
class HistoryRecord:
    sequence: int
    event_type: str
    relative_offset_s: int
    data: dict[str, Any]

    def as_json_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "event_type": self.event_type, "relative_offset_s": self.relative_offset_s, "data": self.data}


@dataclass(frozen=True)
class CommandOutcome:
    action: str
    description: str
    accepted: bool
    response: str
    bolus_id: int | None
    confirmed_by: str
    token: str

    def as_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PumpSessionConfig:
    address: str | None = None
    scan_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    response_timeout_s: float = 5.0
    max_confirmation_age_s: float = 300.0
    max_history_rounds: int = 10


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if hasattr(value, "__dataclass_fields__"):
        return {key: _jsonable(getattr(value, key)) for key in value.__dataclass_fields__}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class PumpSession:
    """One connection to an IDS pump: ``async with PumpSession(radio) as pump: await pump.read_status()``."""

    def __init__(self, radio: Radio, config: PumpSessionConfig | None = None) -> None:
        self.radio = radio
        self.config = config or PumpSessionConfig()
        self.features: ids.IddFeatures | None = None
        self.client: BleakClient | None = None
        self._bank = ids.E2ECounterBank(first_expected=None)
        self._responses: dict[str, asyncio.Queue[bytes]] = {}
        self._history: list[bytes] = []
        self._used_tokens: set[str] = set()
        self._lock = asyncio.Lock()
        self.connect_s: float | None = None
        self.last_status_changed: ids.IddStatusChanged | None = None
        self.last_annunciation: ids.IddAnnunciationStatus | None = None
        self.dropped_history_values = 0

    @property
    def e2e(self) -> bool:
        return bool(self.features and self.features.e2e_protection)

    # -- connection ---------------------------------------------------------------------------------------------
    async def __aenter__(self) -> PumpSession:
        started = time.perf_counter()
        wanted = self.config.address.upper() if self.config.address else None

        def match(device: BLEDevice, advertisement: AdvertisementData) -> bool:
            if wanted is not None:
                return device.address.upper() == wanted
            return IDS_SERVICE in [u.lower() for u in advertisement.service_uuids]

        device = await BleakScanner.find_device_by_filter(match, timeout=self.config.scan_timeout_s, **self.radio.scanner_kwargs())
        if device is None:
            raise PumpSessionError("no insulin pump (service 0x183A) found" + (f" at {wanted}" if wanted else ""))
        client = BleakClient(device, timeout=self.config.connect_timeout_s, **self.radio.client_kwargs())
        await client.connect()
        self.client = client
        try:
            self._bank.reset()
            self.features = ids.decode_idd_features(await client.read_gatt_char(IDD_FEATURES), checker=self._bank.checker("features"))
            for key, uuid_ in (
                ("status_reader", IDD_STATUS_READER_CONTROL_POINT),
                ("command", IDD_COMMAND_CONTROL_POINT),
                ("racp", IDD_RECORD_ACCESS_CONTROL_POINT),
            ):
                queue: asyncio.Queue[bytes] = asyncio.Queue()
                self._responses[key] = queue
                await client.start_notify(uuid_, lambda _c, data, q=queue: q.put_nowait(bytes(data)))
            await client.start_notify(IDD_HISTORY_DATA, lambda _c, data: self._history.append(bytes(data)))
            # Indications of these consume the pump's E2E counters too: check them, so reads stay in sequence.
            await client.start_notify(IDD_STATUS_CHANGED, lambda _c, data: self._on_indication("status_changed", bytes(data)))
            await client.start_notify(IDD_ANNUNCIATION_STATUS, lambda _c, data: self._on_indication("annunciation", bytes(data)))
        except BaseException:
            await client.disconnect()
            raise
        self.connect_s = time.perf_counter() - started
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.disconnect()
            except (BleakError, OSError):
                pass

    def _on_indication(self, key: str, data: bytes) -> None:
        try:
            if key == "status_changed":
                self.last_status_changed = ids.decode_idd_status_changed(data, e2e=self.e2e, checker=self._checker(key))
            else:
                self.last_annunciation = ids.decode_idd_annunciation_status(data, e2e=self.e2e, checker=self._checker(key), status_octets="auto")
        except DecodeError as error:
            logger.warning("dropped %s indication: %s", key, error)

    def _decode_read(self, key: str, decode: Callable[..., Any], data: bytes, **kwargs: Any) -> Any:
        """Decode a value read (not a command response). A counter that skipped ahead means a value was
        missed, which is harmless for a read of current state: the checker re-synchronises and the value,
        whose CRC is intact, is used. A repeated counter is a replay and is rejected."""
        checker = self._checker(key)
        try:
            return decode(data, e2e=self.e2e, checker=checker, **kwargs)
        except ids.E2ECounterError as error:
            if checker is None or "out of sequence" not in error.reason:
                raise
            logger.info("%s: %s (a value was missed); using the value read", key, error.reason)
            return decode(data, e2e=self.e2e, checker=None, **kwargs)

    def _client(self) -> BleakClient:
        if self.client is None or not self.client.is_connected:
            raise PumpSessionError("not connected to the pump")
        return self.client

    def _counter(self, key: str) -> int | None:
        return self._bank.next(key) if self.e2e else None

    def _checker(self, key: str) -> ids.E2ECounterChecker | None:
        return self._bank.checker(key) if self.e2e else None

    async def _request(self, key: str, uuid_: str, payload: bytes) -> bytes:
        """Write a control point value and wait for its indication."""
        queue = self._responses[key]
        while not queue.empty():
            queue.get_nowait()
        client = self._client()
        try:
            await client.write_gatt_char(uuid_, payload, response=True)
        except BleakError as error:
            refused = PumpSessionError(f"pump refused the {key} write: {error}")
            refused.att_error = error.args[0] if error.args and isinstance(error.args[0], int) else None  # type: ignore[attr-defined]
            raise refused from error
        try:
            return await asyncio.wait_for(queue.get(), self.config.response_timeout_s)
        except TimeoutError:
            raise PumpSessionError(f"no {key} response within {self.config.response_timeout_s} s") from None

    async def _status_reader(self, request: Any) -> Any:
        payload = ids.encode_status_reader_request(request, e2e_counter=self._counter("status_reader_tx"))
        raw = await self._request("status_reader", IDD_STATUS_READER_CONTROL_POINT, payload)
        return ids.decode_status_reader_response(raw, e2e=self.e2e, checker=self._checker("status_reader"), number_format="auto")

    # -- reading ------------------------------------------------------------------------------------------------
    async def read_status(self) -> PumpStatus:
        async with self._lock:
            client = self._client()
            status = self._decode_read("status", ids.decode_idd_status, await client.read_gatt_char(IDD_STATUS), number_format="auto")
            raw_annunciation = await client.read_gatt_char(IDD_ANNUNCIATION_STATUS)
            annunciation = self._decode_read("annunciation", ids.decode_idd_annunciation_status, raw_annunciation, status_octets="auto")
            basal = await self._status_reader(ids.GetActiveBasalRateDelivery())
            ids_response = await self._status_reader(ids.GetActiveBolusIds())
            boluses: list[ActiveBolus] = []
            for bolus_id in getattr(ids_response, "bolus_ids", ()):
                programmed = await self._status_reader(ids.GetActiveBolusDelivery(bolus_id, ids.BolusValueSelection.PROGRAMMED))
                remaining = await self._status_reader(ids.GetActiveBolusDelivery(bolus_id, ids.BolusValueSelection.REMAINING))
                if isinstance(programmed, ids.ActiveBolusDeliveryResponse) and isinstance(remaining, ids.ActiveBolusDeliveryResponse):
                    boluses.append(
                        ActiveBolus(bolus_id, programmed.bolus_type.name, programmed.fast_u + programmed.extended_u, remaining.fast_u + remaining.extended_u)
                    )
            iob = None
            if self.features and self.features.supports(ids.IddFeatureBit.INSULIN_ON_BOARD):
                iob_response = await self._status_reader(ids.GetInsulinOnBoard())
                iob = getattr(iob_response, "iob_u", None)
            delivered = await self._status_reader(ids.GetDeliveredInsulin())
            daily = await self._status_reader(ids.GetTotalDailyInsulinStatus())
        tbr = None
        if isinstance(basal, ids.ActiveBasalRateDeliveryResponse) and basal.tbr is not None:
            tbr = {
                "type": basal.tbr.tbr_type.name,
                "adjustment": basal.tbr.adjustment,
                "programmed_duration_min": basal.tbr.programmed_duration_min,
                "remaining_duration_min": basal.tbr.remaining_duration_min,
            }
        latest = annunciation.annunciation
        return PumpStatus(
            therapy_state=status.therapy_state.name,
            reservoir_u=status.reservoir_u,
            reservoir_attached=status.reservoir_attached,
            basal_rate_u_per_h=getattr(basal, "rate_u_per_h", math.nan),
            tbr=tbr,
            active_boluses=tuple(boluses),
            iob_u=iob,
            delivered_bolus_u=getattr(delivered, "bolus_u", math.nan),
            delivered_basal_u=getattr(delivered, "basal_u", math.nan),
            daily_total_u=getattr(daily, "total_u", None),
            annunciation=None if latest is None else {
                "instance_id": latest.instance_id, "type": latest.annunciation_type.name, "state": latest.state.name
            },
            e2e_protection=self.e2e,
        )

    async def read_history(self, from_sequence: int = 0) -> list[HistoryRecord]:
        """Every stored history event with sequence >= ``from_sequence``, once each, in sequence order.

        Lost, corrupted, duplicated or reordered History Data values are handled by asking the pump how many
        records there are and re-requesting from the first missing sequence number.
        """
        async with self._lock:
            events: dict[int, ids.HistoryEvent] = {}
            count_request = ids.RacpRequest(
                ids.RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, ids.RacpOperator.GREATER_OR_EQUAL, ids.RacpFilterType.SEQUENCE_NUMBER, from_sequence
            )
            count = await self._racp(count_request)
            expected = getattr(count, "count", None)
            if expected is None:
                raise PumpSessionError(f"pump answered {count} to a number-of-records request")
            next_missing = from_sequence
            for _ in range(self.config.max_history_rounds):
                if len(events) >= expected:
                    break
                self._history.clear()
                response = await self._racp(ids.RacpRequest.report_from(next_missing))
                if isinstance(response, ids.RacpResponseCode) and response.result == ids.RacpResult.NO_RECORDS_FOUND:
                    break
                for raw in self._history:
                    try:
                        event = ids.decode_history_data(raw, e2e=self.e2e, counter="auto", number_format="auto")
                    except DecodeError as error:
                        self.dropped_history_values += 1
                        logger.warning("dropped corrupted History Data value: %s", error)
                        continue
                    if event.sequence >= from_sequence:
                        events.setdefault(event.sequence, event)
                next_missing = _first_missing(events, from_sequence)
            if len(events) < expected:
                raise PumpSessionError(f"history incomplete: {len(events)} of {expected} events after {self.config.max_history_rounds} rounds")
        return [
            HistoryRecord(e.sequence, e.event_type.name, e.relative_offset_s, _jsonable(e.data))
            for e in sorted(events.values(), key=lambda e: e.sequence)
        ]

    async def _racp(self, request: ids.RacpRequest) -> Any:
        payload = ids.encode_racp_request(request, e2e_counter=self._counter("racp_tx"))
        try:
            raw = await self._request("racp", IDD_RECORD_ACCESS_CONTROL_POINT, payload)
        except PumpSessionError as error:
            if getattr(error, "att_error", None) == 0xFE:  # a previous procedure still runs: abort it, retry once
                await self._client().write_gatt_char(
                    IDD_RECORD_ACCESS_CONTROL_POINT, ids.encode_racp_request(ids.RacpRequest.abort(), e2e_counter=self._counter("racp_tx")), response=True
                )
                raw = await self._request("racp", IDD_RECORD_ACCESS_CONTROL_POINT, ids.encode_racp_request(request, e2e_counter=self._counter("racp_tx")))
            else:
                raise
        return ids.decode_racp_response(raw, e2e=self.e2e, checker=self._checker("racp"))

    # -- commanding ---------------------------------------------------------------------------------------------
    async def execute(self, command: ConfirmedCommand) -> CommandOutcome:
        """Send one confirmed command, at most once. Raises :class:`CommandRefusedError` before sending,
        :class:`OutcomeUnknownError` when the pump's answer is missing or untrustworthy."""
        if not isinstance(command, ConfirmedCommand):
            raise CommandRefusedError("only a ConfirmedCommand (a person's confirmation) can change insulin delivery")
        if command.token in self._used_tokens:
            raise CommandRefusedError("this confirmation was already used: confirm again for another dose")
        age_s = (datetime.now(timezone.utc) - command.confirmed_at).total_seconds()
        if not 0 <= age_s <= self.config.max_confirmation_age_s:
            raise CommandRefusedError(f"confirmation is {age_s:.0f} s old (limit {self.config.max_confirmation_age_s:.0f} s): confirm again")
        proposal = command.proposal
        request = await self._build_request(proposal)
        self._used_tokens.add(command.token)
        async with self._lock:
            payload = ids.encode_command_request(request, e2e_counter=self._counter("command_tx"))
            try:
                raw = await self._request("command", IDD_COMMAND_CONTROL_POINT, payload)
                response = ids.decode_command_response(raw, e2e=self.e2e, checker=self._checker("command"))
            except (PumpSessionError, DecodeError) as error:
                if proposal.action in ("fast_bolus", "extended_bolus"):
                    active = await self._active_bolus_ids_or_none()
                    raise OutcomeUnknownError(
                        f"{proposal.describe()}: no trustworthy answer ({error}); active boluses now {active}. Do NOT resend without checking.",
                        active,
                    ) from error
                raise PumpSessionError(f"{proposal.describe()}: {error}") from error
        bolus_id = getattr(response, "bolus_id", None)
        accepted = isinstance(response, (ids.SetBolusResponse, ids.CancelBolusResponse)) or (
            isinstance(response, ids.CommandResponseCode) and response.ok
        )
        text = response.result.name if isinstance(response, ids.CommandResponseCode) else type(response).__name__
        return CommandOutcome(proposal.action, proposal.describe(), accepted, text, bolus_id, command.confirmed_by, command.token)

    async def _active_bolus_ids_or_none(self) -> tuple[int, ...] | None:
        try:
            response = await self._status_reader(ids.GetActiveBolusIds())
        except (PumpSessionError, DecodeError, BleakError):
            return None
        return tuple(getattr(response, "bolus_ids", ())) if isinstance(response, ids.ActiveBolusIdsResponse) else None

    async def _build_request(self, proposal: DoseProposal) -> Any:
        features = self.features
        if features is None:
            raise CommandRefusedError("pump features unknown")

        def need(bit: ids.IddFeatureBit, what: str) -> None:
            if not features.supports(bit):
                raise CommandRefusedError(f"the pump does not support {what}")

        if proposal.action == "fast_bolus":
            need(ids.IddFeatureBit.FAST_BOLUS, "fast boluses")
            return ids.SetBolus(ids.BolusType.FAST, proposal.fast_u)
        if proposal.action == "extended_bolus":
            need(ids.IddFeatureBit.EXTENDED_BOLUS, "extended boluses")
            kind = ids.BolusType.MULTIWAVE if proposal.fast_u > 0 else ids.BolusType.EXTENDED
            return ids.SetBolus(kind, proposal.fast_u, proposal.extended_u, proposal.duration_min)
        if proposal.action == "tbr":
            assert proposal.tbr_type is not None and proposal.tbr_adjustment is not None
            need(ids.IddFeatureBit.TBR_ABSOLUTE if proposal.tbr_type == ids.TbrType.ABSOLUTE else ids.IddFeatureBit.TBR_RELATIVE, f"{proposal.tbr_type.name.lower()} temporary basal rates")
            return ids.SetTbr(proposal.tbr_type, proposal.tbr_adjustment, proposal.duration_min)
        if proposal.action == "cancel_tbr":
            return ids.CancelTbr()
        bolus_id = proposal.bolus_id
        if bolus_id is None:
            active = await self._active_bolus_ids_or_none()
            if not active:
                raise CommandRefusedError("no active bolus to cancel")
            bolus_id = active[-1]
        return ids.CancelBolus(bolus_id)


def _first_missing(events: dict[int, Any], start: int) -> int:
    sequence = start
    while sequence in events:
        sequence += 1
    return sequence


OnStatus = Callable[[PumpStatus], None]
