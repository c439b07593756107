"""Virtual-patient data sets for training and testing glucose forecasters.

Rows (one virtual subject under one scenario and one seed) are run through the in-silico trial engine
(:mod:`hardware_sim.trial.engine`: UVA/Padova S2008 physiology, a realistic CGM, the pump, a basal-bolus arm
that boluses for what is ANNOUNCED, with carb-count errors, missed boluses, unannounced snacks, sensitivity
drift and dawn phenomenon from the scenario). Each row yields what a hub would have recorded:

* CGM readings every 5 min (NaN while the sensor warms up or drops out),
* bolus units commanded at each 5-min instant, the scheduled basal rate (the arm never changes it),
* announced carbs at each instant,
and, for analysis only, true plasma glucose and carbs actually eaten.

Splits are by WHOLE SUBJECTS (:data:`TEST_SUBJECTS` are never in training or validation):

* ``train``: the 24 published subjects that are not test subjects, plus a sampled population drawn around
  THOSE 24 only (:func:`hardware_sim.patient.sample_population` with ``base`` = the training subjects), so no
  test subject's parameters leak into training through the population sampler;
* ``val``: another sampled population (other seed) around the same 24, for early stopping and model choice;
* ``test``: the published adult/adolescent/child #009 and #010, under their own seeds.

Outputs in ``out_dir``:

* ``dataset.npz``: per-row arrays on one 5-min grid (float32; see :func:`write_npz`) with split labels,
* ``recordings/<split>/<row>.csv`` in the documented recording CSV format read by
  :func:`models.evaluation.recordings.load_csv` (``timestamp`` ISO-8601 UTC, ``glucose_mg_dl``,
  ``bolus_units``, ``basal_units_per_hour``, ``carbs_g``) and ``<row>.settings.json`` (the subject's
  therapy settings: basal, ISF = correction factor, carb ratio, weight) for ``glucotwin eval forecast``,
* ``manifest.json``: the plan, the subjects of each split and the SHA-256 of ``dataset.npz``.

Everything is determined by the :class:`DatasetPlan` (seeds included): same plan, same bytes.

CLI (``python -m hardware_sim.datasets`` or, once wired, ``glucotwin sim dataset``)::

    python -m hardware_sim.datasets --out /tmp/glucotwin-data --days 3 --population 60
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from hardware_sim.patient.cohort import AGE_GROUPS, Cohort, load_cohort, sample_population
from hardware_sim.pump_model import InsulinPumpArray, PumpParameters
from hardware_sim.trial.engine import TrialConfig, run_trial

TEST_SUBJECTS: tuple[str, ...] = (
    "adult#009", "adult#010", "adolescent#009", "adolescent#010", "child#009", "child#010",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
SAMPLE_INTERVAL_MIN = 5
RECORDING_EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC: trial minute 0
NPZ_SCHEMA_VERSION = 1


class DatasetPlanError(ValueError):
    """A dataset plan that cannot be generated (no days, overlapping seeds, unknown split...)."""


@dataclass(frozen=True)
class DatasetPlan:
    """What to simulate. Seeds of the three splits must not overlap (distinct realisations)."""

    days: float = 3.0
    scenarios: tuple[str, ...] = ("realistic", "challenging")
    sensor: str = "realistic"
    arm: str = "basal-bolus"
    train_seeds: tuple[int, ...] = (1, 2, 3)
    train_population: int = 60
    train_population_seed: int = 1001
    train_population_run_seeds: tuple[int, ...] = (11,)
    val_population: int = 12
    val_population_seed: int = 2002
    val_seeds: tuple[int, ...] = (21,)
    test_seeds: tuple[int, ...] = (101, 102)
    test_subjects: tuple[str, ...] = TEST_SUBJECTS
    train_subjects: tuple[str, ...] = ()  # empty: every published subject that is not a test subject
    recordings_for: tuple[str, ...] = ("val", "test")

    def __post_init__(self) -> None:
        if not self.days > 0:
            raise DatasetPlanError(f"days must be > 0, got {self.days}")
        if not self.scenarios:
            raise DatasetPlanError("at least one scenario is needed")
        unknown = set(self.recordings_for) - set(SPLITS)
        if unknown:
            raise DatasetPlanError(f"unknown split(s) {sorted(unknown)}; known: {SPLITS}")
        seed_sets = [set(self.train_seeds) | set(self.train_population_run_seeds), set(self.val_seeds),
                     set(self.test_seeds)]
        if any(seed_sets[i] & seed_sets[j] for i in range(3) for j in range(i + 1, 3)):
            raise DatasetPlanError("train, val and test seeds must not overlap")
        if set(self.train_subjects) & set(self.test_subjects):
            raise DatasetPlanError("a test subject cannot also be a training subject")
        if self.train_population < 0 or self.val_population < 0:
            raise DatasetPlanError("population sizes must be >= 0")


@dataclass
class DatasetRows:
    """Per-row data of one split (M rows, N samples on the 5-min grid)."""

    split: str
    labels: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    age_groups: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    basal_u_per_h: list[float] = field(default_factory=list)
    isf_mg_dl_per_u: list[float] = field(default_factory=list)
    carb_ratio_g_per_u: list[float] = field(default_factory=list)
    body_weight_kg: list[float] = field(default_factory=list)
    arrays: dict[str, list[NDArray]] = field(default_factory=dict)

    def add(self, key: str, values: NDArray) -> None:
        self.arrays.setdefault(key, []).append(values)


TRACE_KEYS = {  # npz name -> trial trace name
    "cgm_mg_dl": "cgm_mg_dl",
    "true_glucose_mg_dl": "true_glucose_mg_dl",
    "bolus_u": "bolus_u",
    "carbs_announced_g": "carbs_announced_g",
    "carbs_eaten_g": "carbs_eaten_g",
    "rescue_carbs_g": "rescue_carbs_g",
}


def training_subjects(plan: DatasetPlan) -> Cohort:
    """The published subjects used for training (never a test subject)."""
    if plan.train_subjects:
        return load_cohort(",".join(plan.train_subjects))
    published = load_cohort("all")
    keep = [i for i, name in enumerate(published.names) if name not in set(plan.test_subjects)]
    return published.take(keep)


def split_cohorts(plan: DatasetPlan) -> dict[str, list[tuple[Cohort, tuple[int, ...]]]]:
    """Per split: (cohort, run seeds) pairs. Populations are sampled around the training subjects only."""
    base = training_subjects(plan)
    groups = [g for g in AGE_GROUPS if g in set(base.age_groups)]
    train: list[tuple[Cohort, tuple[int, ...]]] = [(base, plan.train_seeds)]
    if plan.train_population:
        train.append((sample_population(plan.train_population, plan.train_population_seed, base, age_groups=groups),
                      plan.train_population_run_seeds))
    val = []
    if plan.val_population:
        val.append((sample_population(plan.val_population, plan.val_population_seed, base, age_groups=groups),
                    plan.val_seeds))
    test = [(load_cohort(",".join(plan.test_subjects)), plan.test_seeds)] if plan.test_subjects else []
    return {"train": train, "val": val, "test": test}


def _scheduled_basal(cohort: Cohort) -> NDArray[np.float64]:
    """The rate the pump actually runs (the engine rounds the subject's basal to the pump's resolution)."""
    return InsulinPumpArray(cohort.basal_u_per_h, PumpParameters()).basal_schedule_u_per_h[:, 0].copy()


def simulate_split(split: str, parts: Sequence[tuple[Cohort, tuple[int, ...]]], plan: DatasetPlan) -> DatasetRows:
    """Run every (cohort, seeds) part under every scenario; seeds are offset per scenario (1000 * index)."""
    rows = DatasetRows(split)
    for s_index, scenario in enumerate(plan.scenarios):
        for cohort, seeds in parts:
            run_seeds = tuple(1000 * s_index + int(s) for s in seeds)
            config = TrialConfig(days=plan.days, seeds=run_seeds, scenario=scenario, sensor=plan.sensor,
                                 keep_traces=True)
            result = run_trial([plan.arm], cohort, config, cohort_label=split).arms[plan.arm]
            assert result.traces is not None
            basal = np.tile(_scheduled_basal(cohort), len(run_seeds))
            tiled = cohort.repeat(len(run_seeds))
            for i, name in enumerate(result.names):
                seed = int(result.seeds[i])
                rows.labels.append(f"{name.replace('#', '_')}_{scenario}_s{seed}")
                rows.subjects.append(name)
                rows.age_groups.append(result.age_groups[i])
                rows.scenarios.append(scenario)
                rows.seeds.append(seed)
                rows.basal_u_per_h.append(float(basal[i]))
                rows.isf_mg_dl_per_u.append(float(tiled.correction_factor_mg_dl_per_u[i]))
                rows.carb_ratio_g_per_u.append(float(tiled.carb_ratio_g_per_u[i]))
                rows.body_weight_kg.append(float(tiled.body_weight_kg[i]))
                for key, trace in TRACE_KEYS.items():
                    rows.add(key, np.asarray(result.traces[trace][i], dtype=np.float32))
    return rows


def write_npz(path: Path, splits: dict[str, DatasetRows]) -> str:
    """One compressed .npz with all rows; returns its SHA-256.

    Arrays: ``minutes`` (N,) sample times; per row (M,): ``label``, ``subject``, ``age_group``, ``scenario``,
    ``split``, ``seed``, ``basal_u_per_h``, ``isf_mg_dl_per_u``, ``carb_ratio_g_per_u``, ``body_weight_kg``;
    per row and sample (M, N) float32: ``cgm_mg_dl`` (NaN = no reading), ``true_glucose_mg_dl`` (plasma),
    ``bolus_u`` (commanded at that instant), ``carbs_announced_g``, ``carbs_eaten_g``, ``rescue_carbs_g``
    (eaten in the 5 min from that instant).
    """
    ordered = [splits[s] for s in SPLITS if s in splits and splits[s].labels]
    if not ordered:
        raise DatasetPlanError("nothing to write: every split is empty")
    n = ordered[0].arrays["cgm_mg_dl"][0].size
    data: dict[str, NDArray] = {
        "schema_version": np.array(NPZ_SCHEMA_VERSION),
        "minutes": np.arange(n, dtype=np.float32) * SAMPLE_INTERVAL_MIN,
        "split": np.array([r.split for r in ordered for _ in r.labels]),
    }
    for name in ("labels", "subjects", "age_groups", "scenarios"):
        data[name[:-1]] = np.array([v for r in ordered for v in getattr(r, name)])
    data["seed"] = np.array([v for r in ordered for v in r.seeds], dtype=np.int64)
    for name in ("basal_u_per_h", "isf_mg_dl_per_u", "carb_ratio_g_per_u", "body_weight_kg"):
        data[name] = np.array([v for r in ordered for v in getattr(r, name)], dtype=np.float64)
    for key in TRACE_KEYS:
        data[key] = np.stack([a for r in ordered for a in r.arrays[key]])
    # np.savez_compressed writes zip entries with fixed timestamps, so the bytes depend only on the data
    np.savez_compressed(path, **data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value != int(value) else str(int(value))


def write_recording_csv(path: Path, rows: DatasetRows, i: int) -> None:
    """Row ``i`` as a documented recording CSV: one line per 5-min instant, blanks for no value."""
    cgm = rows.arrays["cgm_mg_dl"][i]
    bolus = rows.arrays["bolus_u"][i]
    carbs = rows.arrays["carbs_announced_g"][i]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "glucose_mg_dl", "bolus_units", "basal_units_per_hour", "carbs_g"])
        for k in range(cgm.size):
            moment = RECORDING_EPOCH + timedelta(minutes=SAMPLE_INTERVAL_MIN * k)
            writer.writerow([
                moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "" if np.isnan(cgm[k]) else _fmt(float(cgm[k])),
                _fmt(round(float(bolus[k]), 3)) if bolus[k] > 0 else "",
                _fmt(rows.basal_u_per_h[i]) if k == 0 else "",
                _fmt(float(carbs[k])) if carbs[k] > 0 else "",
            ])
    settings = {
        "subject": rows.subjects[i], "age_group": rows.age_groups[i], "scenario": rows.scenarios[i],
        "seed": rows.seeds[i], "basal_u_per_h": rows.basal_u_per_h[i],
        "insulin_sensitivity_mg_dl_per_u": rows.isf_mg_dl_per_u[i], "carb_ratio_g_per_u": rows.carb_ratio_g_per_u[i],
        "body_weight_kg": rows.body_weight_kg[i],
    }
    path.with_suffix(".settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def generate(plan: DatasetPlan, out_dir: str | Path) -> dict[str, object]:
    """Simulate every split, write ``dataset.npz``, the recordings asked for and ``manifest.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {name: simulate_split(name, parts, plan) for name, parts in split_cohorts(plan).items()}
    digest = write_npz(out / "dataset.npz", splits)
    for name in plan.recordings_for:
        rows = splits.get(name)
        if rows is None or not rows.labels:
            continue
        folder = out / "recordings" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, label in enumerate(rows.labels):
            write_recording_csv(folder / f"{label}.csv", rows, i)
    manifest: dict[str, object] = {
        "plan": asdict(plan),
        "npz_sha256": digest,
        "rows": {name: len(rows.labels) for name, rows in splits.items()},
        "subjects": {name: sorted(set(rows.subjects)) for name, rows in splits.items()},
        "row_days": {name: len(rows.labels) * plan.days for name, rows in splits.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="glucotwin sim dataset", description=__doc__.split("\n")[0])
    d = DatasetPlan()
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--days", type=float, default=d.days, help=f"days per row (default {d.days:g})")
    parser.add_argument("--scenarios", default=",".join(d.scenarios), help="comma-separated scenario presets")
    parser.add_argument("--sensor", default=d.sensor, help="CGM sensor preset (default realistic)")
    parser.add_argument("--train-seeds", type=_int_tuple, default=d.train_seeds)
    parser.add_argument("--population", type=int, default=d.train_population,
                        help="sampled training subjects (around the 24 training subjects)")
    parser.add_argument("--val-population", type=int, default=d.val_population)
    parser.add_argument("--test-seeds", type=_int_tuple, default=d.test_seeds)
    parser.add_argument("--recordings", default=",".join(d.recordings_for),
                        help="splits to write CSV recordings for (default val,test)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Handler shared by ``main`` and a ``glucotwin sim dataset`` sub-command."""
    try:
        plan = DatasetPlan(
            days=args.days, scenarios=tuple(s.strip() for s in args.scenarios.split(",") if s.strip()),
            sensor=args.sensor, train_seeds=args.train_seeds, train_population=args.population,
            val_population=args.val_population, test_seeds=args.test_seeds,
            recordings_for=tuple(s.strip() for s in args.recordings.split(",") if s.strip()),
        )
        manifest = generate(plan, args.out)
    except (DatasetPlanError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("rows", "row_days", "npz_sha256")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
