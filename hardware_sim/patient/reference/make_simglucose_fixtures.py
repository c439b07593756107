"""Run simglucose's own T1DPatient on a fixed protocol and save its glucose traces as test fixtures.

Reference for tests/hardware_sim/test_uva_padova_agreement.py, which runs our vectorised model on the same
inputs. simglucose is not a project dependency: run this with a separate virtualenv, e.g.

    python3.11 -m venv /tmp/simglucose-venv
    /tmp/simglucose-venv/bin/pip install "setuptools<82" simglucose==0.2.11
    cd /work/main && /tmp/simglucose-venv/bin/python -m hardware_sim.patient.reference.make_simglucose_fixtures

Protocol (identical for both simulators, see :func:`protocol`): 24 h from the published steady state;
breakfast 45 g at 07:00, lunch 70 g at 12:00, dinner 80 g at 18:00, each eaten at 5 g/min (simglucose's
EAT_RATE), a meal bolus of carbs/CR delivered within the first minute of each meal, and the steady-state basal
rate u2ss*BW/6000 U/min throughout. simglucose is stepped one minute at a time with
Action(CHO=eating rate, insulin=rate), which makes its meal-announcement queue pass the rate through unchanged.

Output: tests/hardware_sim/fixtures/simglucose_0_2_11_24h.npz (names, inputs, plasma and interstitial
glucose every minute).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "tests" / "hardware_sim" / "fixtures" / "simglucose_0_2_11_24h.npz"
MEALS_MIN_G: tuple[tuple[int, float], ...] = ((7 * 60, 45.0), (12 * 60, 70.0), (18 * 60, 80.0))
EAT_RATE_G_PER_MIN = 5.0


def protocol(
    basal_u_per_min: np.ndarray, carb_ratio_g_per_u: np.ndarray, duration_min: int = 1440
) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute inputs: carbs (duration,) in g/min and insulin (M, duration) in U/min."""
    carbs = np.zeros(duration_min)
    insulin = np.repeat(np.asarray(basal_u_per_min, dtype=np.float64)[:, None], duration_min, axis=1)
    for start, grams in MEALS_MIN_G:
        if start >= duration_min:
            continue
        n_full, rest = divmod(grams, EAT_RATE_G_PER_MIN)
        rates = [EAT_RATE_G_PER_MIN] * int(n_full) + ([rest] if rest > 0 else [])
        carbs[start : start + len(rates)] = rates[: duration_min - start]
        insulin[:, start] += grams / np.asarray(carb_ratio_g_per_u, dtype=np.float64)
    return carbs, insulin


def run_simglucose(names: list[str], carbs: np.ndarray, insulin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """simglucose T1DPatient traces: plasma Gp/Vg and interstitial Gs/Vg, shape (M, duration + 1)."""
    from simglucose.patient.t1dpatient import Action, T1DPatient  # only in the reference venv

    duration = carbs.size
    plasma = np.empty((len(names), duration + 1))
    inter = np.empty_like(plasma)
    for i, name in enumerate(names):
        patient = T1DPatient.withName(name)
        vg = float(patient._params.Vg)
        plasma[i, 0] = patient.state[3] / vg
        inter[i, 0] = patient.observation.Gsub
        for t in range(duration):
            patient.step(Action(CHO=float(carbs[t]), insulin=float(insulin[i, t])))
            plasma[i, t + 1] = patient.state[3] / vg
            inter[i, t + 1] = patient.observation.Gsub
    return plasma, inter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--duration-min", type=int, default=1440)
    args = parser.parse_args(argv)

    project_root = Path(__file__).resolve().parents[3]
    if str(project_root) not in sys.path:
        sys.path.insert(0, str(project_root))
    from hardware_sim.patient.cohort import load_cohort

    cohort = load_cohort("all")
    carbs, insulin = protocol(cohort.basal_u_per_h / 60.0, cohort.carb_ratio_g_per_u, args.duration_min)
    t0 = time.perf_counter()
    plasma, inter = run_simglucose(list(cohort.names), carbs, insulin)
    elapsed = time.perf_counter() - t0
    import simglucose  # noqa: F401 - version stamp

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        names=np.array(cohort.names),
        carbs_g_per_min=carbs,
        insulin_u_per_min=insulin,
        plasma_glucose_mg_dl=plasma,
        interstitial_glucose_mg_dl=inter,
        simglucose_version=np.array("0.2.11"),
        simglucose_seconds=np.array(elapsed),
    )
    print(f"{len(cohort.names)} subjects x {args.duration_min} min in {elapsed:.1f} s -> {args.output} "
          f"({args.output.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
