"""Load benchmark: N concurrent hubs upload sealed envelopes to the cloud service on loopback.

    python -m cloud_sync.bench_load [--hubs 64] [--batches 5] [--batch-size 20] [--backends sqlite,postgres]

For each backend it starts a real service process (``glucotwin cloud serve``, uvicorn, one worker) on a
loopback port, enrolls the hubs over HTTP, pre-seals every envelope (so the hubs' own HPKE/Ed25519 work does
not compete with the server for the CPU), then lets all hubs post their batches concurrently (one thread and
one keep-alive session each) and prints envelopes/s and request latency percentiles side by side.

PostgreSQL: uses Debian's binaries (``/usr/lib/postgresql/*/bin``); with ``--install-postgres`` it runs
``apt-get install -y postgresql`` when they are missing. The cluster is created by ``initdb`` in a temporary
directory, owned by an unprivileged user when run as root (``postgres`` or ``nobody``), on a loopback port,
and removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from cloud_sync.envelope import (
    CarbEntry,
    EnvelopeHeader,
    InsulinDose,
    ReadingSeries,
    SummaryPayload,
    TwinEstimate,
    seal,
)
from cloud_sync.keys import create_enrollment_code
from cloud_sync.service import accounts
from cloud_sync.service.app import Service, ServiceConfig
from cloud_sync.sync_client import HubCredentials, enroll


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _hour(rng: random.Random, hour: int, t0_ms: int = 1_767_225_600_000) -> bytes:
    start = t0_ms + hour * 3_600_000
    readings = ReadingSeries.from_pairs([(start + i * 300_000, rng.randint(60, 260)) for i in range(12)])
    insulin = (InsulinDose(start + 60_000, 2.5, "bolus"),) if hour % 4 == 0 else ()
    carbs = (CarbEntry(start + 30_000, 40.0),) if insulin else ()
    return SummaryPayload(start, start + 3_600_000, readings, insulin, carbs,
                          (TwinEstimate(start, {"isf_mg_dl_per_u": 45.0}),)).to_bytes()


@dataclass
class Result:
    backend: str
    hubs: int
    envelopes: int
    records: int
    wall_s: float
    latencies_ms: list[float]
    errors: int

    def row(self) -> str:
        lat = sorted(self.latencies_ms) or [float("nan")]
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
        return (f"| {self.backend:<23} | {self.hubs:>4} | {self.envelopes:>9} | {self.wall_s:>7.2f} | "
                f"{self.envelopes / self.wall_s:>9.0f} | {self.records / self.wall_s:>9.0f} | "
                f"{statistics.median(lat):>7.1f} | {p(0.99):>7.1f} | {self.errors:>6} |")


HEADER = ("| backend                 | hubs | envelopes |  wall s | env/s     | records/s | p50 ms  | p99 ms  | errors |\n"
          "|-------------------------|------|-----------|---------|-----------|-----------|---------|---------|--------|")


@contextlib.contextmanager
def _serve(args_db: list[str], master_key: Path) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-c", "import sys; from edge.cli import main; sys.exit(main())", "cloud", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--master-key", str(master_key), "--log-level", "warning",
           *args_db]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("service exited: " + proc.stderr.read().decode()[-2000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("service did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_backend(name: str, config: ServiceConfig, serve_args: list[str], master_key: Path, hubs: int,
                batches: int, batch_size: int) -> Result:
    service = Service(config)
    with service.db.transaction() as tx:
        clinic = accounts.create_clinic(tx, "bench")
        codes = []
        for _ in range(hubs):
            patient = accounts.create_patient(tx, clinic)
            codes.append(create_enrollment_code(tx, patient, clinic))
    service.close()
    with _serve(serve_args, master_key) as url:
        creds: list[HubCredentials] = [enroll(url, code) for code in codes]
        bodies: list[list[dict]] = []
        n_records = 0
        for h, cred in enumerate(creds):  # pre-seal: the hubs' CPU work is not what is measured
            rng = random.Random(h)
            hub_batches = []
            seq = 0
            for _ in range(batches):
                envs = []
                for _ in range(batch_size):
                    seq += 1
                    payload = _hour(rng, seq)
                    n_records += len(SummaryPayload.from_bytes(payload).records())
                    header = EnvelopeHeader(cred.device_id, cred.identity.key_id, seq, cred.ingest_key.key_id)
                    envs.append(seal(payload, header, cred.ingest_key.x25519(), cred.identity.private_key).to_json())
                hub_batches.append({"envelopes": envs})
            bodies.append(hub_batches)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        start_gate = threading.Barrier(hubs + 1)

        def hub(i: int) -> None:
            session = requests.Session()
            mine = []
            start_gate.wait()
            for b, body in enumerate(bodies[i]):
                t = time.perf_counter()
                response = session.post(f"{url}/v1/ingest/{creds[i].device_id}", json=body, timeout=120,
                                        headers={"Idempotency-Key": f"{creds[i].device_id}:{b}"})
                mine.append((time.perf_counter() - t) * 1000)
                if response.status_code != 200:
                    with lock:
                        errors[0] += 1
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=hub, args=(i,)) for i in range(hubs)]
        for thread in threads:
            thread.start()
        start_gate.wait()
        t0 = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
    return Result(name, hubs, hubs * batches * batch_size, n_records, wall, latencies, errors[0])


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_cluster(install: bool) -> Iterator[str | None]:
    """Yield a DSN for a throwaway PostgreSQL cluster on loopback, or None if PostgreSQL is unavailable."""
    bindir = _pg_bin()
    if bindir is None and install and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "postgresql"], check=False, stdout=subprocess.DEVNULL)
        bindir = _pg_bin()
    if bindir is None:
        yield None
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        print("psycopg is not installed: pip install 'psycopg[binary]' to benchmark PostgreSQL", file=sys.stderr)
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="glucotwin-pg-"))
    datadir = workdir / "data"
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(workdir, user=user)
        run_as = ["runuser", "-u", user, "--"]
    try:
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "bench",
                        "-E", "UTF8", "--no-locale"], check=True, stdout=subprocess.DEVNULL)
        opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c max_connections=50"
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l",
                        str(workdir / "pg.log"), "-w", "start"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*run_as, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bench",
                        "glucotwin"], check=True)
        yield f"host=127.0.0.1 port={port} user=bench dbname=glucotwin"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=64)
    parser.add_argument("--batches", type=int, default=5, help="batches per hub")
    parser.add_argument("--batch-size", type=int, default=20, help="envelopes per batch (1 hour summary each)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--install-postgres", action="store_true", help="apt-get install postgresql if missing")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="glucotwin-bench-") as tmp:
        master = Path(tmp) / "master.key"
        master.write_bytes(os.urandom(32))
        if "sqlite" in backends:
            db = Path(tmp) / "cloud.db"
            results.append(run_backend("sqlite (WAL, sync=FULL)", ServiceConfig(db_path=db, master_key_path=master),
                                       ["--db", str(db)], master, args.hubs, args.batches, args.batch_size))
        if "postgres" in backends:
            with postgres_cluster(args.install_postgres) as dsn:
                if dsn is None:
                    print("PostgreSQL not available: skipped", file=sys.stderr)
                else:
                    results.append(run_backend("postgresql (8 parts)", ServiceConfig(postgres_dsn=dsn,
                                                                                     master_key_path=master),
                                               ["--postgres", dsn], master, args.hubs, args.batches,
                                               args.batch_size))
    print(f"{args.hubs} hubs x {args.batches} batches x {args.batch_size} envelopes (1 h of CGM each); "
          f"one uvicorn worker; {os.cpu_count()} CPUs")
    print(HEADER)
    for result in results:
        print(result.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
