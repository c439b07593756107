"""The outside watchdog: a stale or missing heartbeat, or a silent hub, is reported as NOT working."""

from __future__ import annotations

import time
from pathlib import Path

from edge.agent.watchdog import check_hub, run_watchdog


def test_fresh_heartbeat_is_ok(tmp_path: Path) -> None:
    beat = tmp_path / "hub.heartbeat"
    beat.write_text(str(int(time.time())))
    assert check_hub(beat, None).ok


def test_stale_or_missing_heartbeat_is_not_working(tmp_path: Path) -> None:
    beat = tmp_path / "hub.heartbeat"
    assert not check_hub(beat, None).ok
    beat.write_text(str(int(time.time()) - 600))
    verdict = check_hub(beat, None, max_age_s=60)
    assert not verdict.ok and "NOT WORKING" in verdict.message
    beat.write_text("garbage")
    assert not check_hub(beat, None).ok


def test_silent_hub_page_is_not_working_and_the_alarm_runs(tmp_path: Path) -> None:
    beat = tmp_path / "hub.heartbeat"
    beat.write_text(str(int(time.time())))
    marker = tmp_path / "alarm"
    code = run_watchdog(beat, "http://127.0.0.1:9", 60, f"cat > {marker}")
    assert code == 1 and "NOT WORKING" in marker.read_text()
