"""The patient's commands: ``glucotwin hub run``, ``status``, ``meal``, ``whatif``, ``confirm``, ``decline``.

A thin shell over the hub's local HTTP API (the running hub owns the radio and the pump), so each command is
what a phone app would do. ``--hub URL`` points at another hub; the default is this machine's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import requests

DEFAULT_HUB_URL = "http://127.0.0.1:8080"


class HubUnreachable(RuntimeError):
    pass


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = args.hub.rstrip("/") + path
    try:
        response = requests.request(method, url, json=body, timeout=30)
    except requests.RequestException as error:
        raise HubUnreachable(f"the hub is not answering at {args.hub} ({type(error).__name__}). Is "
                             "'glucotwin hub run' running?") from error
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        raise HubUnreachable(f"the hub refused: HTTP {response.status_code}: {detail}")
    return response.json()


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _advice_text(advice: dict[str, Any]) -> str:
    lines = [advice.get("summary", "")]
    if advice.get("timing"):
        lines.append(advice["timing"])
    lines += [f"  because {reason}" for reason in advice.get("reasons", [])]
    lines += [f"  limit: {limit}" for limit in advice.get("limits_applied", [])]
    numbers = advice.get("numbers", {})
    shown = ("glucose_mg_dl", "iob_u", "cob_g", "predicted_min_mg_dl", "eventual_mg_dl", "isf_used_mg_dl_per_u",
             "carb_ratio_g_per_u")
    lines.append("  numbers: " + ", ".join(f"{k}={numbers[k]}" for k in shown if numbers.get(k) is not None))
    if advice.get("id") and (advice.get("bolus_u") or advice.get("temp_basal_u_per_h") is not None):
        lines.append(f"To deliver it: glucotwin confirm {advice['id']}   (or decline: glucotwin decline {advice['id']})")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    data = _call(args, "GET", "/api/status")
    if not data["hub_ok"]:
        text = data["hub_status"]
    else:
        trend = data.get("trend_mg_dl_min")
        lines = [f"Glucose {data.get('glucose_display') or '—'}"
                 + (f" ({trend:+.1f} mg/dL/min)" if trend is not None else "")
                 + (f", {data['glucose_age_min']:.0f} min ago" if data.get("glucose_age_min") is not None else ""),
                 f"Insulin on board {data.get('iob_u')} U, carbs on board {data.get('cob_g')} g",
                 data["hub_status"]]
        lines += [f"ALERT [{a['severity']}] {a['message']}" for a in data.get("alerts", [])]
        if data.get("advice"):
            lines.append("Open advice: " + data["advice"]["payload"].get("summary", "")
                         + f" (id {data['advice']['id']})")
        text = "\n".join(lines)
    return _print(args, data, text)


def cmd_meal(args: argparse.Namespace) -> int:
    data = _call(args, "POST", "/api/meal", {"carbs_g": args.carbs_g})
    return _print(args, data, _advice_text(data))


def cmd_whatif(args: argparse.Namespace) -> int:
    body = {"carbs_g": args.carbs, "bolus_u": args.bolus}
    if args.temp_basal is not None:
        body.update(temp_basal_u_per_h=args.temp_basal, temp_basal_duration_min=args.duration_min)
    data = _call(args, "POST", "/api/whatif", body)
    rows = []
    for label in ("no_action", "what_if"):
        trajectory = data[label]
        points = dict(zip(trajectory["minutes"], zip(trajectory["mean_mg_dl"], trajectory["lower_mg_dl"],
                                                      trajectory["upper_mg_dl"])))
        cells = [f"{m:>3.0f} min {points[m][0]:5.0f} ({points[m][1]:.0f}-{points[m][2]:.0f})"
                 for m in (30.0, 60.0, 120.0, 180.0) if m in points]
        rows.append(f"{trajectory['action']:<28} " + " | ".join(cells))
    return _print(args, data, data["summary"] + "\n" + "\n".join(rows))


def cmd_confirm(args: argparse.Namespace) -> int:
    data = _call(args, "POST", "/api/confirm", {"recommendation_id": args.recommendation_id})
    pump = data.get("pump", {})
    text = f"Recommendation {args.recommendation_id} confirmed." + (
        f" Pump: {'delivered' if pump.get('delivered') else pump.get('error', 'not connected: deliver it yourself')}"
        if pump else "")
    return _print(args, data, text)


def cmd_decline(args: argparse.Namespace) -> int:
    data = _call(args, "POST", "/api/decline", {"recommendation_id": args.recommendation_id})
    return _print(args, data, f"Recommendation {args.recommendation_id} declined.")


def cmd_hub(args: argparse.Namespace) -> int:
    import logging

    from .agent.service import run_hub
    from .config import ConfigError, load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"glucotwin hub: {error}", file=sys.stderr)
        return 2
    try:
        run_hub(config)
    except KeyboardInterrupt:
        return 0
    return 0


def _client_parser(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--hub", default=DEFAULT_HUB_URL, help=f"the hub's URL (default {DEFAULT_HUB_URL})")
    parser.add_argument("--json", action="store_true", help="print the hub's JSON answer")
    return parser


def _wrap(handler):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except HubUnreachable as error:
            print(f"glucotwin: {error}", file=sys.stderr)
            return 1
    return run


def register_status(subparsers: Any) -> None:
    _client_parser(subparsers, "status", "Current glucose, trend, IOB/COB, alerts and open advice.").set_defaults(
        handler=_wrap(cmd_status))


def register_meal(subparsers: Any) -> None:
    parser = _client_parser(subparsers, "meal", "Announce a meal and get bolus advice (nothing is delivered).")
    parser.add_argument("carbs_g", type=float, help="grams of carbohydrate")
    parser.set_defaults(handler=_wrap(cmd_meal))


def register_whatif(subparsers: Any) -> None:
    parser = _client_parser(subparsers, "whatif", "What happens to glucose if I eat / take insulin now?")
    parser.add_argument("--carbs", type=float, default=0.0, help="grams eaten now")
    parser.add_argument("--bolus", type=float, default=0.0, help="units taken now")
    parser.add_argument("--temp-basal", type=float, default=None, help="temporary basal rate, U/h")
    parser.add_argument("--duration-min", type=float, default=30.0, help="temporary basal duration")
    parser.set_defaults(handler=_wrap(cmd_whatif))


def register_confirm(subparsers: Any) -> None:
    parser = _client_parser(subparsers, "confirm", "Confirm one recommendation: the pump delivers exactly it.")
    parser.add_argument("recommendation_id", type=int)
    parser.set_defaults(handler=_wrap(cmd_confirm))


def register_decline(subparsers: Any) -> None:
    parser = _client_parser(subparsers, "decline", "Decline one recommendation.")
    parser.add_argument("recommendation_id", type=int)
    parser.set_defaults(handler=_wrap(cmd_decline))


def register_hub(subparsers: Any) -> None:
    parser = subparsers.add_parser("hub", help="Run the hub service.", description="Run the hub service.")
    sub = parser.add_subparsers(dest="hub_command", metavar="SUBCOMMAND", required=True)
    run = sub.add_parser("run", help="Run the always-on hub (devices, twin, advice, alerts, web page, sync).")
    run.add_argument("--config", required=True, help="the hub's TOML configuration file")
    run.set_defaults(handler=cmd_hub)
    watchdog = sub.add_parser("watchdog", help="Check from outside that the hub is alive (exit 1 and alarm if not).")
    watchdog.add_argument("--config", required=True, help="the hub's TOML configuration file")
    watchdog.add_argument("--max-age-s", type=float, default=60.0, help="oldest acceptable heartbeat")
    watchdog.add_argument("--alarm-command", default=None, help="shell command run (message on stdin) on failure")
    watchdog.set_defaults(handler=cmd_watchdog)


def cmd_watchdog(args: argparse.Namespace) -> int:
    from .agent.watchdog import run_watchdog
    from .config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"glucotwin hub watchdog: {error}", file=sys.stderr)
        return 2
    url = f"http://{config.web.host}:{config.web.port}"
    return run_watchdog(config.storage_path.with_suffix(".heartbeat"), url, args.max_age_s, args.alarm_command)
