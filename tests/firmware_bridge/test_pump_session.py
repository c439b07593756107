"""Hub pump session against the emulated IDS pump, in process, through the plain bleak API."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from firmware_bridge.codec import ids
from firmware_bridge.sessions.pump_session import (
    CommandRefusedError,
    ConfirmedCommand,
    DoseProposal,
    OutcomeUnknownError,
    PumpSession,
    PumpSessionConfig,
)
from hardware_sim.air.inprocess import InProcessAir
from hardware_sim.clock import SimClock
from hardware_sim.devices.glucose_source import InsulinLedger
from hardware_sim.devices.ids_pump import IdsPumpPeripheral
from hardware_sim.devices.pump_model import PumpModel
from hardware_sim.faults import FaultPlan

pytestmark = pytest.mark.timeout(60)

DIALECTS = {
    "spec-e2e": ids.IdsDialect(e2e=True),
    "spec-no-e2e": ids.IdsDialect(e2e=False),
    "float-bleidssim-like": ids.IdsDialect(e2e=True, number_format="float", racp_response_operator=False, history_counter=True, annunciation_status_octets=2),
}


def run(scenario: Any, pump: IdsPumpPeripheral, clock: SimClock, plan: FaultPlan | None = None) -> Any:
    async def main() -> Any:
        async with InProcessAir([pump], clock, plan) as air, air.radio() as radio:
            async with PumpSession(radio, PumpSessionConfig(response_timeout_s=1.0)) as session:
                result = await scenario(session)
        await pump.stop()
        return result

    return asyncio.run(asyncio.wait_for(main(), 40))


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_confirmed_bolus_and_tbr_show_in_status_and_history(dialect_name: str) -> None:
    clock = SimClock(manual=True)
    ledger = InsulinLedger()
    pump = IdsPumpPeripheral(PumpModel(sink=ledger), clock, dialect=DIALECTS[dialect_name])

    async def scenario(session: PumpSession) -> Any:
        before = await session.read_status()
        bolus = await session.execute(ConfirmedCommand.fast_bolus(2.5, confirmed_by="test person"))
        tbr = await session.execute(ConfirmedCommand.temporary_basal(percent=150, duration_min=60, confirmed_by="test person"))
        await clock.step_min(1)
        during = await session.read_status()
        await clock.step_min(120)
        after = await session.read_status()
        history = await session.read_history()
        return before, bolus, tbr, during, after, history

    before, bolus, tbr, during, after, history = run(scenario, pump, clock)
    assert before.therapy_state == "RUN" and before.reservoir_u == 200 and before.active_boluses == ()
    assert before.e2e_protection is DIALECTS[dialect_name].e2e
    assert bolus.accepted and bolus.bolus_id == 1 and tbr.accepted
    assert during.active_boluses[0].programmed_u == 2.5 and during.active_boluses[0].remaining_u == pytest.approx(1.0)
    assert during.tbr == {"type": "RELATIVE", "adjustment": 1.5, "programmed_duration_min": 60, "remaining_duration_min": 59}
    assert after.tbr is None and after.active_boluses == ()
    assert after.delivered_bolus_u == pytest.approx(2.5)
    assert after.delivered_bolus_u + after.delivered_basal_u == pytest.approx(ledger.total_u, abs=0.02)
    assert after.reservoir_u == pytest.approx(200 - ledger.total_u, abs=0.1)
    assert 0 < after.iob_u < 2.5
    assert [h.sequence for h in history] == list(range(len(pump.model.history)))
    kinds = [h.event_type for h in history]
    assert "BOLUS_PROGRAMMED_PART_1_OF_2" in kinds and "TBR_ADJUSTMENT_ENDED" in kinds


def test_history_survives_corrupted_duplicated_truncated_and_reordered_values() -> None:
    clock = SimClock(manual=True)
    model = PumpModel()
    for minute in range(0, 600, 20):
        model.set_bolus(ids.BolusType.FAST, 0.5, 0.0, 0, minute)
        model.set_tbr(ids.TbrType.ABSOLUTE, 1.5, 10, minute + 5)
    model.advance_to(600)
    plan = FaultPlan(corrupt_crc=0.15, duplicate=0.15, truncate=0.1, out_of_order=0.1, seed=3)
    pump = IdsPumpPeripheral(model, clock, plan, dialect=ids.IdsDialect(e2e=True))

    async def scenario(session: PumpSession) -> Any:
        return await session.read_history(), session.dropped_history_values

    history, dropped = run(scenario, pump, clock, plan)
    assert [h.sequence for h in history] == list(range(len(model.history)))
    assert dropped > 0


def test_dosing_needs_a_persons_single_use_fresh_confirmation() -> None:
    clock = SimClock(manual=True)
    pump = IdsPumpPeripheral(PumpModel(), clock)
    command = ConfirmedCommand.fast_bolus(1.0, confirmed_by="alice")
    stale = DoseProposal("fast_bolus", fast_u=1.0).confirm("alice", at=datetime.now(timezone.utc) - timedelta(hours=1))

    async def scenario(session: PumpSession) -> Any:
        outcomes = []
        for attempt in (DoseProposal("fast_bolus", fast_u=1.0), command, command, stale):
            try:
                outcomes.append((await session.execute(attempt)).accepted)  # type: ignore[arg-type]
            except CommandRefusedError as error:
                outcomes.append(str(error))
        return outcomes

    outcomes = run(scenario, pump, clock)
    assert "ConfirmedCommand" in outcomes[0]
    assert outcomes[1] is True
    assert "already used" in outcomes[2]
    assert "old" in outcomes[3]
    assert len(pump.model.boluses) == 1
    with pytest.raises(CommandRefusedError):
        ConfirmedCommand(DoseProposal("fast_bolus", fast_u=1.0), "mallory", datetime.now(timezone.utc), "t", object())
    with pytest.raises(CommandRefusedError):
        DoseProposal("fast_bolus", fast_u=1.0).confirm("  ")
    with pytest.raises(ValueError):
        DoseProposal("fast_bolus", fast_u=float("nan"))


def test_lost_bolus_response_is_an_unknown_outcome_and_is_never_resent() -> None:
    clock = SimClock(manual=True)

    class MutePump(IdsPumpPeripheral):
        def _spawn_indicate(self, device: Any, connection: Any, gatt: Any, key: str, value: Any) -> None:
            if key != "command":
                super()._spawn_indicate(device, connection, gatt, key, value)

    pump = MutePump(PumpModel(), clock)

    async def scenario(session: PumpSession) -> Any:
        with pytest.raises(OutcomeUnknownError) as unknown:
            await session.execute(ConfirmedCommand.fast_bolus(2.0, confirmed_by="bob"))
        return unknown.value

    error = run(scenario, pump, clock)
    assert error.active_bolus_ids == (1,)  # the pump did start it: resending would have doubled the dose
    assert len(pump.model.boluses) == 1 and pump.stats.commands == 1


def test_occlusion_annunciation_and_stopped_therapy_are_reported() -> None:
    clock = SimClock(manual=True)
    pump = IdsPumpPeripheral(PumpModel(), clock, dialect=DIALECTS["float-bleidssim-like"])

    async def scenario(session: PumpSession) -> Any:
        pump.model.inject_occlusion(clock.now_min())
        status = await session.read_status()
        refused = await session.execute(ConfirmedCommand.fast_bolus(1.0, confirmed_by="carol"))
        return status, refused

    status, refused = run(scenario, pump, clock)
    assert status.therapy_state == "STOP"
    assert status.annunciation == {"instance_id": 1, "type": "OCCLUSION_DETECTED", "state": "PENDING"}
    assert not refused.accepted and refused.response == "PROCEDURE_NOT_APPLICABLE"


def test_indicated_changes_keep_e2e_counters_in_sequence_for_later_reads() -> None:
    clock = SimClock(manual=True)
    pump = IdsPumpPeripheral(PumpModel(), clock, dialect=ids.IdsDialect(e2e=True))

    async def scenario(session: PumpSession) -> Any:
        await session.read_status()
        pump.model.inject_occlusion(clock.now_min())
        await clock.step_min(2)  # the pump's clock loop indicates Status Changed and Annunciation Status
        for _ in range(20):
            if session.last_annunciation is not None:
                break
            await asyncio.sleep(0.01)
        return session.last_status_changed, session.last_annunciation, await session.read_status()

    changed, indicated, status = run(scenario, pump, clock)
    assert changed is not None and changed.flags & ids.StatusChangedFlag.ANNUNCIATION_STATUS_CHANGED
    assert indicated is not None and indicated.annunciation.annunciation_type == ids.AnnunciationType.OCCLUSION_DETECTED
    assert status.therapy_state == "STOP" and status.annunciation["type"] == "OCCLUSION_DETECTED"


def test_outcome_json_is_plain() -> None:
    proposal = DoseProposal("tbr", duration_min=30, tbr_type=ids.TbrType.ABSOLUTE, tbr_adjustment=0.5)
    assert proposal.describe() == "temporary basal 0.5 U/h for 30 min"
    assert dataclasses.replace(proposal, tbr_type=ids.TbrType.RELATIVE).describe() == "temporary basal 50 % for 30 min"
