"""Evaluate every forecaster on held-out recordings with ``glucotwin eval forecast`` and pool the results.

For each ``*.csv`` in the folder (with its ``*.settings.json`` from ``hardware_sim.datasets``: the subject's
basal, ISF, carb ratio and weight) this runs exactly::

    glucotwin eval forecast --recording R.csv --json R.eval.json --plugin models.forecast.onnx_plugin \
        --basal B --isf S --cr C --weight W [--methods ...] [--every N]

then pools the per-recording JSON reports (RMSE from the pairs-weighted mean squared error, MAE, MARD and
coverage pairs-weighted, Clarke/Parkes zone shares pairs-weighted) into one table per horizon, and compares
the hub's method with the best baseline. No torch needed.

    python -m models.forecast.training.evaluate_heldout /tmp/glucotwin-data/recordings/test --glob '*realistic*'
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BASELINES_SIMPLE = ("last_value", "linear", "loop")
BASELINES_TWIN = ("twin", "twin_ekf", "twin_published")
DEFAULT_METHODS = "last_value,linear,loop,twin,onnx,hub"


def eval_command(recording: Path, out_json: Path, methods: str, every: int) -> list[str]:
    exe = shutil.which("glucotwin") or str(Path(sys.executable).with_name("glucotwin"))
    cmd = [exe, "eval", "forecast", "--recording", str(recording), "--json", str(out_json),
           "--plugin", "models.forecast.onnx_plugin", "--methods", methods, "--every", str(every)]
    settings_path = recording.with_suffix(".settings.json")
    if settings_path.exists():
        s = json.loads(settings_path.read_text(encoding="utf-8"))
        cmd += ["--basal", f"{s['basal_u_per_h']:.4g}", "--isf", f"{s['insulin_sensitivity_mg_dl_per_u']:.4g}",
                "--cr", f"{s['carb_ratio_g_per_u']:.4g}", "--weight", f"{s['body_weight_kg']:.4g}"]
    return cmd


def pool(reports: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> horizon -> pooled figures."""
    pooled: dict[str, dict[str, dict[str, float]]] = {}
    for report in reports:
        for method, data in report["methods"].items():
            for h, acc in data["horizons"].items():
                n = acc["n_pairs"]
                if not n or acc["rmse_mg_dl"] is None:
                    continue
                p = pooled.setdefault(method, {}).setdefault(h, {"n": 0, "se": 0.0, "ae": 0.0, "ard": 0.0, "cov": 0.0,
                                                                  "cov_n": 0, "clarke_ab": 0.0, "parkes_ab": 0.0})
                p["n"] += n
                p["se"] += n * acc["rmse_mg_dl"] ** 2
                p["ae"] += n * acc["mae_mg_dl"]
                p["ard"] += n * acc["mard_percent"]
                if acc["coverage_95_percent"] is not None:
                    p["cov"] += n * acc["coverage_95_percent"]
                    p["cov_n"] += n
                p["clarke_ab"] += n * (acc["clarke_percent"]["A"] + acc["clarke_percent"]["B"])
                p["parkes_ab"] += n * (acc["parkes_percent"]["A"] + acc["parkes_percent"]["B"])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method, by_h in pooled.items():
        for h, p in by_h.items():
            n = p["n"]
            out.setdefault(method, {})[h] = {
                "n_pairs": n, "rmse_mg_dl": math.sqrt(p["se"] / n), "mae_mg_dl": p["ae"] / n,
                "mard_percent": p["ard"] / n, "coverage_95_percent": p["cov"] / p["cov_n"] if p["cov_n"] else math.nan,
                "clarke_ab_percent": p["clarke_ab"] / n, "parkes_ab_percent": p["parkes_ab"] / n,
            }
    return out


def comparison(pooled: dict, hub: str, horizons: Sequence[str] = ("30", "60")) -> dict[str, dict[str, object]]:
    """Hub vs the best simple baseline and vs the best of all baselines (twin variants included)."""
    result: dict[str, dict[str, object]] = {}
    for h in horizons:
        hub_rmse = pooled[hub][h]["rmse_mg_dl"]
        row: dict[str, object] = {"hub_rmse_mg_dl": hub_rmse, "hub_coverage_95_percent": pooled[hub][h]["coverage_95_percent"]}
        for label, names in (("simple", BASELINES_SIMPLE), ("all", BASELINES_SIMPLE + BASELINES_TWIN)):
            present = [m for m in names if m in pooled and h in pooled[m]]
            if not present:
                continue
            best = min(present, key=lambda m: pooled[m][h]["rmse_mg_dl"])
            best_rmse = pooled[best][h]["rmse_mg_dl"]
            row[f"best_{label}_baseline"] = best
            row[f"best_{label}_rmse_mg_dl"] = best_rmse
            row[f"improvement_vs_{label}_percent"] = 100.0 * (1 - hub_rmse / best_rmse)
        result[h] = row
    return result


def format_markdown(pooled: dict, hub: str, horizons: Sequence[str] = ("30", "60", "90", "120")) -> str:
    lines = ["| method | h (min) | n | RMSE | MAE | MARD % | Clarke A+B % | Parkes A+B % | 95% coverage % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, by_h in pooled.items():
        for h in horizons:
            if h not in by_h:
                continue
            a = by_h[h]
            name = f"**{method}** (hub)" if method == hub else method
            lines.append(f"| {name} | {h} | {a['n_pairs']} | {a['rmse_mg_dl']:.1f} | {a['mae_mg_dl']:.1f} | "
                         f"{a['mard_percent']:.1f} | {a['clarke_ab_percent']:.1f} | {a['parkes_ab_percent']:.1f} | "
                         f"{a['coverage_95_percent']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.forecast.training.evaluate_heldout",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder of recording CSVs (+ .settings.json)")
    parser.add_argument("--glob", default="*.csv")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the pooled report (JSON) here")
    parser.add_argument("--reuse", action="store_true", help="reuse existing *.eval.json reports")
    args = parser.parse_args(argv)
    recordings = sorted(p for p in args.folder.glob(args.glob) if p.suffix == ".csv")
    if not recordings:
        print(f"error: no recordings matching {args.glob} in {args.folder}", file=sys.stderr)
        return 2

    def run_one(recording: Path) -> dict:
        out_json = recording.with_suffix(".eval.json")
        if not (args.reuse and out_json.exists()):
            cmd = eval_command(recording, out_json, args.methods, args.every)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
            print(f"# {recording.name}\n{done.stdout}", flush=True)
        return json.loads(out_json.read_text(encoding="utf-8"))

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool_:
        reports = list(pool_.map(run_one, recordings))
    hub = reports[0]["hub_method"]
    pooled = pool(reports)
    summary = {"recordings": [r["recording"] for r in reports], "hub_method": hub, "pooled": pooled,
               "comparison": comparison(pooled, hub),
               "example_command": " ".join(["glucotwin"] + eval_command(
                   recordings[0], recordings[0].with_suffix(".eval.json"), args.methods, args.every)[1:])}
    print(format_markdown(pooled, hub))
    print(json.dumps(summary["comparison"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
