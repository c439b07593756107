"""``glucotwin sim serve`` options build the devices they name (no process, no radio)."""

from __future__ import annotations

import argparse

import pytest

from firmware_bridge.codec.cgms import AnnunciationOrder
from hardware_sim.cli import PUMP_DIALECTS, build_devices, register_sim
from hardware_sim.clock import SimClock
from hardware_sim.faults import FaultPlan


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_sim(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sim", "serve", *argv])


def test_defaults_serve_a_cgm_with_e2e_and_a_spec_pump() -> None:
    sensor, pump = build_devices(parse(), SimClock(manual=True), FaultPlan())
    assert sensor.e2e_crc and sensor.annunciation_order is AnnunciationOrder.SPEC
    assert pump.dialect.e2e and pump.dialect.number_format == "sfloat" and pump.model.reservoir_u == 200


@pytest.mark.parametrize("name", sorted(PUMP_DIALECTS))
def test_options_reach_the_models(name: str, tmp_path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("0,90\n60,150\n")
    args = parse(
        "--trace", str(trace), "--no-e2e-crc", "--annunciation-order", "nordic", "--pump-dialect", name,
        "--cgm-warmup-min", "30", "--low-battery-after-min", "10", "--pump-reservoir-u", "42",
    )
    sensor, pump = build_devices(args, SimClock(manual=True), FaultPlan())
    assert not sensor.e2e_crc and sensor.annunciation_order is AnnunciationOrder.WARNING_CAL_TEMP_STATUS
    assert sensor.model.config.warmup_min == 30 and sensor.model.config.low_battery_after_min == 10
    assert sensor.model.source.interstitial_glucose_mg_dl(30) == pytest.approx(120)
    assert pump.model.reservoir_u == 42 and pump.dialect.e2e is PUMP_DIALECTS[name]["e2e"]


def test_no_pump_serves_only_the_sensor() -> None:
    assert [d.name for d in build_devices(parse("--no-pump"), SimClock(manual=True), FaultPlan())] == ["GlucoTwin CGM"]
