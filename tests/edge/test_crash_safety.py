"""Crash safety of the hub, end to end (issue 6): real processes, real SQLite file, real emulated radio.

THE KILL TEST: the simulator runs in its own process at high acceleration (a scripted day: the ground truth);
the hub runs as ``glucotwin hub run --config FILE`` in another process and is SIGKILLed at seeded random
moments (during start-up, backfill and live following), at least 50 times across a simulated day, and
restarted each time. After every kill the store must already be a gap-free prefix of the sensor's session with
the right values (what was acknowledged survived; nothing half-written is visible); at the end a hub catches
up and the store holds every reading of the day exactly once, ``PRAGMA integrity_check`` is ok, and the outbox
holds exactly one reading record per stored reading.

Also: a corrupted database file (garbage, or a damaged page) -> the hub starts, raises "store_corrupted",
moves the file aside, re-fetches the sensor's history and does not crash-loop; a full store (SQLite
``PRAGMA max_page_count`` on the hub's own connection) -> StoreFullError handled, the hub keeps running and
the readings come back once space returns.

Restarts: the final (catching-up) hub of the kill test is a fresh ``python -m edge.cli hub run`` interpreter;
the others are forked from a server that pre-imported the hub (``tests/edge/hub_forkserver.py``): the same
entry point in a separate process, without paying 3-4 s of imports fifty times. The ``slow`` variant uses
fresh interpreters for every restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from cloud_sync.envelope import SummaryPayload
from edge.demo import free_port
from hardware_sim.devices.cgm_model import CgmSensorModel
from hardware_sim.devices.glucose_source import ScriptedTrace

REPO = Path(__file__).resolve().parents[2]
INTERVAL_MIN = 5
THERAPY = {"age_group": "adult", "body_weight_kg": 70, "basal_u_per_h": 1.0,
           "insulin_sensitivity_mg_dl_per_u": 50, "carb_ratio_g_per_u": 10}


# --- ground truth: the simulator's own sensor model over its default scripted trace ---------------------------

class SensorTruth:
    """{time offset: glucose} the emulated sensor takes from session start (the sim epoch), grown on demand.

    The same model and trace ``glucotwin sim serve`` runs by default (ScriptedTrace.demo_day(days=30)).
    """

    def __init__(self) -> None:
        self.trace = ScriptedTrace.demo_day(days=30)
        self.model = CgmSensorModel(self.trace)
        self.model.start_session(0.0)
        self.values: dict[int, float] = {}

    def up_to(self, offset_min: int) -> dict[int, float]:
        for measurement in self.model.advance_to(offset_min):
            self.values[measurement.time_offset_min] = float(measurement.glucose_mg_dl)
        return self.values


def test_ground_truth_is_the_scripted_trace_rounded_at_every_five_minutes() -> None:
    truth = SensorTruth().up_to(1440)
    assert sorted(truth) == list(range(0, 1445, 5))
    trace = ScriptedTrace.demo_day(days=30)
    assert all(truth[o] == min(400.0, max(40.0, round(trace.interstitial_glucose_mg_dl(o)))) for o in truth)
    assert max(truth.values()) > 180 and min(truth.values()) < 120  # meals and a baseline: values differ


# --- processes -------------------------------------------------------------------------------------------------

@dataclass
class Simulator:
    proc: subprocess.Popen
    spec: str
    start: datetime
    acceleration: float
    started_wall: float

    def sim_minute(self) -> float:
        return (time.monotonic() - self.started_wall) * self.acceleration / 60.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_simulator(workdir: Path, acceleration: float) -> Simulator:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    log = open(workdir / "sim.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "sim", "serve", "--acceleration", str(acceleration), "--start",
         start.isoformat(), "--no-pump"], stdout=subprocess.PIPE, stderr=log, cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    started = time.monotonic()  # the sim clock started just before it printed its spec
    if not line.startswith("tcp-client:"):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}; see {workdir / 'sim.log'}")
    return Simulator(proc, line, start, acceleration, started)


def write_config(workdir: Path, spec: str, web_port: int) -> Path:
    text = "\n".join([
        f'storage_path = "{workdir / "hub.sqlite"}"',
        "[devices]", f'transport = "{spec}"', "pump = false",
        "[therapy]", *(f"{k} = {json.dumps(v)}" for k, v in THERAPY.items()),
        "[web]", 'host = "127.0.0.1"', f"port = {web_port}", ""])
    path = workdir / "hub.toml"
    path.write_text(text)
    return path


class ForkServer:
    """Client of tests/edge/hub_forkserver.py: ``spawn(argv, log) -> pid`` of a new hub process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.edge.hub_forkserver"], cwd=REPO, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().strip()
        if ready != "ready":
            self.close()
            raise RuntimeError(f"fork server did not start: {ready!r}")

    def spawn(self, argv: list[str], log: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class HubProcess:
    """One hub process: a fresh interpreter (Popen) or a fork-server child (pid only)."""

    pid: int
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.alive():
            if self.popen is not None:
                self.popen.wait(timeout=10)
            elif time.monotonic() > deadline:
                raise RuntimeError(f"hub {self.pid} survived SIGKILL")
            else:
                time.sleep(0.005)


@dataclass
class HubLauncher:
    config: Path
    log: Path
    forks: ForkServer | None = None
    started: list[HubProcess] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return ["hub", "run", "--config", str(self.config)]

    def start(self, *, fresh: bool) -> HubProcess:
        if fresh or self.forks is None:
            handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
            popen = subprocess.Popen([sys.executable, "-m", "edge.cli", *self.argv], cwd=REPO, stdout=handle,
                                     stderr=handle, stdin=subprocess.DEVNULL)
            handle.close()
            hub = HubProcess(popen.pid, popen)
        else:
            hub = HubProcess(self.forks.spawn(self.argv, self.log))
        self.started.append(hub)
        return hub

    def kill_all(self) -> None:
        for hub in self.started:
            hub.kill()


@pytest.fixture(scope="module")
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


# --- reading the store from outside (only while no hub runs, or read-only) --------------------------------------

@dataclass
class StoreView:
    readings: list[tuple[str, int, int, float]]  # (session, offset, timestamp_ms, glucose)
    outbox_readings: list[tuple[int, int]]  # (time_ms, glucose) of every reading record in the outbox
    integrity: str
    alerts: list[str]


def read_store(path: Path, *, full_check: bool = False) -> StoreView:
    """Open the hub's file read-only (no checkpoint on close: the next hub still finds the WAL as left)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"readings", "outbox", "alerts"} <= tables:  # killed before the schema was complete
            if "readings" in tables:
                assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0, "readings without an outbox"
            return StoreView([], [], conn.execute("PRAGMA quick_check").fetchone()[0], [])
        readings = conn.execute("SELECT sensor_session, time_offset_min, timestamp_ms, glucose_mg_dl FROM readings "
                                "ORDER BY sensor_session, time_offset_min").fetchall()
        outbox: list[tuple[int, int]] = []
        for (payload,) in conn.execute("SELECT payload FROM outbox ORDER BY seq"):
            summary = SummaryPayload.from_bytes(payload)
            if summary.readings is not None:
                outbox.extend((r.time_ms, int(r.data["glucose_mg_dl"])) for r in summary.readings.records())
        pragma = "integrity_check" if full_check else "quick_check"
        integrity = conn.execute(f"PRAGMA {pragma}").fetchone()[0]
        alerts = [row[0] for row in conn.execute("SELECT kind FROM alerts ORDER BY id")]
    finally:
        conn.close()
    return StoreView(readings, outbox, integrity, alerts)


def assert_exact_prefix(view: StoreView, sim: Simulator, sensor: SensorTruth, context: str) -> int:
    """The store holds offsets 0, 5, ..., N of the sim's session, each once, with the sensor's values; the
    outbox one reading record per stored reading. Returns N (-1 when empty)."""
    assert view.integrity == "ok", f"{context}: {view.integrity}"
    session_id = sim.start.isoformat()
    sessions = {row[0] for row in view.readings}
    assert sessions <= {session_id}, f"{context}: readings under other session ids: {sessions - {session_id}}"
    offsets = [row[1] for row in view.readings]
    if not offsets:
        assert not view.outbox_readings, context
        return -1
    last = offsets[-1]
    truth = sensor.up_to(last)
    expected = list(range(0, last + INTERVAL_MIN, INTERVAL_MIN))
    missing = sorted(set(expected) - set(offsets))
    extra = sorted(set(offsets) - set(expected))
    assert not missing and not extra, f"{context}: missing offsets {missing[:20]}, unexpected {extra[:20]}"
    start_ms = int(sim.start.timestamp() * 1000)
    wrong = [(o, g, truth.get(o)) for _, o, t, g in view.readings if truth.get(o) != g or t != start_ms + o * 60_000]
    assert not wrong, f"{context}: values or times differ from the sensor's (offset, stored, truth): {wrong[:10]}"
    expected_outbox = sorted((t, round(g)) for _, _, t, g in view.readings)
    assert sorted(view.outbox_readings) == expected_outbox, (
        f"{context}: outbox has {len(view.outbox_readings)} reading records for {len(view.readings)} readings")
    return last


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# --- the kill test -----------------------------------------------------------------------------------------------

@dataclass
class KillReport:
    kills: int = 0
    during_startup: int = 0  # before the heartbeat: opening the file, WAL recovery, twin restore
    before_first_write: int = 0  # scanning, connecting, asking the sensor for its records
    after_writing: int = 0  # after this hub life stored at least one new reading
    while_catching_up: int = 0  # ... and the sensor still held readings the store did not have (backfill burst)
    fresh_interpreters: int = 0
    sim_minutes: float = 0.0
    final_readings: int = 0
    wall_s: float = 0.0


def run_kill_campaign(workdir: Path, *, seed: int, kills: int, sim_minutes: float, acceleration: float,
                      max_uptime_s: float, forks: ForkServer | None) -> KillReport:
    """SIGKILL the hub ``kills`` times (and until the sim has run ``sim_minutes``), then let it catch up.

    Before each start the hub stays dead for a random while (the sensor keeps taking readings: a backlog).
    Each life is then killed at a seeded random moment in one of four phases: start-up (10 %), between start-up
    and its first stored reading (15 %), within 0.15 s of its first stored reading, inside the burst that
    stores the backlog (45 %), or later, up to ``max_uptime_s``, while following live (30 %).
    """
    rng = random.Random(seed)
    report = KillReport()
    began = time.monotonic()
    sim = start_simulator(workdir, acceleration)
    config = write_config(workdir, sim.spec, free_port())
    store_path = workdir / "hub.sqlite"
    heartbeat = store_path.with_suffix(".heartbeat")
    launcher = HubLauncher(config, workdir / "hub.log", forks)
    truth = SensorTruth()
    last_offset = -1
    try:
        while report.kills < kills or sim.sim_minute() < sim_minutes:
            time.sleep(rng.uniform(0.0, 0.6))  # downtime: a backlog for the next hub to catch up
            heartbeat.unlink(missing_ok=True)
            fresh = forks is None
            hub = launcher.start(fresh=fresh)
            report.fresh_interpreters += fresh
            phase = rng.random()
            if phase < 0.1:
                time.sleep(rng.uniform(0.0, 3.0 if fresh else 0.4))
                report.during_startup += not heartbeat.exists()
            else:
                wait_for(lambda: heartbeat.exists() or not hub.alive(), 60, "the hub's heartbeat")
                assert hub.alive(), f"the hub exited by itself; see {launcher.log}"
                if phase < 0.25:
                    time.sleep(rng.uniform(0.0, 1.2))
                else:
                    before = last_offset
                    wait_for(lambda: _max_offset(store_path) > before or not hub.alive(), 60,
                             "this hub's first stored reading", interval_s=0.01)
                    time.sleep(rng.uniform(0.0, 0.15) if phase < 0.7 else rng.uniform(0.15, max_uptime_s))
            assert hub.alive(), f"the hub exited by itself; see {launcher.log}"
            hub.kill()
            sim_at_kill = sim.sim_minute()
            report.kills += 1
            if not store_path.exists():
                continue
            view = read_store(store_path)
            offset = assert_exact_prefix(view, sim, truth, f"after kill {report.kills}")
            assert offset >= last_offset, f"after kill {report.kills}: the store lost acknowledged readings"
            if offset > last_offset:
                report.after_writing += 1
                report.while_catching_up += offset < sim_at_kill - 2 * INTERVAL_MIN
            elif phase >= 0.1:
                report.before_first_write += 1
            last_offset = offset
        # Catch up: a last hub, a fresh interpreter, backfills everything the sensor took while hubs were dead.
        hub = launcher.start(fresh=True)
        report.fresh_interpreters += 1
        target = sim.sim_minute()
        wait_for(lambda: _max_offset(store_path) >= target - INTERVAL_MIN, 120,
                 f"the hub to catch up to sim minute {target:.0f}", interval_s=0.25)
        hub.kill()
        report.sim_minutes = sim.sim_minute()
    finally:
        launcher.kill_all()
        sim.stop()
    view = read_store(store_path, full_check=True)
    last = assert_exact_prefix(view, sim, truth, "after catch-up")
    assert last >= sim_minutes - INTERVAL_MIN, f"the store ends at offset {last}, the day at {sim_minutes:.0f}"
    assert view.integrity == "ok"
    report.final_readings = len(view.readings)
    assert report.final_readings == last // INTERVAL_MIN + 1
    report.wall_s = time.monotonic() - began
    return report


def _max_offset(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT MAX(time_offset_min) FROM readings").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return -1
    return -1 if row[0] is None else int(row[0])


def test_fifty_sigkills_across_a_simulated_day_lose_and_duplicate_nothing(tmp_path: Path,
                                                                         fork_server: ForkServer) -> None:
    report = run_kill_campaign(tmp_path, seed=20261123, kills=50, sim_minutes=1440, acceleration=1440,
                               max_uptime_s=0.8, forks=fork_server)
    print(f"\nkill test: {report}")
    assert report.kills >= 50
    assert report.after_writing >= 25, "too few kills landed after the hub had started storing"
    assert report.while_catching_up >= 5, "too few kills landed while the hub was storing a backlog"
    assert report.final_readings >= 1440 // INTERVAL_MIN


@pytest.mark.slow
def test_a_hundred_sigkills_of_fresh_interpreters_across_two_days(tmp_path: Path) -> None:
    report = run_kill_campaign(tmp_path, seed=6, kills=100, sim_minutes=2 * 1440, acceleration=720,
                               max_uptime_s=3.0, forks=None)
    print(f"\nslow kill test: {report}")
    assert report.kills >= 100 and report.final_readings >= 2 * 1440 // INTERVAL_MIN


# --- a corrupted database file ------------------------------------------------------------------------------------

def _garbage_file(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, a bad SD card wrote it\n" * 200)


def _damaged_page(path: Path) -> None:
    """A real hub store whose readings b-tree has one page overwritten with junk."""
    from edge.store import HubStore, StoredReading

    with HubStore(path) as store, store.transaction():
        for offset in range(0, 5 * 3000, 5):
            store.add_reading(StoredReading("2020-01-01T00:00:00+00:00", offset, offset * 60_000, 100.0 + offset % 50))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size, pages = conn.execute("PRAGMA page_size").fetchone()[0], conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    with open(path, "r+b") as handle:
        handle.seek(page_size * (pages // 2))
        handle.write(random.Random(1).randbytes(page_size))


def _quick_check_fails(path: Path) -> bool:
    try:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True


@pytest.mark.parametrize("damage", [_garbage_file, _damaged_page], ids=["not-a-database", "damaged-page"])
def test_a_corrupted_store_is_set_aside_with_an_alert_and_the_hub_runs_on(tmp_path: Path, fork_server: ForkServer,
                                                                          damage) -> None:  # type: ignore[no-untyped-def]
    store_path = tmp_path / "hub.sqlite"
    damage(store_path)
    assert _quick_check_fails(store_path)
    damaged_bytes = store_path.read_bytes()
    sim = start_simulator(tmp_path, acceleration=1440)
    port = free_port()
    config = write_config(tmp_path, sim.spec, port)
    launcher = HubLauncher(config, tmp_path / "hub.log", fork_server)
    truth = SensorTruth()
    try:
        hub = launcher.start(fresh=False)
        wait_for(lambda: _max_offset(store_path) >= 60 or not hub.alive(), 60, "readings in the new store", 0.1)
        assert hub.alive(), f"the hub died on a corrupted store; see {launcher.log}"
        status = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=10).json()
        assert [a["kind"] for a in status["alerts"]].count("store_corrupted") == 1
        assert status["devices"].get("store") == "recovered from corruption"
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        aside = sorted(tmp_path.glob("hub.sqlite.corrupt-*"))
        assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))] != []
        main_aside = next(p for p in aside if not p.name.endswith(("-wal", "-shm")))
        assert main_aside.read_bytes()[:100] == damaged_bytes[:100]  # kept for forensics, not rewritten
        hub.kill()
        first = read_store(store_path, full_check=True)
        reached = assert_exact_prefix(first, sim, truth, "new store after corruption")  # history re-fetched from 0
        assert first.alerts.count("store_corrupted") == 1
        # No crash loop: the next start opens the new file normally and carries on where it stopped.
        hub = launcher.start(fresh=False)
        wait_for(lambda: _max_offset(store_path) > reached + 30 or not hub.alive(), 60, "more readings", 0.1)
        assert hub.alive(), f"the restarted hub died; see {launcher.log}"
        hub.kill()
    finally:
        launcher.kill_all()
        sim.stop()
    second = read_store(store_path, full_check=True)
    assert_exact_prefix(second, sim, truth, "after a normal restart")
    assert second.alerts.count("store_corrupted") == 1
    assert len([p for p in tmp_path.glob("hub.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]) == 1


# --- a full store -------------------------------------------------------------------------------------------------

def test_a_full_store_keeps_the_hub_running_and_the_readings_come_back_when_space_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's ``max_page_count`` on the hub's own connection makes every new page fail with "database or disk
    is full", as a full SD card would; raising it again is space returning. In process, to reach that
    connection; the simulator is still a separate process."""
    from edge.agent import service as service_module
    from edge.agent.service import HubService
    from edge.config import config_from_dict

    monkeypatch.setattr(service_module, "STORE_FULL_RETRY_S", 0.5)  # 30 s on a real hub

    sim = start_simulator(tmp_path, acceleration=600)  # a reading every 0.5 s
    config = config_from_dict({"storage_path": str(tmp_path / "hub.sqlite"), "therapy": THERAPY,
                               "devices": {"transport": sim.spec, "pump": False}})
    truth = SensorTruth()
    observed: dict[str, object] = {}

    async def scenario() -> None:
        service = HubService(config, web=False)
        task = asyncio.create_task(service.run())

        async def until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + timeout_s
            while not predicate():
                if task.done():
                    task.result()
                    raise AssertionError("the hub stopped")
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}")
                await asyncio.sleep(0.05)

        try:
            await until(lambda: service.store is not None and service.store.count_readings() >= 6, 60, "readings")
            store = service.store
            assert store is not None and service.runtime is not None
            store.conn.execute("VACUUM")  # no free pages or half-empty pages left: the next few writes need new pages
            pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
            store.conn.execute(f"PRAGMA max_page_count = {pages}")
            full_at = store.count_readings()
            await until(lambda: "FULL" in service.runtime.devices.get("store", ""), 60, "the store to be full")
            observed["stored_after_full"] = store.count_readings() - full_at
            await asyncio.sleep(3.0)  # the hub keeps running while full; readings wait on the sensor and in memory
            assert not task.done()
            assert "FULL" in service.runtime.devices["store"]
            observed["stored_while_full"] = store.count_readings() - full_at
            observed["sim_minutes_while_full"] = 3.0 * sim.acceleration / 60
            store.conn.execute("PRAGMA max_page_count = 1073741823")  # space returns
            target = sim.sim_minute()
            await until(lambda: (store.last_time_offset(sim.start.isoformat()) or 0) >= target, 90,
                        f"the store to reach sim minute {target:.0f} again")
            observed["status"] = dict(service.runtime.devices)
            assert service.runtime.devices["store"] == "space available again"
            assert service.runtime.devices["cgm"] == "connected"
        finally:
            service.stop()
            await asyncio.wait_for(task, 30)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()
    view = read_store(tmp_path / "hub.sqlite", full_check=True)
    assert_exact_prefix(view, sim, truth, "after the store was full")  # nothing lost while it was full
    print(f"\nfull store: {observed}")
