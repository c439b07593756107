"""Run a long comparison in resumable chunks: one ``glucotwin trial`` per arm x age group x seed.

The full comparison (30 subjects x 14 days x 3 seeds x 4 arms) costs about 14 CPU-hours on this machine, most
of it in the peers. Measured per chunk of 10 adults x 14 days (seed 1, challenging): Loop about 58 CPU-minutes
(5,086 s wall), oref0 about 33 (3,589 s wall), both sharing 2 cores with other work; GlucoTwin 207-249 s and
basal-bolus 12-14 s wall (see also ``bench_arms``). Run as chunks, it survives interruptions: every finished chunk is a
JSON file in ``--out`` (written under a temporary name and renamed when complete), and a rerun skips the
chunks already there. Runners given different ``--groups`` can share one ``--out`` and both cores.
``compare`` then pools every chunk it is given.

Usage::

    python -m hardware_sim.trial.peers.chunked --out var/h14 --arms basal-bolus,oref0,loop,glucotwin \\
        --days 14 --seeds 1,2,3 --scenario challenging
    python -m hardware_sim.trial.peers.compare var/h14/*.json

A chunk of an arm whose code changed must be deleted by hand to be run again (peers' chunks stay valid).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

GROUPS = ("adults", "adolescents", "children")


def chunk_path(out: Path, arm: str, group: str, seed: int, days: float, scenario: str) -> Path:
    return out / f"{arm}-{group}-s{seed}-d{days:g}-{scenario}.json"


def planned_chunks(arms: list[str], seeds: list[int],
                   groups: tuple[str, ...] = GROUPS) -> list[tuple[str, str, int]]:
    """Seed-major order, so that a partial run has whole seeds of every arm to compare first."""
    return [(arm, group, seed) for seed in seeds for group in groups for arm in arms]


def run_chunk(out: Path, arm: str, group: str, seed: int, days: float, scenario: str) -> float:
    target = chunk_path(out, arm, group, seed, days, scenario)
    partial = target.with_suffix(".part")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "edge.cli", "trial", "--arms", arm, "--cohort", group, "--days", f"{days:g}",
                    "--seeds", str(seed), "--scenario", scenario, "--no-progress", "--json", str(partial)],
                   check=True, stdout=subprocess.DEVNULL)
    partial.rename(target)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory of chunk results")
    parser.add_argument("--arms", default="basal-bolus,oref0,loop,glucotwin")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--scenario", default="challenging")
    parser.add_argument("--groups", default=",".join(GROUPS),
                        help="age groups to run; separate runners on separate groups can share one --out")
    args = parser.parse_args(argv)
    groups = tuple(args.groups.split(","))
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown age group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = planned_chunks(args.arms.split(","), [int(s) for s in args.seeds.split(",")], groups)
    for index, (arm, group, seed) in enumerate(chunks, 1):
        if chunk_path(args.out, arm, group, seed, args.days, args.scenario).exists():
            continue
        print(f"[{index}/{len(chunks)}] {arm} {group} seed {seed} ...", flush=True)
        elapsed_s = run_chunk(args.out, arm, group, seed, args.days, args.scenario)
        print(f"[{index}/{len(chunks)}] {arm} {group} seed {seed} done in {elapsed_s:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
