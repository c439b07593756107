"""The README's main job, end to end: cloud service, simulator and hub as real processes on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_whole_system_and_loses_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--days", "0.08", "--acceleration", "600", "--json",
         "--no-progress", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["readings_stored"] == summary["readings_expected"] >= 20
    synced, total = (int(part) for part in summary["synced_records"].split(" of "))
    assert total >= summary["readings_stored"] and synced == total
    assert Path(summary["hub_database"]).exists()
    assert summary["alerts"] == {} or "stale_data" not in summary["alerts"]
