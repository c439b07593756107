"""Trial results: per-age-group summaries, printed tables, JSON and CSV files.

Group figures are means over rows (subject x seed) of the per-row metrics, computed on TRUE plasma glucose
(5-min samples) unless ``source="sensor"`` is asked for (the CGM readings the arm saw).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from hardware_sim.trial.engine import RowResults, TrialResult

GROUP_ORDER: tuple[str, ...] = ("adult", "adolescent", "child")

#: (metric key, column header, format) of the printed table, in Battelino 2019 reporting order.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("time_in_range_70_180_pct", "TIR70-180%", "{:.1f}"),
    ("time_below_70_pct", "<70%", "{:.1f}"),
    ("time_below_54_pct", "<54%", "{:.1f}"),
    ("time_above_180_pct", ">180%", "{:.1f}"),
    ("time_above_250_pct", ">250%", "{:.1f}"),
    ("mean_glucose_mg_dl", "mean", "{:.0f}"),
    ("cv_pct", "CV%", "{:.1f}"),
    ("gmi_pct", "GMI%", "{:.2f}"),
    ("lbgi", "LBGI", "{:.2f}"),
    ("hbgi", "HBGI", "{:.2f}"),
    ("gri", "GRI", "{:.1f}"),
)
SUMMARY_METRICS: tuple[str, ...] = tuple(key for key, _, _ in TABLE_COLUMNS)


def _metrics(rows: RowResults, source: str) -> dict[str, np.ndarray]:
    if source == "true":
        return rows.metrics
    if source == "sensor":
        return rows.sensor_metrics
    raise ValueError(f"metric source must be 'true' or 'sensor', got {source!r}")


def group_summary(rows: RowResults, source: str = "true") -> dict[str, dict[str, float]]:
    """{group: {"n_rows": n, metric: mean over rows, metric + "_sd": sd over rows}} with an "all" entry."""
    metrics = _metrics(rows, source)
    groups = np.asarray(rows.age_groups)
    out: dict[str, dict[str, float]] = {}
    present = [g for g in GROUP_ORDER if (groups == g).any()] + sorted(set(groups.tolist()) - set(GROUP_ORDER))
    for group in [*present, "all"]:
        mask = np.ones(groups.shape, dtype=bool) if group == "all" else groups == group
        entry: dict[str, float] = {"n_rows": int(mask.sum())}
        for key in SUMMARY_METRICS:
            values = np.asarray(metrics[key], dtype=float)[mask]
            finite = values[~np.isnan(values)]
            entry[key] = float(finite.mean()) if finite.size else math.nan
            entry[key + "_sd"] = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
        for key in ("insulin_u_per_day", "rescue_carbs_g_per_day"):
            entry[key] = float(np.mean(rows.totals[key][mask]))
        out[group] = entry
    return out


def _fmt(value: float, fmt: str) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def format_table(result: TrialResult, *, per_subject: bool = False, source: str = "true") -> str:
    """A plain-text table: one line per arm x age group (and per row with ``per_subject``)."""
    headers = ["arm", "group", "n", *(h for _, h, _ in TABLE_COLUMNS), "U/day"]
    lines: list[list[str]] = []
    for arm, rows in result.arms.items():
        for group, entry in group_summary(rows, source).items():
            lines.append([arm, group, str(entry["n_rows"]),
                          *(_fmt(entry[k], f) for k, _, f in TABLE_COLUMNS), f"{entry['insulin_u_per_day']:.1f}"])
        if per_subject:
            metrics = _metrics(rows, source)
            for i in range(rows.n_rows):
                label = f"{rows.names[i]}@{rows.seeds[i]}"
                lines.append([arm, label, "1", *(_fmt(float(metrics[k][i]), f) for k, _, f in TABLE_COLUMNS),
                              f"{rows.totals['insulin_u_per_day'][i]:.1f}"])
    widths = [max(len(headers[c]), *(len(line[c]) for line in lines)) if lines else len(headers[c])
              for c in range(len(headers))]
    render = lambda cells: "  ".join(  # noqa: E731
        cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(cells, widths)))
    notes = []
    for arm, rows in result.arms.items():
        floor_rows = [f"{rows.names[i]}@{rows.seeds[i]}" for i in range(rows.n_rows)
                      if rows.totals["model_glucose_below_20_pct"][i] > 0]
        if floor_rows:
            notes.append(f"note: {arm}: true glucose fell below 20 mg/dL (floored at 20 for the metrics; S2008 has "
                         f"no counter-regulation) in {len(floor_rows)} rows: {', '.join(floor_rows[:10])}"
                         + (", ..." if len(floor_rows) > 10 else ""))
    where = "true plasma glucose" if source == "true" else "CGM readings"
    title = (f"In-silico trial: cohort {result.cohort_label}, {result.config.days:g} days, seeds "
             f"{','.join(map(str, result.config.seeds))}, scenario {result.config.scenario_spec().name}; "
             f"metrics on {where} (group = mean over subject x seed)")
    return "\n".join([title, render(headers), render(["-" * w for w in widths]), *map(render, lines), *notes])


def _clean(value: object) -> object:
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return value


def row_records(rows: RowResults) -> list[dict[str, object]]:
    """One flat dict per row: identity, true-glucose metrics, ``sensor_*`` metrics and totals."""
    records = []
    for i in range(rows.n_rows):
        record: dict[str, object] = {"arm": rows.arm, "subject": rows.names[i], "age_group": rows.age_groups[i],
                                     "seed": int(rows.seeds[i]), "replicate": int(rows.replicates[i])}
        record.update({k: _clean(v[i]) for k, v in rows.metrics.items()})
        record.update({f"sensor_{k}": _clean(v[i]) for k, v in rows.sensor_metrics.items()})
        record.update({k: _clean(v[i]) for k, v in rows.totals.items()})
        records.append(record)
    return records


def to_json_dict(result: TrialResult) -> dict[str, object]:
    return {
        "cohort": result.cohort_label,
        "config": result.config.description(),
        "metric_source": "true plasma glucose, 5-min samples (sensor_* fields: CGM readings)",
        "wall_time_s": _clean(result.wall_time_s),
        "arms": {
            arm: {
                "groups": {g: {k: _clean(v) for k, v in e.items()} for g, e in group_summary(rows).items()},
                "sensor_groups": {g: {k: _clean(v) for k, v in e.items()}
                                  for g, e in group_summary(rows, "sensor").items()},
                "rows": row_records(rows),
            }
            for arm, rows in result.arms.items()
        },
    }


def write_json(result: TrialResult, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_json_dict(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_csv(result: TrialResult, path: str | Path) -> Path:
    """One line per arm x row (subject x seed), every metric and total as a column; NaN as an empty cell."""
    path = Path(path)
    records = [r for rows in result.arms.values() for r in row_records(rows)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["arm"])
        writer.writeheader()
        for record in records:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return path
