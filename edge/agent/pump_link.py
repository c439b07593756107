"""The hub's side of the pump: poll status, import delivered insulin from history, execute confirmed doses.

The pump's history is the source of truth for insulin: a bolus the person confirmed on the hub is NOT recorded
when the command is accepted, but when the pump's history reports it delivered (keyed by the pump's sequence
number, so it is counted exactly once however often history is read, and boluses given on the pump itself are
counted too). After a command the history is read at once.

History times: IDS events carry seconds relative to the latest Reference Time event; without one the receipt
time is used (said in the event's source).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from firmware_bridge.radio import Radio
from firmware_bridge.sessions.pump_session import (
    CommandRefusedError,
    ConfirmedCommand,
    HistoryRecord,
    OutcomeUnknownError,
    PumpSession,
    PumpSessionError,
)

from ..store import InsulinEvent
from .web import HubRuntime

logger = logging.getLogger(__name__)

POLL_EVERY_S = 30.0
BACKOFF_MAX_S = 60.0


def _reference_ms(data: dict[str, Any]) -> int | None:
    try:
        if not data.get("year"):
            return None
        local = datetime(int(data["year"]), int(data["month"]), int(data["day"]), int(data["hour"]),
                         int(data["minute"]), int(data["second"]))
        zone = data.get("time_zone_quarter_hours", 0)
        zone = 0 if zone in (None, -128) else int(zone)
        return int(local.replace(tzinfo=timezone(timedelta(minutes=15 * zone))).astimezone(UTC).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return None


class HistoryImporter:
    """Turns IDS history records into the hub's insulin events (pure; holds the reference time)."""

    def __init__(self) -> None:
        self.reference_ms: int | None = None
        self.next_sequence = 0

    def events(self, records: list[HistoryRecord], now_ms: int) -> list[InsulinEvent]:
        out: list[InsulinEvent] = []
        for record in records:
            self.next_sequence = max(self.next_sequence, record.sequence + 1)
            kind = record.event_type
            if kind == "REFERENCE_TIME":
                self.reference_ms = _reference_ms(record.data) or self.reference_ms
                continue
            at_ms = now_ms if self.reference_ms is None else self.reference_ms + record.relative_offset_s * 1000
            source = "pump-history" if self.reference_ms is not None else "pump-history (receipt time)"
            data = record.data
            if kind == "BOLUS_DELIVERED_PART_1_OF_2":
                units = float(data.get("fast_u", 0.0)) + float(data.get("extended_u", 0.0))
                if units > 0:
                    out.append(InsulinEvent(at_ms, "bolus", insulin_u=units, pump_sequence=record.sequence,
                                            source=source))
            elif kind == "TBR_ADJUSTMENT_STARTED" and str(data.get("tbr_type", "")).upper().startswith("ABSOLUTE"):
                out.append(InsulinEvent(at_ms, "temp_basal", rate_u_per_h=float(data.get("adjustment", 0.0)),
                                        duration_min=float(data.get("duration_min", 30)),
                                        pump_sequence=record.sequence, source=source))
            elif kind == "DELIVERED_BASAL_RATE_CHANGED":
                out.append(InsulinEvent(at_ms, "basal", rate_u_per_h=float(data.get("new_rate_u_per_h", 0.0)),
                                        pump_sequence=record.sequence, source=source))
        return out


async def follow_pump(radio: Radio, runtime: HubRuntime, *, now_ms: Callable[[], int]) -> None:
    importer = HistoryImporter()
    backoff_s = 1.0
    while True:
        try:
            async with PumpSession(radio) as pump:
                runtime.devices["pump"] = "connected"
                backoff_s = 1.0
                one_at_a_time = asyncio.Lock()  # polling and a confirmed dose never share the control points

                async def execute(payload: dict[str, Any]) -> dict[str, Any]:
                    async with one_at_a_time:
                        return await _execute(pump, payload, importer, runtime, now_ms)

                runtime.pump_executor = execute
                while True:
                    async with one_at_a_time:
                        await _poll(pump, importer, runtime, now_ms)
                    await asyncio.sleep(POLL_EVERY_S)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # BLE and protocol errors: keep the hub alive, reconnect later
            logger.info("pump link: %s: %s", type(error).__name__, error)
        runtime.pump_executor = None
        runtime.devices["pump"] = "searching"
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)


async def _poll(pump: PumpSession, importer: HistoryImporter, runtime: HubRuntime,
                now_ms: Callable[[], int]) -> None:
    status = await pump.read_status()
    occlusion = bool(status.annunciation and "OCCLUSION" in str(status.annunciation.get("type", "")).upper())
    runtime.pipeline.note_pump_status(status.reservoir_u, occlusion)
    records = await pump.read_history(importer.next_sequence)
    for event in importer.events(records, now_ms()):
        runtime.pipeline.on_insulin(event)


async def _execute(pump: PumpSession, payload: dict[str, Any], importer: HistoryImporter, runtime: HubRuntime,
                   now_ms: Callable[[], int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    try:
        if payload.get("bolus_u", 0) > 0:
            command = ConfirmedCommand.fast_bolus(payload["bolus_u"], confirmed_by="patient (hub)",
                                                  reason=str(payload.get("summary", ""))[:60])
            results["bolus"] = (await pump.execute(command)).as_json_dict()
        rate = payload.get("temp_basal_u_per_h")
        if rate is not None:
            command = ConfirmedCommand.temporary_basal(rate_u_per_h=rate,
                                                       duration_min=int(payload.get("temp_basal_duration_min", 30)),
                                                       confirmed_by="patient (hub)")
            results["temp_basal"] = (await pump.execute(command)).as_json_dict()
    except (CommandRefusedError, OutcomeUnknownError, PumpSessionError) as error:
        results["error"] = f"{type(error).__name__}: {error}"
    results["delivered"] = "error" not in results
    try:
        await _poll(pump, importer, runtime, now_ms)  # the history is the truth of what was delivered
    except Exception as error:  # the dose is sent; reading it back can wait for the next poll
        results["history_refresh"] = f"deferred ({type(error).__name__})"
    return results
