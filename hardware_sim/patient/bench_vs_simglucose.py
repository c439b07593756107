"""Speed of the vectorised cohort model against simglucose 0.2.11's T1DPatient, same protocol, same machine.

Run with the simglucose virtualenv (see reference/make_simglucose_fixtures.py) from the project root:

    cd /work/main && /tmp/simglucose-venv/bin/python -m hardware_sim.patient.bench_vs_simglucose

simglucose is slow (one dopri5 solve per patient-minute), so it runs only a SUBSET (default 3 patients x 1
day) and its time is extrapolated linearly to the full workload (30 patients x 14 days); the table says so.
Our engine runs the full workload (all subjects together, stepped minute by minute with per-minute inputs,
as a trial does). Without simglucose installed, ``--simglucose-from-fixture`` uses the wall time recorded when
the agreement fixture was generated (30 patient-days) instead of a fresh measurement.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.patient.reference.make_simglucose_fixtures import DEFAULT_OUTPUT, protocol, run_simglucose
from hardware_sim.patient.uva_padova import UvaPadovaCohortModel

MIN_PER_DAY = 1440


def run_ours(selection: str, days: int, substeps_per_min: int) -> tuple[float, float, np.ndarray]:
    """Wall and CPU time (s), final plasma glucose, for ``days`` of the daily protocol, all subjects at once."""
    cohort = load_cohort(selection)
    carbs_day, insulin_day = protocol(cohort.basal_u_per_h / 60.0, cohort.carb_ratio_g_per_u, MIN_PER_DAY)
    model = UvaPadovaCohortModel(cohort, substeps_per_min=substeps_per_min)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(days):
        for t in range(MIN_PER_DAY):
            model.step(carbs_day[t], insulin_day[:, t])
    return time.perf_counter() - started, time.process_time() - cpu_started, model.plasma_glucose_mg_dl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=14, help="days for the full workload (default 14)")
    parser.add_argument("--reference-patients", default="adult#001,adolescent#001,child#001",
                        help="subset run through simglucose")
    parser.add_argument("--reference-days", type=int, default=1)
    parser.add_argument("--substeps-per-min", type=int, default=2)
    parser.add_argument("--simglucose-from-fixture", action="store_true",
                        help="use the simglucose time stored in the agreement fixture instead of running it")
    args = parser.parse_args(argv)

    full = load_cohort("all")
    full_patient_days = full.size * args.days

    if args.simglucose_from_fixture:
        with np.load(Path(DEFAULT_OUTPUT)) as data:
            ref_seconds = float(data["simglucose_seconds"])
            ref_cpu = float("nan")
            ref_patient_days = len(data["names"]) * data["carbs_g_per_min"].size / MIN_PER_DAY
        ref_label = f"simglucose 0.2.11, {ref_patient_days:.0f} patient-days (time recorded in fixture)"
    else:
        subset = load_cohort(args.reference_patients)
        carbs, insulin = protocol(subset.basal_u_per_h / 60.0, subset.carb_ratio_g_per_u, MIN_PER_DAY)
        carbs = np.tile(carbs, args.reference_days)
        insulin = np.tile(insulin, (1, args.reference_days))
        started, cpu_started = time.perf_counter(), time.process_time()
        run_simglucose(list(subset.names), carbs, insulin)
        ref_seconds = time.perf_counter() - started
        ref_cpu = time.process_time() - cpu_started
        ref_patient_days = subset.size * args.reference_days
        ref_label = f"simglucose 0.2.11, {subset.size} patients x {args.reference_days} day (measured)"
    sec_per_patient_day_ref = ref_seconds / ref_patient_days
    extrapolated = sec_per_patient_day_ref * full_patient_days
    extrapolated_cpu = ref_cpu / ref_patient_days * full_patient_days

    ours_seconds, ours_cpu, final = run_ours("all", args.days, args.substeps_per_min)
    if not np.all(np.isfinite(final)):
        raise SystemExit("our engine produced non-finite glucose")
    single_seconds, single_cpu, _ = run_ours(full.names[0], 1, args.substeps_per_min)

    rows = [
        (ref_label, ref_patient_days, ref_seconds, ref_cpu),
        (f"simglucose, {full.size} x {args.days} days (EXTRAPOLATED linearly)", full_patient_days, extrapolated,
         extrapolated_cpu),
        (f"UvaPadovaCohortModel, {full.size} x {args.days} days (measured, RK4 x{args.substeps_per_min}/min)",
         full_patient_days, ours_seconds, ours_cpu),
        ("UvaPadovaCohortModel, 1 patient x 1 day (measured, no vectorisation gain)", 1, single_seconds,
         single_cpu),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'run':<{width}}  {'patient-days':>12}  {'wall s':>9}  {'cpu s':>9}  {'wall s/patient-day':>18}")
    for label, pdays, seconds, cpu in rows:
        print(f"{label:<{width}}  {pdays:>12.0f}  {seconds:>9.2f}  {cpu:>9.2f}  {seconds / pdays:>18.4f}")
    print(f"\nspeed-up on {full.size} patients x {args.days} days: wall {extrapolated / ours_seconds:.0f}x, "
          f"cpu {extrapolated_cpu / ours_cpu:.0f}x "
          f"(simglucose extrapolated from {ref_patient_days:.0f} patient-days; goal >= 50x)")
    print(f"speed-up per patient-day for a single patient: {sec_per_patient_day_ref / single_seconds:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
