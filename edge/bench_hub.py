"""Hub benchmark: per-reading latency, steady-state memory and a year's replay, each against a named baseline.

``python -m edge.bench_hub`` prints one table (add ``--json`` for machine-readable output):

* latency from a reading's arrival to its durable commit (and stored advice when due), p50/p99 over
  ``--readings`` 5-minute readings on a real SQLite file (WAL, synchronous=FULL):
  baseline "store only" = ``HubStore.add_reading`` (one commit each) vs the full ``HubPipeline.on_reading``
  (reading + outbox + one UKF twin update + the hub forecast (ONNX + the twin's 16-sample what-if mean) +
  alerts + advice when due, one commit);
* a year of one person's readings (105,120): baseline "store only, 1 commit/day" vs ``edge.agent.replay``
  with the EKF twin on every reading, vs replay with the twin over the last 14 days; the full live pipeline is
  extrapolated from its measured mean latency (running it would take most of an hour);
* RSS (``/proc/PID/status`` VmRSS) of a real ``glucotwin hub run`` process following the simulator after
  ``--warmup-s`` seconds, vs the baseline of an interpreter that only imported the hub's modules.

Goals (issue 6): p99 < 10 ms, RSS < 150 MB, a year < 60 s. ``--profile`` adds where the pipeline's time goes
(cProfile, cumulative seconds of the main parts). The readings are a deterministic synthetic day pattern
(baseline, three meals, a slow wave); the hub never imports the simulator, which is started as a process.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from cloud_sync.outbox import Outbox

from .agent.pipeline import HubPipeline
from .agent.replay import replay, twin_window_start_ms
from .config import HubConfig, config_from_dict
from .store import HubStore, StoredReading

READINGS_PER_YEAR = 365 * 288
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
SESSION = "2026-01-01T00:00:00+00:00"
THERAPY = {"age_group": "adult", "body_weight_kg": 70, "basal_u_per_h": 1.0, "insulin_sensitivity_mg_dl_per_u": 50,
           "carb_ratio_g_per_u": 10}
GOALS = {"p99_ms": 10.0, "rss_mb": 150.0, "year_s": 60.0}


def synthetic_glucose_mg_dl(minute: int) -> float:
    """A plausible T1D day: 120 mg/dL baseline, a slow wave and three meal bumps; whole mg/dL like a CGM."""
    of_day = minute % 1440
    glucose = 120.0 + 15.0 * math.sin(2 * math.pi * minute / 1440)
    for meal_min, peak in ((450, 90.0), (750, 70.0), (1140, 100.0)):
        since = of_day - meal_min
        if 0 <= since <= 240:
            glucose += peak * (since / 60.0) * math.exp(1.0 - since / 60.0)
    return float(round(glucose))


def readings(count: int, *, first_offset: int = 0) -> Iterator[StoredReading]:
    previous: float | None = None
    for index in range(first_offset, first_offset + count):
        offset = index * 5
        glucose = synthetic_glucose_mg_dl(offset)
        trend = None if previous is None else round((glucose - previous) / 5, 1)
        previous = glucose
        yield StoredReading(SESSION, offset, START_MS + offset * 60_000, glucose, trend)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def hub_config(path: Path) -> HubConfig:
    return config_from_dict({"storage_path": str(path), "therapy": THERAPY})


# --- latency -----------------------------------------------------------------------------------------------------

def latency_store_only(workdir: Path, count: int) -> list[float]:
    with HubStore(workdir / "store-only.sqlite") as store:
        out = []
        for reading in readings(count):
            started = time.perf_counter()
            store.add_reading(reading)
            out.append((time.perf_counter() - started) * 1000)
    return out


def latency_pipeline(workdir: Path, count: int, profile: cProfile.Profile | None = None, *,
                     auto_advice: bool = True) -> tuple[list[float], int]:
    """ms per ``on_reading`` (the hub's clock = the reading's time, as live) and how many stored advice."""
    path = workdir / f"pipeline-{auto_advice}.sqlite"
    store = HubStore(path)
    outbox = Outbox(sqlite_utils.Database(store.conn))
    clock = [START_MS]
    pipeline = HubPipeline(store, hub_config(path), outbox=outbox, now_ms=lambda: clock[0], auto_advice=auto_advice)
    out = []
    advice = 0
    try:
        for reading in readings(count):
            clock[0] = reading.timestamp_ms + 30_000
            if profile is not None:
                profile.enable()
            started = time.perf_counter()
            outcome = pipeline.on_reading(reading)
            out.append((time.perf_counter() - started) * 1000)
            if profile is not None:
                profile.disable()
            advice += outcome.advice is not None
    finally:
        store.close()
    return out, advice


def profile_parts(profile: cProfile.Profile, calls: int) -> dict[str, float]:
    """Mean ms per reading in the pipeline's main parts (cumulative, so parts may overlap slightly)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    parts = {
        "sqlite execute (incl. COMMIT fsync)": ("execute' of 'sqlite3.Connection",),
        "forecast what_if (twin mean, 16 samples)": ("whatif.py", "what_if"),
        "twin UKF update": ("twin.py", "update"),
        "twin to_dict + json": ("twin.py", "to_dict"),
        "advice (recommend)": ("pipeline.py", "advise"),
        "alerts": ("alerts", "evaluate"),
    }
    out: dict[str, float] = {}
    for label, key in parts.items():
        total = 0.0
        for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
            if len(key) == 1 and key[0] in function or len(key) == 2 and key[0] in filename and function == key[1]:
                total += cumulative
        out[label] = total * 1000 / calls
    return out


# --- a year ------------------------------------------------------------------------------------------------------

def year_store_only(workdir: Path, count: int) -> float:
    """Baseline: the readings alone, one transaction per day, no twin, no outbox."""
    history = list(readings(count))  # generated before the clock starts, as for the replays
    with HubStore(workdir / "year-store.sqlite") as store:
        started = time.perf_counter()
        batch: list[StoredReading] = []
        for reading in history:
            batch.append(reading)
            if len(batch) == 288:
                with store.transaction():
                    for item in batch:
                        store.add_reading(item)
                batch = []
        with store.transaction():
            for item in batch:
                store.add_reading(item)
        elapsed = time.perf_counter() - started
        assert store.count_readings() == count
    return elapsed


def year_replay(workdir: Path, count: int, twin_window_days: float | None) -> tuple[float, dict[str, Any]]:
    path = workdir / f"year-replay-{twin_window_days}.sqlite"
    with HubStore(path) as store:
        outbox = Outbox(sqlite_utils.Database(store.conn))
        history = list(readings(count))
        started = time.perf_counter()
        result, _ = replay(store, hub_config(path), history, outbox=outbox,
                           twin_from_ms=twin_window_start_ms(history, twin_window_days))
        elapsed = time.perf_counter() - started
        assert store.count_readings() == count
    return elapsed, {"twin_updates": result.twin_updates, "twin_s": round(result.twin_s, 2),
                     "store_s": round(result.store_s, 2), "outbox_records": result.outbox_records}


# --- memory ------------------------------------------------------------------------------------------------------

def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def rss_baseline_mb() -> float:
    """An interpreter that imported the hub's modules and does nothing else."""
    code = ("import edge.agent.service, edge.agent.web, edge.hub_cli, uvicorn, bleak, bumble.transport, sys; "
            "print('ready', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return vm_rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def rss_hub_mb(workdir: Path, warmup_s: float, acceleration: float) -> dict[str, float]:
    """RSS of ``glucotwin hub run`` following the simulator (its own process) after a warm-up."""
    import requests

    from .demo import free_port

    sim = subprocess.Popen([sys.executable, "-m", "edge.cli", "sim", "serve", "--acceleration", str(acceleration),
                            "--no-pump"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    hub = None
    try:
        assert sim.stdout is not None
        spec = sim.stdout.readline().decode().strip()
        port = free_port()
        config = workdir / "hub.toml"
        config.write_text("\n".join([
            f'storage_path = "{workdir / "rss-hub.sqlite"}"', "[devices]", f'transport = "{spec}"', "pump = false",
            "[therapy]", *(f"{k} = {json.dumps(v)}" for k, v in THERAPY.items()),
            "[web]", f"port = {port}", ""]))
        hub = subprocess.Popen([sys.executable, "-m", "edge.cli", "hub", "run", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and hub.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        time.sleep(warmup_s)  # warm-up counted from the hub's web server answering
        if hub.poll() is not None:
            raise RuntimeError("the hub exited during warm-up")
        status = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=30).json()
        requests.get(f"http://127.0.0.1:{port}/", timeout=30)  # the page renders a forecast too
        rss = vm_rss_mb(hub.pid)
        peak = 0.0
        for line in Path(f"/proc/{hub.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
        return {"rss_mb": rss, "peak_mb": peak, "readings": float(status["readings_stored"]),
                "sim_rss_mb": vm_rss_mb(sim.pid)}
    finally:
        for proc in (hub, sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# --- the table ---------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="glucotwin-bench-"))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}}
    try:
        store_ms = latency_store_only(workdir, args.readings)
        profile = cProfile.Profile() if args.profile else None
        pipe_ms, advice = latency_pipeline(workdir, args.readings, profile)
        quiet_ms, _ = latency_pipeline(workdir, args.readings, auto_advice=False)
        results["latency_ms"] = {
            "store only (HubStore.add_reading)": {"p50": percentile(store_ms, 50), "p99": percentile(store_ms, 99),
                                                  "mean": statistics.fmean(store_ms)},
            "full pipeline (HubPipeline.on_reading)": {"p50": percentile(pipe_ms, 50),
                                                       "p99": percentile(pipe_ms, 99),
                                                       "mean": statistics.fmean(pipe_ms), "advice_stored": advice},
            "full pipeline, auto-advice off": {"p50": percentile(quiet_ms, 50), "p99": percentile(quiet_ms, 99),
                                               "mean": statistics.fmean(quiet_ms)},
        }
        if profile is not None:
            results["pipeline_parts_ms_per_reading"] = profile_parts(profile, args.readings)
        count = args.year_readings
        year: dict[str, Any] = {"readings": count}
        year["store only, 1 commit/day"] = {"s": year_store_only(workdir, count)}
        if not args.skip_twin_year:
            seconds, detail = year_replay(workdir, count, None)
            year["replay: EKF twin on every reading, 1 commit/day"] = {"s": seconds, **detail}
        seconds, detail = year_replay(workdir, count, 14.0)
        year["replay: EKF twin over the last 14 days"] = {"s": seconds, **detail}
        year["full pipeline (extrapolated from its mean latency)"] = {
            "s": statistics.fmean(pipe_ms) * count / 1000, "extrapolated": True}
        results["year"] = year
        if not args.skip_rss:
            results["rss_mb"] = {"baseline: interpreter with the hub's imports": rss_baseline_mb(),
                                 **{f"hub run after {args.warmup_s:g} s": rss_hub_mb(workdir, args.warmup_s,
                                                                                     args.acceleration)}}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def format_table(results: dict[str, Any]) -> str:
    lines = [f"GlucoTwin hub benchmark ({results['machine']['cpus']} CPUs, load {results['machine']['load_1min']})",
             "", f"{'per-reading latency, ms':<48}{'p50':>9}{'p99':>9}{'mean':>9}   goal p99 < {GOALS['p99_ms']:g} ms"]
    for name, row in results["latency_ms"].items():
        lines.append(f"  {name:<46}{row['p50']:>9.2f}{row['p99']:>9.2f}{row['mean']:>9.2f}"
                     + (f"   advice stored: {row['advice_stored']}" if "advice_stored" in row else ""))
    if "pipeline_parts_ms_per_reading" in results:
        lines.append("  where the pipeline's time goes (cProfile, ms per reading, cumulative):")
        for name, value in results["pipeline_parts_ms_per_reading"].items():
            lines.append(f"    {name:<44}{value:>9.2f}")
    year = results["year"]
    lines += ["", f"{'a year of readings (' + str(year['readings']) + ')':<48}{'seconds':>9}   goal < {GOALS['year_s']:g} s"]
    for name, row in year.items():
        if name == "readings":
            continue
        extra = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("s", "extrapolated"))
        lines.append(f"  {name:<46}{row['s']:>9.1f}" + ("  (extrapolated)" if row.get("extrapolated") else "")
                     + (f"   {extra}" if extra else ""))
    if "rss_mb" in results:
        lines += ["", f"{'resident memory (VmRSS), MB':<48}{'MB':>9}   goal < {GOALS['rss_mb']:g} MB"]
        for name, value in results["rss_mb"].items():
            if isinstance(value, dict):
                lines.append(f"  {name:<46}{value['rss_mb']:>9.1f}   peak {value['peak_mb']:.1f} MB, "
                             f"{value['readings']:.0f} readings stored; simulator {value['sim_rss_mb']:.1f} MB")
            else:
                lines.append(f"  {name:<46}{value:>9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.bench_hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=600, help="readings for the latency percentiles")
    parser.add_argument("--year-readings", type=int, default=READINGS_PER_YEAR)
    parser.add_argument("--skip-twin-year", action="store_true", help="skip the replay with the twin on every reading")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--warmup-s", type=float, default=45.0)
    parser.add_argument("--acceleration", type=float, default=1440.0,
                        help="simulator speed for the RSS run (default: a simulated day per real minute)")
    parser.add_argument("--profile", action="store_true", help="break the pipeline's time down (cProfile)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
