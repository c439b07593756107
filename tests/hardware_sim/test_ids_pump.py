"""Emulated insulin pump: the state model alone, then its GATT front end through the real bleak API."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from hypothesis import given, settings
from hypothesis import strategies as st
from bleak.exc import BleakError

from firmware_bridge.codec import ids
from firmware_bridge.codec.uuids import (
    IDD_COMMAND_CONTROL_POINT,
    IDD_FEATURES,
    IDD_HISTORY_DATA,
    IDD_RECORD_ACCESS_CONTROL_POINT,
    IDD_STATUS,
    IDD_STATUS_READER_CONTROL_POINT,
    IDS_SERVICE,
)
from hardware_sim.air.inprocess import InProcessAir
from hardware_sim.clock import SimClock
from hardware_sim.devices.glucose_source import InsulinLedger
from hardware_sim.devices.ids_pump import IdsPumpPeripheral
from hardware_sim.devices.pump_model import PumpModel

pytestmark = pytest.mark.timeout(60)
R = ids.ResponseCode


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return wrapper


# -- state model ------------------------------------------------------------------------------------------------
def test_basal_profile_and_tbr_deliver_to_the_sink_and_leave_the_reservoir() -> None:
    ledger = InsulinLedger()
    pump = PumpModel(sink=ledger, basal_profile=((0, 1.0), (60, 2.0)))
    pump.advance_to(120)
    assert pump.delivered_basal_u == pytest.approx(1.0 + 2.0)
    assert pump.set_tbr(ids.TbrType.RELATIVE, 0.5, 30, 120) == R.SUCCESS
    pump.advance_to(180)  # 30 min at 1 U/h then 30 min at 2 U/h
    assert pump.delivered_basal_u == pytest.approx(3.0 + 0.5 + 1.0)
    assert pump.tbr is None
    assert ledger.total_u == pytest.approx(pump.delivered_basal_u)
    assert pump.reservoir_u == pytest.approx(200 - ledger.total_u)
    ended = [e for e in pump.history if e.event_type == ids.HistoryEventType.TBR_ADJUSTMENT_ENDED]
    assert ended and ended[0].data.effective_duration_min == 30


def test_fast_and_extended_bolus_delivery_iob_and_cancel() -> None:
    pump = PumpModel(basal_profile=((0, 0.0),))
    code, bolus_id = pump.set_bolus(ids.BolusType.FAST, 3.0, 0.0, 0, 0)
    assert code == R.SUCCESS and bolus_id == 1
    pump.advance_to(1)
    assert pump.delivered_bolus_u == pytest.approx(1.5)  # 1.5 U/min
    pump.advance_to(5)
    assert pump.delivered_bolus_u == pytest.approx(3.0) and not pump.active_boluses()
    assert 2.5 < pump.insulin_on_board_u(30) < 3.0 and pump.insulin_on_board_u(6 * 60 + 5) == pytest.approx(0)
    code, extended_id = pump.set_bolus(ids.BolusType.EXTENDED, 0.0, 2.0, 60, 10)
    assert code == R.SUCCESS
    pump.advance_to(40)
    assert pump.boluses[extended_id].delivered_extended_u == pytest.approx(1.0)
    assert pump.cancel_bolus(extended_id, 40) == R.SUCCESS
    pump.advance_to(100)
    assert pump.delivered_bolus_u == pytest.approx(4.0)
    assert pump.cancel_bolus(extended_id, 100) == R.PROCEDURE_NOT_APPLICABLE


@pytest.mark.parametrize(
    "args, expected",
    [
        ((ids.BolusType.FAST, 0.0, 0.0, 0), R.PARAMETER_OUT_OF_RANGE),
        ((ids.BolusType.FAST, 30.0, 0.0, 0), R.PARAMETER_OUT_OF_RANGE),
        ((ids.BolusType.FAST, float("nan"), 0.0, 0), R.PARAMETER_OUT_OF_RANGE),
        ((ids.BolusType.FAST, 1.0, 1.0, 30), R.INVALID_OPERAND),
        ((ids.BolusType.EXTENDED, 0.0, 1.0, 0), R.INVALID_OPERAND),
    ],
)
def test_invalid_boluses_are_refused(args: tuple[Any, ...], expected: ids.ResponseCode) -> None:
    pump = PumpModel()
    assert pump.set_bolus(*args, sim_minute=0) == (expected, None)
    assert pump.delivered_bolus_u == 0 and len(pump.history) == 1  # only the reference time


def test_occlusion_and_empty_reservoir_stop_delivery_with_annunciations() -> None:
    ledger = InsulinLedger()
    pump = PumpModel(sink=ledger, reservoir_u=22.0, basal_profile=((0, 6.0),))
    pump.set_bolus(ids.BolusType.FAST, 5.0, 0.0, 0, 0)
    pump.inject_occlusion(1)
    assert pump.therapy_state == ids.TherapyControlState.STOP
    assert pump.latest_annunciation[1] == ids.AnnunciationType.OCCLUSION_DETECTED
    delivered = ledger.total_u
    pump.advance_to(60)
    assert ledger.total_u == delivered  # nothing while occluded
    assert pump.set_bolus(ids.BolusType.FAST, 1.0, 0.0, 0, 60)[0] == R.PROCEDURE_NOT_APPLICABLE
    pump.resolve_occlusion(60)
    pump.advance_to(60 + 4 * 60)
    types = [a[1] for a in pump.annunciations]
    assert ids.AnnunciationType.RESERVOIR_LOW in types and types[-1] == ids.AnnunciationType.RESERVOIR_EMPTY
    assert pump.reservoir_u == pytest.approx(0) and ledger.total_u == pytest.approx(22.0)
    assert pump.therapy_state == ids.TherapyControlState.STOP
    assert pump.set_tbr(ids.TbrType.ABSOLUTE, 1.0, 30, 400) == R.PROCEDURE_NOT_APPLICABLE


def test_history_sequence_numbers_increase_and_every_event_encodes() -> None:
    pump = PumpModel()
    pump.set_bolus(ids.BolusType.FAST, 2.0, 0.0, 0, 5)
    pump.set_tbr(ids.TbrType.ABSOLUTE, 2.0, 45, 10)
    pump.advance_to(26 * 60)  # crosses a reference time re-anchor
    assert [e.sequence for e in pump.history] == list(range(len(pump.history)))
    assert sum(e.event_type == ids.HistoryEventType.REFERENCE_TIME for e in pump.history) >= 3
    for event in pump.history:
        assert ids.decode_history_data(ids.encode_history_data(event, e2e=True), e2e=True) == event


_commands = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=600),  # sim minute offset of the command
        st.sampled_from(["fast", "extended", "tbr_abs", "tbr_rel", "cancel_bolus", "cancel_tbr", "occlusion", "resolve"]),
        st.floats(min_value=0.0, max_value=30.0, allow_nan=False),
        st.integers(min_value=0, max_value=300),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(commands=_commands, reservoir_u=st.floats(min_value=0.0, max_value=60.0))
def test_insulin_is_conserved_and_never_delivered_while_stopped(commands: list[tuple[int, str, float, int]], reservoir_u: float) -> None:
    """Whatever is commanded: reservoir loss == delivered (basal + bolus) == what the sink received, the
    reservoir never goes negative, and nothing is delivered while therapy is stopped."""
    ledger = InsulinLedger()
    pump = PumpModel(sink=ledger, reservoir_u=reservoir_u)
    for minute, action, amount, duration in sorted(commands, key=lambda c: c[0]):
        minute = max(minute, pump.now_min)
        if action == "fast":
            pump.set_bolus(ids.BolusType.FAST, amount, 0.0, 0, minute)
        elif action == "extended":
            pump.set_bolus(ids.BolusType.EXTENDED, 0.0, amount, duration, minute)
        elif action == "tbr_abs":
            pump.set_tbr(ids.TbrType.ABSOLUTE, amount, duration, minute)
        elif action == "tbr_rel":
            pump.set_tbr(ids.TbrType.RELATIVE, amount / 10, duration, minute)
        elif action == "cancel_bolus" and pump.active_boluses():
            pump.cancel_bolus(pump.active_boluses()[0].bolus_id, minute)
        elif action == "cancel_tbr":
            pump.cancel_tbr(minute)
        elif action == "occlusion":
            pump.inject_occlusion(minute)
            stopped_at = ledger.total_u
            pump.advance_to(minute + 30)
            assert ledger.total_u == stopped_at
        elif action == "resolve":
            pump.resolve_occlusion(minute)
    pump.advance_to(pump.now_min + 8 * 60)
    delivered = pump.delivered_basal_u + pump.delivered_bolus_u
    assert pump.reservoir_u >= 0
    assert delivered == pytest.approx(ledger.total_u, abs=1e-6)
    assert reservoir_u - pump.reservoir_u == pytest.approx(delivered, abs=1e-6)
    assert all(b.delivered_u <= b.fast_u + b.extended_u + 1e-9 for b in pump.boluses.values())
    assert [e.sequence for e in pump.history] == list(range(len(pump.history)))


# -- GATT front end ---------------------------------------------------------------------------------------------
class Hub:
    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.indications: dict[str, asyncio.Queue[bytes]] = {}
        self.history: list[bytes] = []

    async def subscribe(self) -> None:
        for key, uuid_ in (
            ("status_reader", IDD_STATUS_READER_CONTROL_POINT),
            ("command", IDD_COMMAND_CONTROL_POINT),
            ("racp", IDD_RECORD_ACCESS_CONTROL_POINT),
        ):
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            self.indications[key] = queue
            await self.client.start_notify(uuid_, lambda _c, d, q=queue: q.put_nowait(bytes(d)))
        await self.client.start_notify(IDD_HISTORY_DATA, lambda _c, d: self.history.append(bytes(d)))

    async def write(self, key: str, uuid_: str, payload: bytes) -> bytes:
        await self.client.write_gatt_char(uuid_, payload, response=True)
        return await asyncio.wait_for(self.indications[key].get(), 5)


@asynccontextmanager
async def connected(pump: IdsPumpPeripheral, clock: SimClock) -> AsyncIterator[Hub]:
    async with InProcessAir([pump], clock) as air, air.radio() as radio:
        device = await BleakScanner.find_device_by_filter(
            lambda d, adv: IDS_SERVICE in adv.service_uuids, timeout=5, **radio.scanner_kwargs()
        )
        assert device is not None
        async with BleakClient(device, **radio.client_kwargs()) as client:
            yield Hub(client)
    await pump.stop()


@run_async
async def test_e2e_counters_and_crc_on_every_value_both_ways() -> None:
    clock = SimClock(manual=True)
    pump = IdsPumpPeripheral(PumpModel(), clock, dialect=ids.IdsDialect(e2e=True))
    async with connected(pump, clock) as hub:
        checker = ids.E2ECounterChecker("features")
        features = ids.decode_idd_features(await hub.client.read_gatt_char(IDD_FEATURES), checker=checker)
        assert features.e2e_protection and features.supports(ids.IddFeatureBit.FAST_BOLUS)
        status_checker = ids.E2ECounterChecker("status")  # expects 1, then 2
        for _ in range(2):
            status = ids.decode_idd_status(await hub.client.read_gatt_char(IDD_STATUS), e2e=True, checker=status_checker)
        assert status.therapy_state == ids.TherapyControlState.RUN and status.reservoir_u == 200
        await hub.subscribe()
        bolus = ids.encode_command_request(ids.SetBolus(ids.BolusType.FAST, 1.5), e2e_counter=1)
        response = ids.decode_command_response(await hub.write("command", IDD_COMMAND_CONTROL_POINT, bolus), e2e=True)
        assert response == ids.SetBolusResponse(1)
        # the same counter again is a replay: refused, nothing delivered twice
        with pytest.raises(BleakError) as replay:
            await hub.client.write_gatt_char(IDD_COMMAND_CONTROL_POINT, bolus, response=True)
        assert replay.value.args[0] == 0x82
        corrupted = bytearray(ids.encode_command_request(ids.SetBolus(ids.BolusType.FAST, 1.5), e2e_counter=2))
        corrupted[-1] ^= 0x40
        with pytest.raises(BleakError) as bad_crc:
            await hub.client.write_gatt_char(IDD_COMMAND_CONTROL_POINT, bytes(corrupted), response=True)
        assert bad_crc.value.args[0] == 0x81
        assert len(pump.model.boluses) == 1


@run_async
async def test_status_reader_and_commands_without_e2e() -> None:
    clock = SimClock(manual=True)
    pump = IdsPumpPeripheral(PumpModel(), clock, dialect=ids.IdsDialect(e2e=False))
    async with connected(pump, clock) as hub:
        await hub.subscribe()

        async def status_reader(request: Any) -> Any:
            raw = await hub.write("status_reader", IDD_STATUS_READER_CONTROL_POINT, ids.encode_status_reader_request(request))
            return ids.decode_status_reader_response(raw)

        tbr = ids.encode_command_request(ids.SetTbr.absolute(2.0, 60))
        assert ids.decode_command_response(await hub.write("command", IDD_COMMAND_CONTROL_POINT, tbr)) == ids.CommandResponseCode(
            ids.CommandOpcode.SET_TBR_ADJUSTMENT, R.SUCCESS
        )
        await clock.step_min(30)
        basal = await status_reader(ids.GetActiveBasalRateDelivery())
        assert basal.tbr is not None and basal.tbr.adjustment == 2.0 and basal.tbr.remaining_duration_min == 30
        delivered = await status_reader(ids.GetDeliveredInsulin())
        assert delivered.basal_u == pytest.approx(1.0, abs=0.05)
        too_much = ids.encode_command_request(ids.SetBolus(ids.BolusType.FAST, 30.0))
        assert ids.decode_command_response(await hub.write("command", IDD_COMMAND_CONTROL_POINT, too_much)) == ids.CommandResponseCode(
            ids.CommandOpcode.SET_BOLUS, R.PARAMETER_OUT_OF_RANGE
        )
        # an op code that is not a Hamming code gets no answer at all
        await hub.client.write_gatt_char(IDD_COMMAND_CONTROL_POINT, bytes([0x01, 0x02]), response=True)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(hub.indications["command"].get(), 0.3)
        assert pump.stats.ignored_writes == 1


@pytest.mark.parametrize("dialect", [ids.IdsDialect(e2e=True), ids.IdsDialect(e2e=True, racp_response_operator=False, history_counter=True, number_format="float")])
@run_async
async def test_history_by_racp_then_response(dialect: ids.IdsDialect) -> None:
    clock = SimClock(manual=True)
    model = PumpModel()
    model.set_bolus(ids.BolusType.FAST, 2.0, 0.0, 0, 0)
    pump = IdsPumpPeripheral(model, clock, dialect=dialect)
    async with connected(pump, clock) as hub:
        await hub.subscribe()
        await clock.step_min(10)
        raw = await hub.write("racp", IDD_RECORD_ACCESS_CONTROL_POINT, ids.encode_racp_request(ids.RacpRequest.report_all(), e2e_counter=1))
        assert ids.decode_racp_response(raw, e2e=True) == ids.RacpResponseCode(ids.RacpOpcode.REPORT_STORED_RECORDS, ids.RacpResult.SUCCESS)
        events = [ids.decode_history_data(h, e2e=True, counter="auto", number_format="auto") for h in hub.history]
        assert [e.sequence for e in events] == list(range(len(model.history)))
        assert events == model.history
