"""Per-decision cost of each trial arm, side by side with the basal-bolus baseline (a table, not a test).

Usage: ``python -m hardware_sim.trial.peers.bench_arms [--subject adult#001] [--hours 12] [--arms ...]``.
For every arm the same subject, seed and scenario run through the trial engine; reported are wall time and
CPU time per decision (one decision = one row x one 5-min step), the CPU split between this process and the
peer's own process (node for oref0, the Loop virtualenv's python for Loop), and the engine-only baseline.
The machine is shared: CPU time is the figure to compare, wall time depends on the load.
"""

from __future__ import annotations

import argparse
import os
import time

from hardware_sim.patient.cohort import load_cohort
from hardware_sim.trial.arms import make_arm
from hardware_sim.trial.engine import TrialConfig, run_trial

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """utime + stime of a live process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _peer_pid(arm: object) -> int | None:
    service = getattr(arm, "_service", None)
    process = getattr(service, "process", None)
    return process.pid if process is not None else None


def measure(arm_name: str, subject: str, hours: float, seed: int = 1) -> dict[str, float]:
    arm = make_arm(arm_name)
    config = TrialConfig(days=hours / 24.0, seeds=(seed,), scenario="challenging")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run_trial([arm], load_cohort(subject), config)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    pid = _peer_pid(arm)
    peer_cpu = _process_cpu_s(pid) if pid else 0.0
    if hasattr(arm, "close"):
        arm.close()
    decisions = config.n_samples
    rows = result.arms[arm.name]
    return {"decisions": decisions, "wall_ms": 1000 * wall / decisions, "cpu_ms": 1000 * cpu / decisions,
            "peer_cpu_ms": 1000 * peer_cpu / decisions, "tir": float(rows.metrics["time_in_range_70_180_pct"][0])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", default="adult#001")
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--arms", default="basal-bolus,glucotwin,glucotwin-every-step,oref0,loop")
    args = parser.parse_args(argv)
    print(f"per-decision cost, {args.subject}, {args.hours:g} h challenging, seed 1 "
          f"(baseline: basal-bolus = the engine alone)")
    print(f"{'arm':22s} {'decisions':>9s} {'wall ms':>8s} {'cpu ms':>7s} {'peer cpu ms':>11s} {'total cpu ms':>12s}"
          f" {'x baseline':>10s}")
    baseline = None
    for name in [a.strip() for a in args.arms.split(",") if a.strip()]:
        m = measure(name, args.subject, args.hours)
        total = m["cpu_ms"] + m["peer_cpu_ms"]
        baseline = baseline or total
        print(f"{name:22s} {m['decisions']:9d} {m['wall_ms']:8.1f} {m['cpu_ms']:7.2f} {m['peer_cpu_ms']:11.2f}"
              f" {total:12.2f} {total / baseline:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
