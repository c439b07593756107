"""``glucotwin ble``: talk to a CGM sensor or an insulin pump over BLE from the command line.

A thin shell over :mod:`firmware_bridge.sessions`::

    glucotwin ble readings [--transport SPEC] [--count N] [--json]
    glucotwin ble pump [--transport SPEC] status|history [--json]
    glucotwin ble pump [--transport SPEC] bolus UNITS --confirm
    glucotwin ble pump [--transport SPEC] tbr (--percent P | --rate U_PER_H) --duration-min M --confirm

``--transport`` is a radio spec (:meth:`firmware_bridge.radio.Radio.from_spec`): none for the platform's
Bluetooth (BlueZ on a Pi), ``tcp-client:127.0.0.1:PORT`` for the simulator (``glucotwin sim serve``),
``usb:0`` for a dongle driven by bumble. Dosing commands are refused without ``--confirm``: the person at the
keyboard confirms, the hub never doses on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ble", help="read a CGM sensor / talk to an insulin pump over BLE")
    commands = parser.add_subparsers(dest="ble_command", metavar="SUBCOMMAND")

    readings = commands.add_parser("readings", help="backfill and follow CGM readings (exactly once, in order)")
    _common(readings)
    readings.add_argument("--count", type=int, default=None, help="exit after N readings (default: follow forever)")
    readings.add_argument("--scan-timeout", type=float, default=10.0, help="seconds per scan attempt")
    readings.add_argument(
        "--annunciation-order",
        choices=["spec", "nordic"],
        default="spec",
        help="order of the annunciation octets: spec (Status, Cal/Temp, Warning) or nordic (nRF5 SDK, the reverse)",
    )
    readings.set_defaults(handler=_readings_handler)

    pump = commands.add_parser("pump", help="insulin pump (IDS): status, history, confirmed bolus / temporary basal")
    _common(pump)
    actions = pump.add_subparsers(dest="pump_command", metavar="ACTION")
    actions.add_parser("status", help="therapy state, reservoir, active basal, IOB, active bolus")
    history = actions.add_parser("history", help="history events (IDD RACP)")
    history.add_argument("--limit", type=int, default=None, help="only the last N events")
    bolus = actions.add_parser("bolus", help="deliver a fast bolus (needs --confirm)")
    bolus.add_argument("units", type=float, help="bolus amount in U")
    bolus.add_argument("--confirm", action="store_true", help="I, a person, confirm this dose")
    tbr = actions.add_parser("tbr", help="set a temporary basal rate (needs --confirm)")
    rate = tbr.add_mutually_exclusive_group(required=True)
    rate.add_argument("--percent", type=float, help="relative TBR in percent of the programmed basal")
    rate.add_argument("--rate", type=float, dest="rate_u_per_h", help="absolute TBR in U/h")
    tbr.add_argument("--duration-min", type=int, required=True)
    tbr.add_argument("--confirm", action="store_true", help="I, a person, confirm this change")
    cancel = actions.add_parser("cancel", help="cancel the active bolus or temporary basal (needs --confirm)")
    cancel.add_argument("what", choices=["bolus", "tbr"])
    cancel.add_argument("--confirm", action="store_true")
    pump.set_defaults(handler=_pump_handler)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", default=None, help="radio spec: none = platform Bluetooth, tcp-client:HOST:PORT, usb:0")
    parser.add_argument("--mtu", type=int, default=247, help="ATT MTU to request (23..517)")
    parser.add_argument("--address", default=None, help="only this device address")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 1)")
    parser.add_argument("--verbose", "-v", action="store_true")


def _logging(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr)


# -- readings ---------------------------------------------------------------------------------------------------
def format_reading(reading: Any) -> str:
    trend = "" if reading.trend_mg_dl_min is None else f"  trend {reading.trend_mg_dl_min:+.1f} mg/dL/min"
    flags = f"  [{', '.join(sorted(reading.annunciations))}]" if reading.annunciations else ""
    return f"offset {reading.time_offset_min:5d} min  glucose {reading.glucose_mg_dl:5.0f} mg/dL{trend}{flags}  ({reading.via})"


async def follow_readings(args: argparse.Namespace) -> int:
    from firmware_bridge.radio import Radio
    from firmware_bridge.sessions.cgm_session import CgmSession, CgmSessionConfig

    from firmware_bridge.codec.cgms import AnnunciationOrder

    order = AnnunciationOrder.WARNING_CAL_TEMP_STATUS if args.annunciation_order == "nordic" else AnnunciationOrder.SPEC
    config = CgmSessionConfig(address=args.address, scan_timeout_s=args.scan_timeout, backoff_max_s=5.0, annunciation_order=order)
    from firmware_bridge.errors import BridgeError

    count = 0
    async with Radio.from_spec(args.transport, requested_mtu=args.mtu) as radio:
        session = CgmSession(radio, config)
        try:
            async with asyncio.timeout(args.timeout):
                async for reading in session.readings():
                    line = json.dumps(reading.as_json_dict()) if args.json else format_reading(reading)
                    print(line, flush=True)
                    count += 1
                    if args.count is not None and count >= args.count:
                        break
        except TimeoutError:
            last = session.stats.last_error or "none (connected, waiting for readings)"
            raise BridgeError(f"timed out after {args.timeout} s with {count} reading(s); last link error: {last}") from None
    return 0


def _readings_handler(args: argparse.Namespace) -> int:
    _logging(args)
    if args.count is not None and args.count < 1:
        print("glucotwin ble readings: --count must be >= 1", file=sys.stderr)
        return 2
    return _run(follow_readings(args), None, "readings")  # follow_readings applies --timeout itself


def _run(coroutine: Any, timeout_s: float | None, what: str) -> int:
    from firmware_bridge.errors import BridgeError

    async def bounded() -> int:
        return int(await asyncio.wait_for(coroutine, timeout_s))

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        print(f"glucotwin ble {what}: timed out after {timeout_s} s", file=sys.stderr)
        return 1
    except BridgeError as error:
        print(f"glucotwin ble {what}: {error}", file=sys.stderr)
        return 1


# -- pump -------------------------------------------------------------------------------------------------------
def _pump_handler(args: argparse.Namespace) -> int:
    _logging(args)
    action = args.pump_command
    if action is None:
        print("glucotwin ble pump: choose an action: status, history, bolus, tbr, cancel", file=sys.stderr)
        return 2
    if action in ("bolus", "tbr", "cancel") and not args.confirm:
        print(
            f"glucotwin ble pump {action}: REFUSED. Dosing changes need a person's explicit confirmation: "
            "re-run with --confirm after checking the amount.",
            file=sys.stderr,
        )
        return 3
    return _run(pump_action(args), args.timeout, f"pump {action}")


async def pump_action(args: argparse.Namespace) -> int:
    from firmware_bridge.radio import Radio
    from firmware_bridge.sessions.pump_session import ConfirmedCommand, PumpSession, PumpSessionConfig

    config = PumpSessionConfig(address=args.address)
    async with Radio.from_spec(args.transport, requested_mtu=args.mtu) as radio:
        async with PumpSession(radio, config) as pump:
            action = args.pump_command
            if action == "status":
                result: Any = (await pump.read_status()).as_json_dict()
            elif action == "history":
                events = await pump.read_history()
                if args.limit is not None:
                    events = events[-args.limit :]
                result = [event.as_json_dict() for event in events]
            else:
                if action == "bolus":
                    command = ConfirmedCommand.fast_bolus(args.units, confirmed_by="cli --confirm")
                elif action == "tbr":
                    command = ConfirmedCommand.temporary_basal(
                        percent=args.percent,
                        rate_u_per_h=args.rate_u_per_h,
                        duration_min=args.duration_min,
                        confirmed_by="cli --confirm",
                    )
                else:
                    command = ConfirmedCommand.cancel(args.what, confirmed_by="cli --confirm")
                result = (await pump.execute(command)).as_json_dict()
    _print_result(result, args.json)
    return 0


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        for item in result if isinstance(result, list) else [result]:
            print(json.dumps(item), flush=True)
        return
    for item in result if isinstance(result, list) else [result]:
        print("  ".join(f"{key}={value}" for key, value in item.items() if value is not None), flush=True)
