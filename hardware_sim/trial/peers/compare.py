"""The comparison table and the goal check: GlucoTwin against the peers people use today.

Reads one or more JSON files written by ``glucotwin trial --json`` (one run with every arm, or runs split by
arm and / or age group; rows of the same arm are pooled, a row = subject x seed) and prints, per age group,
TIR 70-180, time < 70, < 54, > 250, CV, LBGI, HBGI and the glycemia risk index (means over rows, on true plasma
glucose; GRI is computed from the row's ranges when an older file lacks it), then checks the
goal of the comparison in every age group:

* GlucoTwin's time out of range (100 - TIR) is at most two thirds of the best peer's;
* GlucoTwin's time < 54 mg/dL is no higher than the best peer's (lowest group mean);
* every GlucoTwin row (subject x seed) spends under 1% of the time < 54 mg/dL.

Usage: ``python -m hardware_sim.trial.peers.compare RESULT.json [MORE.json ...] [--arm glucotwin]
[--json OUT]``. The rows compared must be the same subjects and seeds in every arm; the check refuses
otherwise (the protocol of Patek et al. 2009 compares arms on identical subjects, scenarios and seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.glycemic_metrics import GRI_WEIGHTS, glycemia_risk_index

GROUPS: tuple[str, ...] = ("adult", "adolescent", "child")
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("time_in_range_70_180_pct", "TIR%", "{:.1f}"),
    ("time_out_of_range_pct", "TOR%", "{:.1f}"),
    ("time_below_70_pct", "<70%", "{:.2f}"),
    ("time_below_54_pct", "<54%", "{:.2f}"),
    ("time_above_250_pct", ">250%", "{:.1f}"),
    ("cv_pct", "CV%", "{:.1f}"),
    ("lbgi", "LBGI", "{:.2f}"),
    ("hbgi", "HBGI", "{:.2f}"),
    ("gri", "GRI", "{:.1f}"),
    ("rescue_carbs_g_per_day", "rescue g/d", "{:.0f}"),
    ("insulin_u_per_day", "U/day", "{:.1f}"),
)
TOR_FRACTION_GOAL = 2.0 / 3.0
ROW_BELOW_54_LIMIT_PCT = 1.0


class ComparisonError(ValueError):
    """Result files that cannot be compared (unreadable, or different rows in different arms)."""


def load_rows(paths: list[str | Path]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """{arm: [row records]} pooled over the files, and each file's config."""
    arms: dict[str, list[dict[str, Any]]] = {}
    configs = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            configs.append({"file": str(path), **data["config"]})
            for arm, entry in data["arms"].items():
                arms.setdefault(arm, []).extend(entry["rows"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ComparisonError(f"{path}: not a trial result ({error})") from error
    return arms, configs


def _key(row: dict[str, Any]) -> tuple[str, int, int]:
    return (str(row["subject"]), int(row["seed"]), int(row.get("replicate", 0)))


def _value(row: dict[str, Any], metric: str) -> float:
    if metric == "time_out_of_range_pct":
        return 100.0 - float(row["time_in_range_70_180_pct"])
    if metric == "gri" and row.get("gri") is None and all(row.get(k) is not None for k in GRI_WEIGHTS):
        return float(glycemia_risk_index(row))  # a file written before GRI was reported
    value = row.get(metric)
    return math.nan if value is None else float(value)


def group_means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for group in (*GROUPS, "all"):
        members = [r for r in rows if group == "all" or r["age_group"] == group]
        if not members:
            continue
        entry: dict[str, float] = {"n_rows": float(len(members))}
        for metric, _, _ in COLUMNS:
            values = [v for v in (_value(r, metric) for r in members) if not math.isnan(v)]
            entry[metric] = sum(values) / len(values) if values else math.nan
        entry["worst_row_below_54_pct"] = max(_value(r, "time_below_54_pct") for r in members)
        out[group] = entry
    return out


@dataclass
class GroupVerdict:
    group: str
    best_peer_tor: tuple[str, float]
    best_peer_below_54: tuple[str, float]
    arm_tor: float
    arm_below_54: float
    arm_worst_row_below_54: float
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return all(self.checks.values())


def check_goal(arms: dict[str, list[dict[str, Any]]], arm: str = "glucotwin") -> list[GroupVerdict]:
    if arm not in arms:
        raise ComparisonError(f"no {arm!r} arm in the results (arms: {', '.join(arms)})")
    peers = {name: rows for name, rows in arms.items() if name != arm and not name.startswith(arm)}
    if not peers:
        raise ComparisonError("no peer arm to compare with")
    reference = sorted(_key(r) for r in arms[arm])
    for name, rows in peers.items():
        if sorted(_key(r) for r in rows) != reference:
            raise ComparisonError(f"arm {name!r} ran other subjects / seeds than {arm!r}: not comparable")
    ours = group_means(arms[arm])
    theirs = {name: group_means(rows) for name, rows in peers.items()}
    verdicts = []
    for group in GROUPS:
        if group not in ours:
            continue
        best_tor = min(((name, m[group]["time_out_of_range_pct"]) for name, m in theirs.items()), key=lambda t: t[1])
        best_low = min(((name, m[group]["time_below_54_pct"]) for name, m in theirs.items()), key=lambda t: t[1])
        mine = ours[group]
        verdict = GroupVerdict(group, best_tor, best_low, mine["time_out_of_range_pct"], mine["time_below_54_pct"],
                               mine["worst_row_below_54_pct"])
        verdict.checks = {
            "TOR <= 2/3 of best peer": mine["time_out_of_range_pct"] <= TOR_FRACTION_GOAL * best_tor[1] + 1e-9,
            "<54 <= best peer": mine["time_below_54_pct"] <= best_low[1] + 1e-9,
            "every row <54 < 1%": mine["worst_row_below_54_pct"] < ROW_BELOW_54_LIMIT_PCT,
        }
        verdicts.append(verdict)
    return verdicts


def format_report(arms: dict[str, list[dict[str, Any]]], configs: list[dict[str, Any]], arm: str = "glucotwin") -> str:
    lines = []
    described = {json.dumps({k: v for k, v in c.items() if k != "file"}, sort_keys=True) for c in configs}
    lines.append("Comparison on true plasma glucose (group = mean over subject x seed rows); runs: "
                 + "; ".join(sorted(described)))
    headers = ["group", "arm", "n", *(h for _, h, _ in COLUMNS)]
    table = []
    means = {name: group_means(rows) for name, rows in arms.items()}
    for group in (*GROUPS, "all"):
        for name in arms:
            entry = means[name].get(group)
            if entry is None:
                continue
            table.append([group, name, str(int(entry["n_rows"])),
                          *("nan" if math.isnan(entry[k]) else f.format(entry[k]) for k, _, f in COLUMNS)])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    render = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                     for i, (c, w) in enumerate(zip(cells, widths)))
    lines += [render(headers), render(["-" * w for w in widths]), *map(render, table), ""]
    try:
        verdicts = check_goal(arms, arm)
    except ComparisonError as error:
        lines.append(f"goal check not possible: {error}")
        return "\n".join(lines)
    lines.append(f"Goal check for {arm!r} (peers: {', '.join(n for n in arms if n != arm and not n.startswith(arm))}):")
    for v in verdicts:
        ratio = v.arm_tor / v.best_peer_tor[1] if v.best_peer_tor[1] > 0 else math.inf
        lines.append(
            f"  {v.group:10s} TOR {v.arm_tor:.1f}% vs best peer {v.best_peer_tor[0]} {v.best_peer_tor[1]:.1f}% "
            f"(ratio {ratio:.2f}, goal <= 0.67); <54 {v.arm_below_54:.2f}% vs best {v.best_peer_below_54[0]} "
            f"{v.best_peer_below_54[1]:.2f}%; worst row <54 {v.arm_worst_row_below_54:.2f}% -> "
            + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in v.checks.items()))
    lines.append("goal " + ("MET in every age group" if all(v.met for v in verdicts) else "NOT met"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare trial arms from `glucotwin trial --json` results.")
    parser.add_argument("results", nargs="+", help="JSON files written by glucotwin trial --json")
    parser.add_argument("--arm", default="glucotwin", help="the arm checked against the others (default glucotwin)")
    parser.add_argument("--json", metavar="OUT", help="also write group means and verdicts as JSON")
    args = parser.parse_args(argv)
    try:
        arms, configs = load_rows(args.results)
        print(format_report(arms, configs, args.arm))
        if args.json:
            verdicts = check_goal(arms, args.arm)
            Path(args.json).write_text(json.dumps({
                "runs": configs,
                "groups": {name: group_means(rows) for name, rows in arms.items()},
                "verdicts": [{"group": v.group, "checks": v.checks, "arm_tor_pct": v.arm_tor,
                              "best_peer_tor": v.best_peer_tor, "arm_below_54_pct": v.arm_below_54,
                              "best_peer_below_54": v.best_peer_below_54,
                              "arm_worst_row_below_54_pct": v.arm_worst_row_below_54} for v in verdicts],
            }, indent=2) + "\n", encoding="utf-8")
    except ComparisonError as error:
        print(f"compare: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
