"""``glucotwin cloud``: admin commands on a real database file, and ``serve`` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from edge.cli import main
from tests.cloud_sync.cloudsync_support import free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out.strip()


def test_admin_commands_build_a_working_clinic(tmp_path: Path, capsys, monkeypatch) -> None:
    db = ["--db", str(tmp_path / "cloud.db"), "--master-key", str(tmp_path / "master.key")]
    code, clinic_id = run(capsys, "cloud", "create-clinic", "North Clinic", *db)
    assert code == 0 and clinic_id.startswith("clinic-")
    monkeypatch.setenv("GLUCOTWIN_PASSWORD", "a long enough password")
    code, clinician_id = run(capsys, "cloud", "create-clinician", clinic_id, "Dr@North.example", *db)
    assert code == 0 and clinician_id.startswith("clin-")
    code, patient_id = run(capsys, "cloud", "create-patient", clinic_id, "--name", "P", *db)
    assert code == 0 and patient_id.startswith("pt-")
    code, enrollment = run(capsys, "cloud", "enrollment-code", patient_id, clinic_id, *db)
    assert code == 0 and len(enrollment.replace("-", "")) == 20
    code, token = run(capsys, "cloud", "admin-token", *db)
    assert code == 0 and len(token) > 30
    assert run(capsys, "cloud", "rotate-ingest-key", *db)[0] == 0
    code, keys = run(capsys, "cloud", "list-ingest-keys", *db)
    assert keys.count('"key_id"') == 2
    assert oct((tmp_path / "master.key").stat().st_mode & 0o777) == "0o600"
    code, out = run(capsys, "cloud", "verify-audit", *db)
    assert code == 0 and "OK" in out
    import sqlite3  # noqa: PLC0415
    with sqlite3.connect(tmp_path / "cloud.db") as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET action = 'nothing' WHERE entry_id = 2")
    assert main(["cloud", "verify-audit", *db]) == 1


def test_serve_runs_uvicorn_with_openapi(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from edge.cli import main; sys.exit(main())",
                             "cloud", "serve", "--port", str(port), "--db", str(tmp_path / "c.db"),
                             "--log-level", "warning"], cwd=tmp_path, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        spec = requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert spec["openapi"].startswith("3.") and "/v1/ingest/{device_id}" in spec["paths"]
        assert requests.get(f"http://127.0.0.1:{port}/v1/ingest-key", timeout=5).json()["key_id"].startswith("ik-")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert (tmp_path / "c.master-key").exists()
