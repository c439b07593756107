"""``glucotwin trial``: run in-silico trial arms over a virtual cohort and print the outcome table.

Examples::

    glucotwin trial --cohort all --days 14 --seeds 1,2,3 --scenario standard --arms basal-bolus
    glucotwin trial --arms basal-bolus,basal-bolus-lgs --scenario challenging --json out.json --csv out.csv
    glucotwin trial --population 1000 --population-seed 7 --days 7 --dask            # LocalCluster
    glucotwin trial --population 1000 --dask tcp://scheduler:8786 --chunk-size 50
"""

from __future__ import annotations

import argparse
import sys

from hardware_sim.trial.arms import arm_names


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    from hardware_sim.scenario import SCENARIO_PRESETS
    from hardware_sim.sensor_model import SENSOR_PRESETS

    parser = subparsers.add_parser(
        "trial", help="run in-silico trial arms on virtual patients",
        description="Run trial arms on UVA/Padova virtual patients (same subjects, scenarios and seeds for every "
        "arm) and print consensus metrics per age group, computed on true plasma glucose.",
    )
    parser.add_argument("--cohort", default="all",
                        help="all, adults, adolescents, children or names such as adult#001,child#002")
    parser.add_argument("--days", type=_positive_float, default=14.0, help="trial length in days (default 14)")
    parser.add_argument("--seeds", type=_int_list, default=(1,), help="comma-separated seeds (default 1)")
    parser.add_argument("--scenario", default="standard", choices=sorted(SCENARIO_PRESETS))
    parser.add_argument("--sensor", default="realistic", choices=sorted(SENSOR_PRESETS),
                        help="CGM model preset (default realistic)")
    parser.add_argument("--arms", default="basal-bolus",
                        help=f"comma-separated arms (known: {', '.join(arm_names())})")
    parser.add_argument("--population", type=int, default=None, metavar="N",
                        help="instead of --cohort, N subjects sampled around the published 30")
    parser.add_argument("--population-seed", type=int, default=0, metavar="S")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="rows (subject x seed) advanced together per work unit (default 256; with --dask "
                        "about 2 chunks per worker); results do not depend on it")
    parser.add_argument("--dask", nargs="?", const="local", default=None, metavar="SCHEDULER_ADDRESS",
                        help="run chunks on dask.distributed: a LocalCluster, or the given scheduler")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    parser.add_argument("--per-subject", action="store_true", help="also print one line per subject x seed")
    parser.add_argument("--sensor-metrics", action="store_true",
                        help="also print the table computed on CGM readings")
    parser.add_argument("--json", metavar="OUT", default=None, help="write results as JSON")
    parser.add_argument("--csv", metavar="OUT", default=None, help="write one CSV line per arm x subject x seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hardware_sim.patient.cohort import CohortSelectionError, load_cohort, sample_population
    from hardware_sim.trial.arms import UnknownArmError, make_arm
    from hardware_sim.trial.engine import DEFAULT_CHUNK_ROWS, TrialConfig, TrialConfigError, TrialRows, run_trial
    from hardware_sim.trial.results import format_table, write_csv, write_json

    try:
        arms = [make_arm(name.strip()) for name in args.arms.split(",") if name.strip()]
        if not arms:
            raise UnknownArmError("no arm given")
        if args.population is not None:
            if args.population < 1:
                raise TrialConfigError("--population must be >= 1")
            cohort = sample_population(args.population, args.population_seed)
            label = f"population n={args.population} seed={args.population_seed}"
        else:
            cohort = load_cohort(args.cohort)
            label = args.cohort
        config = TrialConfig(days=args.days, seeds=args.seeds, scenario=args.scenario, sensor=args.sensor)
    except (UnknownArmError, CohortSelectionError, TrialConfigError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"glucotwin trial: error: {message}", file=sys.stderr)
        return 2

    # Progress is counted in row-samples (subject x seed x 5-min step) and shown in subject-days.
    total = len(TrialRows.build(cohort, config.seeds)) * config.n_samples * len(arms)
    bar = tqdm(total=total, unit="subject-day", unit_scale=config.decision_interval_min / 1440.0,
               disable=args.no_progress, file=sys.stderr, dynamic_ncols=True, desc="trial")
    try:
        if args.dask is not None:
            from hardware_sim.trial.distributed import DaskUnavailableError, run_trial_distributed

            try:
                result = run_trial_distributed(
                    arms, cohort, config, scheduler_address=None if args.dask == "local" else args.dask,
                    n_workers=args.workers, chunk_size=args.chunk_size, progress=bar.update, cohort_label=label)
            except DaskUnavailableError as error:
                print(f"glucotwin trial: error: {error}", file=sys.stderr)
                return 2
        else:
            result = run_trial(arms, cohort, config, chunk_size=args.chunk_size or DEFAULT_CHUNK_ROWS,
                               progress=bar.update, cohort_label=label)
    finally:
        bar.close()
    print(format_table(result, per_subject=args.per_subject))
    if args.sensor_metrics:
        print()
        print(format_table(result, per_subject=args.per_subject, source="sensor"))
    print(f"wall time {result.wall_time_s:.1f} s")
    if args.json:
        write_json(result, args.json)
    if args.csv:
        write_csv(result, args.csv)
    return 0
