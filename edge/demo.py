"""``glucotwin demo``: the whole system on simulated devices, with no hardware and no configuration.

It starts, as separate processes, the local cloud twin service (SQLite) and the simulator (emulated BLE CGM
and pump on loopback; a virtual patient when the simulator offers one), then runs the hub in this process
against them, for a simulated day (or ``--days``) as fast as the machine allows, with a progress bar. The hub
only sees what real devices send. At the end it prints a summary and where the reports are.

By default a virtual patient (UVA/Padova adult#001) is behind the devices and the simulator's simulated person
eats, announces meals to the hub and confirms its advice. With ``--scripted-trace`` a fixed glucose trace drives
the CGM and the demo itself announces meals at 07:00, 12:00 and 18:30 and confirms the advice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from .config import config_from_dict

DEMO_PASSWORD = "demo-clinician-password"
MEALS = ((7 * 60, 45.0), (12 * 60, 70.0), (18 * 60 + 30, 80.0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def glucotwin_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge.cli", *args]


class AcceleratedClock:
    """The hub's clock in the demo: simulated time, anchored on the sensor's live readings."""

    def __init__(self, start_ms: int, acceleration: float) -> None:
        self.acceleration = acceleration
        self._anchor_ms = start_ms
        self._anchor_wall = time.monotonic()

    def __call__(self) -> int:
        return int(self._anchor_ms + (time.monotonic() - self._anchor_wall) * 1000 * self.acceleration)

    def anchor(self, reading_ms: int, *, live: bool = True) -> None:
        """A live reading is "now"; a backfilled one only moves a clock that lags behind it."""
        if live or reading_ms > self():
            self._anchor_ms = reading_ms
            self._anchor_wall = time.monotonic()


@dataclass
class DemoProcesses:
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        handle = open(log, "wb")  # noqa: SIM115 - owned by the process for its lifetime
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=handle, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run(args: list[str]) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          env=dict(os.environ, GLUCOTWIN_PASSWORD=DEMO_PASSWORD)).stdout.strip().splitlines()[-1]


def _wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout_s:.0f} s")


def start_cloud(workdir: Path, processes: DemoProcesses) -> dict[str, str]:
    db = str(workdir / "cloud.sqlite")
    clinic = _run(glucotwin_command("cloud", "create-clinic", "Demo clinic", "--db", db))
    _run(glucotwin_command("cloud", "create-clinician", clinic, "doctor@demo.clinic", "--db", db))
    patient = _run(glucotwin_command("cloud", "create-patient", clinic, "--name", "Demo patient", "--db", db))
    code = _run(glucotwin_command("cloud", "enrollment-code", patient, clinic, "--db", db))
    port = free_port()
    processes.start(glucotwin_command("cloud", "serve", "--db", db, "--port", str(port), "--log-level", "warning"),
                    workdir / "cloud.log")
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/docs")
    return {"url": url, "clinic": clinic, "patient": patient, "code": code}


def start_simulator(workdir: Path, processes: DemoProcesses, start: datetime, acceleration: float,
                    extra: list[str]) -> str:
    proc = processes.start(glucotwin_command("sim", "serve", "--acceleration", str(acceleration), "--start",
                                             start.isoformat(), *extra), workdir / "sim.log")
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("tcp-client:"):
        raise RuntimeError(f"the simulator did not start (see {workdir / 'sim.log'}): {line!r}")
    return line


async def _drive(service: Any, clock: AcceleratedClock, start_ms: int, end_ms: int, hub_url: str,
                 announce_meals: bool, progress: Any) -> dict[str, Any]:
    log: dict[str, Any] = {"meals": [], "confirmed": 0}
    task = asyncio.create_task(service.run())
    pending_meals = [(start_ms + minute * 60_000, grams) for minute, grams in MEALS]
    loop = asyncio.get_running_loop()
    last = start_ms
    try:
        while clock() < end_ms:
            if task.done():
                task.result()
            now = clock()
            done_min = (min(now, end_ms) - last) // 60_000
            if done_min > 0:
                progress.update(done_min)
                last += done_min * 60_000
            if announce_meals and pending_meals and now >= pending_meals[0][0]:
                _, grams = pending_meals.pop(0)
                try:
                    advice = await loop.run_in_executor(None, lambda: requests.post(
                        hub_url + "/api/meal", json={"carbs_g": grams}, timeout=30).json())
                    log["meals"].append({"carbs_g": grams, "advice": advice.get("summary")})
                    if advice.get("id") and advice.get("bolus_u", 0) > 0:
                        confirm = await loop.run_in_executor(None, lambda: requests.post(
                            hub_url + "/api/confirm", json={"recommendation_id": advice["id"]}, timeout=60))
                        log["confirmed"] += int(confirm.status_code == 200)
                except requests.RequestException as error:
                    log["meals"].append({"carbs_g": grams, "error": str(error)})
            await asyncio.sleep(0.2)
    finally:
        service.stop()
        with contextlib.suppress(Exception):
            await task
    return log


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .agent.service import HubService
    from .agent.sync_worker import flush_outbox

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="glucotwin-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # The simulated days start at midnight (the person's day plan, meals at 7/12/18 h, is in local days).
    start = (datetime.now(UTC) - timedelta(days=args.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    start_ms = int(start.timestamp() * 1000)
    end_ms = start_ms + int(args.days * 86_400_000)
    processes = DemoProcesses()
    print(f"GlucoTwin demo: {args.days:g} simulated day(s) at x{args.acceleration:g}; working in {workdir}")
    try:
        cloud = start_cloud(workdir, processes)
        print(f"  cloud twin service: {cloud['url']} (clinician doctor@demo.clinic / {DEMO_PASSWORD})")
        web_port = free_port()
        hub_url = f"http://127.0.0.1:{web_port}"
        patient_file = workdir / "patient.json"
        sim_extra = (["--patient", args.patient, "--person-hub-url", hub_url, "--patient-info-file", str(patient_file),
                      "--seed", str(args.seed)] if args.patient else [])
        spec = start_simulator(workdir, processes, start, args.acceleration, sim_extra)
        print(f"  simulated CGM and pump: {spec}" + (f" (virtual patient {args.patient})" if args.patient else ""))
        therapy = {"age_group": "adult", "body_weight_kg": 70, "basal_u_per_h": 1.0,
                   "insulin_sensitivity_mg_dl_per_u": 50, "carb_ratio_g_per_u": 10}
        if args.patient:  # the settings the virtual person's clinician prescribed
            prescribed = json.loads(patient_file.read_text())["therapy"]
            therapy = {key: prescribed[key] for key in therapy}
        config = config_from_dict({
            "storage_path": str(workdir / "hub.sqlite"),
            "devices": {"transport": spec},
            "therapy": therapy,
            "cloud": {"url": cloud["url"], "enrollment_code": cloud["code"]},
            "web": {"host": "127.0.0.1", "port": web_port},
        })
        clock = AcceleratedClock(start_ms, args.acceleration)
        service = HubService(config, now_ms=clock, on_reading=lambda r: clock.anchor(r.timestamp_ms, live=r.source == "live"),
                             sync_idle_s=2.0)
        print(f"  hub page: {hub_url}/")
        with tqdm(total=round(args.days * 1440), unit="sim-min", desc="simulating", disable=args.no_progress) as bar:
            log = asyncio.run(_drive(service, clock, start_ms, end_ms, hub_url, not args.patient, bar))
        # The hub has stopped taking readings: send what the background sync had not sent yet.
        flush_outbox(config)
    finally:
        processes.stop()
    if args.patient and patient_file.exists():  # the simulated person's own account of the day
        person = json.loads(patient_file.read_text()).get("summary", {})
        log["confirmed"] = person.get("events", {}).get("bolus_confirmed", 0)
        log["person"] = person
    summary = summarise(config.storage_path, start_ms, end_ms, cloud, workdir, log)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0 if summary["readings_stored"] > 0 else 1


def summarise(path: Path, start_ms: int, end_ms: int, cloud: dict[str, str], workdir: Path,
              log: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from cloud_sync.outbox import Outbox
    from models.glycemic_metrics import summarize_glucose

    from .store import HubStore

    with HubStore(path) as store:
        readings = store.readings_between(start_ms, end_ms + 1)
        glucose = np.array([r.glucose_mg_dl for r in readings], dtype=float)
        metrics = summarize_glucose(glucose).to_dict() if len(glucose) else {}
        alerts = store.conn.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind").fetchall()
        advice = store.conn.execute("SELECT kind, status, COUNT(*) FROM recommendations GROUP BY kind, status").fetchall()
    outbox = Outbox.open(path)
    try:
        synced = outbox.cursor()
        total = outbox.last_seq()
    finally:
        outbox.close()
    return {
        "workdir": str(workdir),
        "readings_stored": len(readings),
        "readings_expected": int((end_ms - start_ms) / 300_000) + 1,
        "glucose": {k: round(metrics[k], 1) for k in ("mean_glucose_mg_dl", "time_in_range_70_180_pct",
                                                       "time_below_70_pct", "time_below_54_pct", "time_above_180_pct",
                                                       "cv_pct", "gmi_pct") if k in metrics},
        "alerts": {kind: count for kind, count in alerts},
        "advice": [{"kind": k, "status": s, "count": c} for k, s, c in advice],
        "meals": log.get("meals", []),
        "person": log.get("person"),
        "boluses_confirmed": log.get("confirmed", 0),
        "synced_records": f"{synced} of {total}",
        "hub_database": str(path),
        "cloud": cloud["url"],
        "clinician_report": f"{cloud['url']}/clinic/patients/{cloud['patient']}",
        "logs": [str(workdir / "sim.log"), str(workdir / "cloud.log")],
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = ["", "Demo summary",
             f"  readings stored      {summary['readings_stored']} of {summary['readings_expected']} expected",
             "  glucose              " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in summary["glucose"].items()),
             "  alerts raised        " + (", ".join(f"{k} x{v}" for k, v in summary["alerts"].items()) or "none"),
             "  advice               " + (", ".join(f"{a['kind']} ({a['status']}) x{a['count']}"
                                                    for a in summary["advice"]) or "none"),
             f"  boluses confirmed    {summary['boluses_confirmed']}",
             f"  synced to the cloud  {summary['synced_records']} outbox records acknowledged",
             f"  hub database         {summary['hub_database']}",
             f"  clinician report     {summary['clinician_report']} (run 'glucotwin cloud serve --db "
             f"{summary['workdir']}/cloud.sqlite' to browse it again)",
             f"  logs                 {', '.join(summary['logs'])}"]
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="Run the whole system on simulated devices (the README's main job).",
                                   description=__doc__)
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--acceleration", type=float, default=720.0,
                        help="simulated seconds per real second (default 720: a day in 2 minutes)")
    parser.add_argument("--patient", default="adult#001",
                        help="the virtual patient behind the devices (default adult#001; any of the 30 published "
                             "subjects), with a simulated person who eats, announces meals and confirms advice")
    parser.add_argument("--scripted-trace", dest="patient", action="store_const", const=None,
                        help="drive the CGM with a scripted glucose trace instead (the demo announces the meals)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the virtual patient's day (with --patient)")
    parser.add_argument("--workdir", default=None, help="where databases and logs go (default: a new temp dir)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_demo)
