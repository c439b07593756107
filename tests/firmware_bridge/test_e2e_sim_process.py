"""End to end: the simulator in its own process, the hub session here, plain bleak over loopback TCP.

24 simulated hours (288 readings) at x10000 with the sensor out of range for 30 minutes every 2 hours plus
corrupted, truncated, duplicated and reordered notifications: every reading arrives exactly once, in order,
with the glucose value of the scripted trace.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from firmware_bridge.radio import Radio
from firmware_bridge.sessions.cgm_session import CgmSession, CgmSessionConfig
from firmware_bridge.sessions.tracking import Reading
from hardware_sim.devices.glucose_source import ScriptedTrace

from .sim_process import REPO, glucotwin_command, simulator

pytestmark = pytest.mark.timeout(180)

DAY_FAULTS = "drop_every_min=120,drop_duration_min=30,corrupt_crc=0.03,duplicate=0.03,truncate=0.02,out_of_order=0.02,seed=5"


def expected_glucose(offset_min: int) -> float:
    return float(min(400, max(40, round(ScriptedTrace.demo_day(days=30).interstitial_glucose_mg_dl(offset_min)))))


async def follow(spec: str, last_offset_min: int) -> tuple[list[Reading], CgmSession]:
    readings: list[Reading] = []
    config = CgmSessionConfig(scan_timeout_s=0.5, backoff_initial_s=0.02, backoff_max_s=0.25, racp_timeout_s=3.0)
    async with Radio.from_spec(spec) as radio:
        session = CgmSession(radio, config)
        async for reading in session.readings():
            readings.append(reading)
            if reading.time_offset_min >= last_offset_min:
                break
    return readings, session


def test_a_day_with_link_drops_and_corrupted_packets_arrives_exactly_once_in_order() -> None:
    with simulator("--acceleration", "10000", "--faults", DAY_FAULTS, "--scripted", "--no-pump") as spec:
        readings, session = asyncio.run(follow(spec, last_offset_min=24 * 60 - 5))
    offsets = [r.time_offset_min for r in readings]
    assert len(readings) == 288
    assert offsets == list(range(0, 24 * 60, 5))  # none missing, none twice, in order
    assert [r.glucose_mg_dl for r in readings] == [expected_glucose(o) for o in offsets]
    assert session.stats.connects >= 6  # reconnected after the out-of-range periods (11; a loaded machine may miss some)
    assert session.stats.decode_errors > 0  # corrupted packets were met, dropped and recovered
    assert session.tracker.stats.duplicates_dropped > 0


def test_cli_ble_readings_json_against_the_simulator_process() -> None:
    with simulator("--acceleration", "3000", "--no-pump") as spec:
        result = subprocess.run(
            glucotwin_command("ble", "readings", "--transport", spec, "--count", "5", "--json", "--timeout", "60"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["time_offset_min"] for line in lines] == [0, 5, 10, 15, 20]
    assert [line["glucose_mg_dl"] for line in lines] == [expected_glucose(o) for o in (0, 5, 10, 15, 20)]
    assert {"trend_mg_dl_min", "annunciations"} <= set(lines[0])
    assert lines[0]["trend_mg_dl_min"] is None and lines[1]["trend_mg_dl_min"] is not None


def test_cli_ble_pump_status_and_confirmed_bolus_against_the_simulator_process() -> None:
    with simulator("--acceleration", "60") as spec:

        def pump(*args: str) -> subprocess.CompletedProcess[str]:
            command = glucotwin_command("ble", "pump", "--transport", spec, "--json", "--timeout", "60", *args)
            return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=90)

        status = pump("status")
        refused = pump("bolus", "1.5")
        bolus = pump("bolus", "1.5", "--confirm")
        after = pump("status")
    assert status.returncode == 0, status.stderr
    before = json.loads(status.stdout)
    assert before["therapy_state"] == "RUN" and before["e2e_protection"] is True and before["reservoir_u"] > 150
    assert refused.returncode == 3 and "--confirm" in refused.stderr and refused.stdout == ""
    assert bolus.returncode == 0, bolus.stderr
    outcome = json.loads(bolus.stdout)
    assert outcome["accepted"] is True and outcome["bolus_id"] == 1 and outcome["description"] == "fast bolus 1.5 U"
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["delivered_bolus_u"] > 0  # the refused call delivered nothing, the confirmed one did
