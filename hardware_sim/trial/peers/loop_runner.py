"""A long-running Loop decision service (Tidepool's PyLoopKit port): JSON lines on stdin/stdout.

Runs in its OWN virtualenv (``.peers/loop-venv``: opsb-pyloopkit needs numpy < 2); it imports nothing from
the project. State (glucose, doses, carb entries) is kept per subject id; each request carries what is new.

Requests:
  {"op": "init", "id": ID, "settings": {...}, "schedules": {"isf", "carb_ratio", "basal", "target_min",
   "target_max"}}
  {"op": "step", "id": ID, "time_ms": T, "glucose": mg/dL | null, "doses": [[type, start_ms, end_ms, value]],
   "carbs": [[time_ms, grams, absorption_min]], "last_temp": [start_ms, end_ms, rate] | null}
  {"op": "close", "id": ID} / {"op": "ping"}
Answers: {"ok": true, "temp_basal": [rate, duration_min] | null, "bolus_u": x, "predicted_min_mg_dl": ...}.
"""

from __future__ import annotations

import json
import sys
import warnings
from datetime import UTC, datetime, time, timedelta

warnings.simplefilter("ignore")

from pyloopkit.dose import DoseType  # noqa: E402
from pyloopkit.loop_data_manager import update  # noqa: E402

GLUCOSE_KEEP_H = 6.0  # dynamic carb absorption: 1.5 x 3 h absorption window, plus margin
DOSE_KEEP_H = GLUCOSE_KEEP_H + 6.5  # insulin acting on the oldest glucose kept
CARB_KEEP_H = 8.0
TYPES = {"bolus": DoseType.bolus, "tempbasal": DoseType.tempbasal}

subjects: dict[str, dict] = {}


def _at(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def init(request: dict) -> dict:
    subjects[request["id"]] = {"settings": request["settings"], "schedules": request["schedules"],
                               "glucose": [], "doses": [], "carbs": []}
    return {"ok": True}


def step(request: dict) -> dict:
    s = subjects[request["id"]]
    now = _at(request["time_ms"])
    if request.get("glucose") is not None:
        s["glucose"].append((now, float(request["glucose"])))
    for kind, start, end, value in request.get("doses") or []:
        dose = (TYPES[kind], _at(start), _at(end), float(value))
        last = s["doses"][-1] if s["doses"] else None
        if (last is not None and dose[0] == last[0] == DoseType.tempbasal and dose[3] == last[3]
                and last[1] <= dose[1] <= last[2]):
            s["doses"][-1] = (last[0], last[1], dose[2], last[3])  # the same rate re-issued: one longer record
        else:
            s["doses"].append(dose)
    for at, grams, absorption in request.get("carbs") or []:
        s["carbs"].append((_at(at), float(grams), float(absorption)))
    s["glucose"] = [g for g in s["glucose"] if g[0] >= now - timedelta(hours=GLUCOSE_KEEP_H)]
    s["doses"] = [d for d in s["doses"] if d[2] >= now - timedelta(hours=DOSE_KEEP_H)]
    s["carbs"] = [c for c in s["carbs"] if c[0] >= now - timedelta(hours=CARB_KEEP_H)]
    if not s["glucose"] or s["glucose"][-1][0] < now - timedelta(minutes=15):
        return {"ok": True, "temp_basal": None, "bolus_u": 0.0, "reason": "no recent glucose"}
    sch = s["schedules"]
    midnight = [time(0, 0)]
    doses = sorted(s["doses"], key=lambda d: d[1])
    if not any(d[2] > now - timedelta(hours=6) for d in doses):
        # PyLoopKit builds no insulin-effect timeline without a dose acting now, and then returns nothing at
        # all (start of a run): add a net-zero record at the scheduled rate over the last 5 min.
        doses.append((DoseType.tempbasal, now - timedelta(minutes=5), now, float(s["schedules"]["basal"])))
    last_temp = request.get("last_temp")
    inputs = {
        "time_to_calculate_at": now,
        # Effects (insulin, counteraction) from the oldest glucose kept on, not PyLoopKit's default 24 h: the
        # counteraction effects need no more, and the cost grows with doses x effect timeline.
        "previous_counteraction_effect_dates": [s["glucose"][0][0]],
        "glucose_dates": [g[0] for g in s["glucose"]], "glucose_values": [g[1] for g in s["glucose"]],
        "dose_types": [d[0] for d in doses], "dose_start_times": [d[1] for d in doses],
        "dose_end_times": [d[2] for d in doses], "dose_values": [d[3] for d in doses],
        "dose_delivered_units": [None] * len(doses),
        "carb_dates": [c[0] for c in s["carbs"]], "carb_values": [c[1] for c in s["carbs"]],
        "carb_absorption_times": [c[2] for c in s["carbs"]],
        "settings_dictionary": dict(s["settings"]),
        "sensitivity_ratio_start_times": midnight, "sensitivity_ratio_end_times": midnight,
        "sensitivity_ratio_values": [sch["isf"]],
        "carb_ratio_start_times": midnight, "carb_ratio_values": [sch["carb_ratio"]],
        "basal_rate_start_times": midnight, "basal_rate_values": [sch["basal"]], "basal_rate_minutes": [0.0],
        "target_range_start_times": midnight, "target_range_end_times": midnight,
        "target_range_minimum_values": [sch["target_min"]], "target_range_maximum_values": [sch["target_max"]],
        "last_temporary_basal": ([DoseType.tempbasal, _at(last_temp[0]), _at(last_temp[1]), float(last_temp[2])]
                                 if last_temp else []),
    }
    result = update(inputs)
    if not result:
        return {"ok": True, "temp_basal": None, "bolus_u": 0.0, "reason": "pyloopkit refused the inputs"}
    temp = result.get("recommended_temp_basal")
    bolus = result.get("recommended_bolus")
    predicted = result.get("predicted_glucose_values") or []
    return {
        "ok": True,
        "temp_basal": [float(temp[0]), float(temp[1])] if temp else None,
        "bolus_u": float(bolus[0]) if bolus else 0.0,
        "predicted_min_mg_dl": min(predicted) if predicted else None,
        "eventual_mg_dl": predicted[-1] if predicted else None,
        "cob_g": result.get("carbs_on_board"),
    }


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "init":
                answer = init(request)
            elif op == "step":
                answer = step(request)
            elif op == "close":
                subjects.pop(request.get("id"), None)
                answer = {"ok": True}
            elif op == "ping":
                import pyloopkit  # noqa: PLC0415

                answer = {"ok": True, "pyloopkit": getattr(pyloopkit, "__version__", "opsb-pyloopkit")}
            else:
                answer = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as error:  # noqa: BLE001 - every failure becomes an answer, never a hang
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer, default=float) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
