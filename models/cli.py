"""``glucotwin eval``: evaluate forecasters on a recording (a thin shell over models.evaluation.harness).

    glucotwin eval forecast --recording PATH [--json OUT] [--methods last_value,linear,loop,twin]
                            [--basal 1.0 --isf 50 --cr 10 --weight 75 --target 110 --insulin-peak 75]
                            [--every N] [--plugin MODULE ...]

Prints RMSE, MAE, MARD, Clarke and Parkes zone percentages and 95 % interval coverage at 30 and 60 min for
every method in one table; ``--json`` writes every horizon (30/60/90/120) and names the hub's method.
Therapy settings are needed by the Loop baseline and the twin; without ``--basal`` the recording's median
basal rate is used when it has one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np


def register_eval(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("eval", help="evaluate forecasters on recordings")
    commands = parser.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND")
    forecast = commands.add_parser("forecast", help="replay a recording causally through every forecaster")
    forecast.add_argument("--recording", required=True, type=Path,
                          help="CSV, Nightscout JSON, or a folder with entries.json [+ treatments.json]")
    forecast.add_argument("--json", dest="json_out", type=Path, help="write the full report as JSON here")
    forecast.add_argument("--methods", help="comma-separated method names (default: all registered)")
    forecast.add_argument("--plugin", action="append", default=[],
                          help="import this module first (it may call register_method); repeatable")
    forecast.add_argument("--basal", type=float, help="scheduled basal rate, U/h")
    forecast.add_argument("--isf", type=float, default=50.0, help="insulin sensitivity factor, mg/dL/U")
    forecast.add_argument("--cr", type=float, default=10.0, help="carb ratio, g/U")
    forecast.add_argument("--weight", type=float, default=75.0, help="body weight, kg")
    forecast.add_argument("--target", type=float, default=110.0, help="glucose target, mg/dL")
    forecast.add_argument("--insulin-peak", type=float, default=75.0, help="insulin peak time, min")
    forecast.add_argument("--every", type=int, default=1, help="forecast at every N-th reading (default 1)")
    forecast.set_defaults(handler=_forecast)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _forecast(args: argparse.Namespace) -> int:
    from models.evaluation.harness import UnknownMethodError, format_table, registered_methods, replay
    from models.evaluation.recordings import RecordingError, load_recording
    from models.twin.twin import TwinInputError, TwinSettings

    for module in args.plugin:
        try:
            importlib.import_module(module)
        except ImportError as error:
            print(f"error: cannot import plugin {module!r}: {error}", file=sys.stderr)
            return 2
    try:
        recording = load_recording(args.recording)
    except RecordingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    basal = args.basal
    if basal is None:
        rates = recording.basal_u_per_h[np.isfinite(recording.basal_u_per_h)]
        basal = float(np.median(rates)) if rates.size else 1.0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else registered_methods()
    if args.every < 1:
        print("error: --every must be >= 1", file=sys.stderr)
        return 2
    try:
        settings = TwinSettings(basal, args.isf, args.cr, args.weight, args.target, args.insulin_peak)
        report = replay(recording, settings, methods=methods, forecast_every=args.every)
    except UnknownMethodError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (TwinInputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json_out is not None:
        data = report.to_dict()
        data["settings"] = settings.__dict__
        args.json_out.write_text(json.dumps(_json_safe(data), indent=2) + "\n", encoding="utf-8")
    return 0


def _json_safe(value: object) -> object:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
