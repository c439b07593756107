"""``glucotwin sim``: run the emulated devices in their own process.

``glucotwin sim serve`` starts the air server on loopback TCP with the emulated CGM sensor (and insulin pump
unless ``--no-pump``), prints the transport spec a hub connects to (``tcp-client:127.0.0.1:PORT``) as the
FIRST line of stdout, flushes it, and runs until interrupted (Ctrl-C or SIGTERM)::

    glucotwin sim serve --acceleration 600 --faults drop_every_min=120,drop_duration_min=30,corrupt_crc=0.02
    glucotwin ble readings --transport tcp-client:127.0.0.1:PORT --count 12
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import datetime, timezone
from typing import Any

logger = logging.getLogger(__name__)

#: ``--pump-dialect`` names -> IdsDialect keyword arguments (see firmware_bridge.codec.ids_common.IdsDialect).
PUMP_DIALECTS: dict[str, dict[str, Any]] = {
    "spec": {"e2e": True},
    "spec-no-e2e": {"e2e": False},
    "float": {"e2e": True, "number_format": "float"},
    "bleidssim": {
        "e2e": True,
        "number_format": "float",
        "racp_response_operator": False,
        "history_counter": True,
        "annunciation_status_octets": 2,
    },
}


def register_sim(subparsers: Any) -> None:
    parser = subparsers.add_parser("sim", help="run simulated devices (CGM sensor, insulin pump) on an emulated radio")
    commands = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    serve = commands.add_parser("serve", help="serve the emulated CGM (and pump) to hubs over loopback TCP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="TCP port (0: any free port; the spec is printed)")
    serve.add_argument("--acceleration", type=float, default=1.0, help="sim minutes per real minute (default 1)")
    serve.add_argument("--faults", default=None, help="fault plan, e.g. drop_every_min=120,drop_duration_min=30,corrupt_crc=0.02")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--trace", metavar="FILE", help="CSV of minute,glucose_mg_dl driving the sensor")
    source.add_argument("--scripted", action="store_true", help="the built-in scripted demo day (default)")
    serve.add_argument("--no-pump", action="store_true", help="serve only the CGM sensor")
    serve.add_argument("--no-e2e-crc", action="store_true", help="CGM without E2E-CRC (Feature bit 12 off)")
    serve.add_argument(
        "--annunciation-order", choices=["spec", "nordic"], default="spec", help="CGM annunciation octet order"
    )
    serve.add_argument(
        "--pump-dialect",
        choices=sorted(PUMP_DIALECTS),
        default="spec",
        help="how the pump puts IDS on the wire: spec (E2E), spec-no-e2e, float (32-bit FLOAT amounts), "
        "bleidssim (FLOAT, RACP responses without operator, History Data with counter, 2-octet annunciation status)",
    )
    serve.add_argument("--cgm-warmup-min", type=int, default=0, help="CGM warm-up: no readings for the first M minutes")
    serve.add_argument("--low-battery-after-min", type=float, default=None, help="CGM flags low battery from this sim minute")
    serve.add_argument("--pump-reservoir-u", type=float, default=200.0, help="insulin in the pump's reservoir at start (U)")
    serve.add_argument("--occlusion-at-min", type=float, default=None, help="the pump detects an occlusion at this sim minute")
    serve.add_argument("--start", default=None, help="sim epoch as ISO datetime with zone (default: now, UTC)")
    serve.add_argument("--verbose", "-v", action="store_true")
    from hardware_sim.person import add_patient_arguments  # --patient NAME [--scenario] [--seed] [--person-hub-url]

    add_patient_arguments(serve)
    serve.set_defaults(handler=_serve_handler)
    dataset = commands.add_parser("dataset", help="generate virtual-patient recordings and a training set "
                                  "(split by whole subjects) for the forecaster")
    from hardware_sim.datasets import build_parser as build_dataset_parser
    from hardware_sim.datasets import run as run_dataset

    build_dataset_parser(dataset)
    dataset.set_defaults(handler=run_dataset)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _serve_handler(args: argparse.Namespace) -> int:
    from hardware_sim.faults import FaultPlan, FaultPlanError

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        plan = FaultPlan.parse(args.faults)
    except FaultPlanError as error:
        print(f"glucotwin sim serve: invalid --faults: {error}", file=sys.stderr)
        return 2
    if not args.acceleration > 0:
        print("glucotwin sim serve: --acceleration must be > 0", file=sys.stderr)
        return 2
    start = None
    if args.start:
        start = datetime.fromisoformat(args.start)
        if start.tzinfo is None:
            print("glucotwin sim serve: --start needs a time zone (e.g. 2026-01-01T00:00+00:00)", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve_until_stopped(args, plan, start))
    except KeyboardInterrupt:
        pass
    return 0


def build_devices(args: argparse.Namespace, clock: Any, plan: Any) -> list[Any]:
    """The peripherals ``serve`` runs, from the parsed options."""
    from hardware_sim.devices.cgm_model import CgmSensorConfig, CgmSensorModel
    from hardware_sim.devices.cgm_sensor import CgmSensorPeripheral
    from hardware_sim.devices.glucose_source import ScriptedTrace

    from firmware_bridge.codec.cgms import AnnunciationOrder

    source = ScriptedTrace.from_csv(args.trace) if args.trace else ScriptedTrace.demo_day(days=30)
    order = AnnunciationOrder.WARNING_CAL_TEMP_STATUS if getattr(args, "annunciation_order", "spec") == "nordic" else AnnunciationOrder.SPEC
    config = CgmSensorConfig(
        e2e_crc=not args.no_e2e_crc,
        warmup_min=getattr(args, "cgm_warmup_min", 0),
        low_battery_after_min=getattr(args, "low_battery_after_min", None),
    )
    model = CgmSensorModel(source, config)
    sensor = CgmSensorPeripheral(model, clock, plan, annunciation_order=order)
    devices: list[Any] = [sensor]
    if not args.no_pump:
        from firmware_bridge.codec.ids import IdsDialect
        from hardware_sim.devices.glucose_source import InsulinLedger
        from hardware_sim.devices.ids_pump import IdsPumpPeripheral, PumpModel

        dialect = IdsDialect(**PUMP_DIALECTS[getattr(args, "pump_dialect", "spec")])
        pump_model = PumpModel(sink=InsulinLedger(), epoch=clock.start, reservoir_u=getattr(args, "pump_reservoir_u", 200.0))
        devices.append(IdsPumpPeripheral(pump_model, clock, plan, dialect=dialect))
    if getattr(args, "patient", None):  # a UVA/Padova subject behind both devices, and the person who eats
        from hardware_sim.person import attach_patient

        attach_patient(args, clock, devices)
    return devices


async def serve_until_stopped(args: argparse.Namespace, plan: Any, start: datetime | None) -> None:
    from hardware_sim.air.server import serve
    from hardware_sim.clock import SimClock

    clock = SimClock(start or datetime.now(timezone.utc).replace(microsecond=0), acceleration=args.acceleration)
    devices = build_devices(args, clock, plan)
    for device in devices:
        device.start()  # the devices' clocks run from the epoch, hub or no hub
    server = await serve(devices, args.host, args.port, clock, plan)
    print(server.spec, flush=True)
    print(
        f"serving {', '.join(d.name for d in devices)} at x{args.acceleration:g}"
        + (f" with faults {plan.to_string()}" if plan.to_string() else ""),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    occlusion_at = getattr(args, "occlusion_at_min", None)
    pumps = [device for device in devices if hasattr(device.model, "inject_occlusion")]
    if occlusion_at is not None and pumps:

        async def occlude() -> None:
            await clock.sleep_until_min(occlusion_at)
            for pump in pumps:
                pump.model.inject_occlusion(clock.now_min())
                pump.advance()  # indicate the change to connected hubs

        loop.create_task(occlude())
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        for device in devices:
            await device.stop()
