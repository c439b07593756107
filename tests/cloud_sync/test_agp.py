"""AGP data (statistics, ranges bar, modal-day percentiles, daily profiles) hand-checked on synthetic traces,
and the SVG charts parsed back as XML."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.reports import svg
from cloud_sync.reports.agp import AgpInputError, build_agp, modal_day, readings_grid
from cloud_sync.reports.clinical import parameter_series

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z (a Thursday)
MIN = 60_000
DAY = 1440 * MIN
NS = "{http://www.w3.org/2000/svg}"


def trace(values_per_5min: list[float], start: int = T0) -> list[tuple[int, float]]:
    return [(start + i * 5 * MIN, v) for i, v in enumerate(values_per_5min)]


# --- statistics ----------------------------------------------------------------------------------------------
def test_statistics_hand_checked() -> None:
    # 12 h at 100, 6 h at 200, 6 h at 50 (288 readings, one day)
    readings = trace([100.0] * 144 + [200.0] * 72 + [50.0] * 72)
    report = build_agp(readings, T0, T0 + DAY)
    s = report.summary
    assert s.readings_count == 288 and s.expected_readings_count == 288
    assert s.sensor_active_pct == 100.0
    assert s.days_of_wear_d == 1.0
    assert s.time_in_range_70_180_pct == 50.0
    assert s.time_181_250_pct == 25.0
    assert s.time_below_54_pct == 25.0
    assert s.time_54_69_pct == 0.0
    assert s.mean_glucose_mg_dl == pytest.approx((144 * 100 + 72 * 200 + 72 * 50) / 288)  # 112.5
    assert s.gmi_pct == pytest.approx(3.31 + 0.02392 * 112.5)
    bar = report.range_bar
    assert [k for k, _, _ in bar.segments] == ["very_low", "low", "target", "high", "very_high"]
    assert bar.percent("very_low") == 25.0 and bar.percent("target") == 50.0
    assert sum(p for _, _, p in bar.segments) == pytest.approx(100.0)
    goals = {g.key: g for g in report.goals}
    assert goals["tir"].met is False and goals["tbr54"].met is False and goals["tar250"].met is True
    assert goals["days"].met is False  # 1 day < 14


def test_missing_readings_lower_sensor_active_but_not_the_ranges() -> None:
    readings = trace([120.0] * 288)[::2]  # every other slot empty
    report = build_agp(readings, T0, T0 + DAY)
    assert report.summary.readings_count == 144
    assert report.summary.sensor_active_pct == 50.0
    assert report.summary.time_in_range_70_180_pct == 100.0


def test_grid_keeps_the_first_reading_of_a_slot_and_ignores_outside_readings() -> None:
    grid = readings_grid([(T0, 100), (T0 + MIN, 300), (T0 + 10 * MIN, 150), (T0 + DAY, 400), (T0 - 1, 400)],
                         T0, T0 + 15 * MIN)
    assert np.isnan(grid[1]) and grid[0] == 100 and grid[2] == 150 and len(grid) == 3


def test_period_outside_readings_are_ignored_and_empty_period_has_no_data() -> None:
    report = build_agp(trace([90.0] * 10, start=T0 - DAY), T0, T0 + DAY)
    assert not report.has_data
    assert math.isnan(report.summary.mean_glucose_mg_dl)
    assert all(g.met is None for g in report.goals if g.key not in ("days", "active"))


@pytest.mark.parametrize("readings,start,end", [
    ([(T0, float("nan"))], T0, T0 + DAY),
    ([(T0, 0.0)], T0, T0 + DAY),
    ([(T0, -5.0)], T0, T0 + DAY),
    ([(T0, 100.0)], T0 + DAY, T0),
    ([(T0, 100.0)], T0, T0 + MIN),  # shorter than one 5-min interval
])
def test_bad_input_is_a_typed_error(readings, start, end) -> None:
    with pytest.raises(AgpInputError):
        build_agp(readings, start, end)


# --- modal day -----------------------------------------------------------------------------------------------
def test_modal_day_percentiles_hand_checked() -> None:
    # three days at 100, 150 and 200: every 15-min bin holds 3 readings of each value (n = 9). With linear
    # interpolation (index = p/100 * (n-1)): p5 -> idx 0.4 -> 100, p25 -> idx 2 -> 100, p50 -> idx 4 -> 150,
    # p75 -> idx 6 -> 200, p95 -> idx 7.6 -> 200. Constant curves are unchanged by smoothing.
    readings = trace([100.0] * 288 + [150.0] * 288 + [200.0] * 288)
    md = build_agp(readings, T0, T0 + 3 * DAY).modal_day
    assert len(md.counts) == 96 and set(md.counts) == {9}
    expected = {5: 100.0, 25: 100.0, 50: 150.0, 75: 200.0, 95: 200.0}
    for p, value in expected.items():
        assert set(md.raw[p]) == {value}
        assert md.smoothed[p] == pytest.approx([value] * 96)


def test_modal_day_smoothing_is_circular_1_2_1() -> None:
    # bin i holds 3 readings of 100 + 10 * (i % 4); smoothed[i] = (raw[i-1] + 2 raw[i] + raw[i+1]) / 4
    readings = [(T0 + i * 15 * MIN + k * 5 * MIN, 100.0 + 10 * (i % 4)) for i in range(96) for k in range(3)]
    md = modal_day(readings)
    raw = md.raw[50]
    assert raw[:4] == (100.0, 110.0, 120.0, 130.0)
    assert md.smoothed[50][0] == pytest.approx((130 + 2 * 100 + 110) / 4)  # wraps to bin 95 (23:45)
    assert md.smoothed[50][1] == pytest.approx((100 + 2 * 110 + 120) / 4)
    assert md.smoothed[50][95] == pytest.approx((120 + 2 * 130 + 100) / 4)


def test_modal_day_gaps_stay_gaps_and_neighbours_renormalise() -> None:
    readings = [(T0 + i * 15 * MIN, 100.0 + i) for i in range(96) if i != 10]
    md = modal_day(readings)
    assert md.counts[10] == 0 and math.isnan(md.raw[50][10]) and math.isnan(md.smoothed[50][10])
    assert md.smoothed[50][9] == pytest.approx((108 + 2 * 109) / 3)  # bin 10 missing: weights 1-2
    assert md.smoothed[50][11] == pytest.approx((2 * 111 + 112) / 3)


def test_modal_day_uses_local_time_with_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    winter = 1_768_435_200_000  # 2026-01-15T00:00Z = 01:00 in Paris (UTC+1)
    summer = 1_784_073_600_000  # 2026-07-15T00:00Z = 02:00 in Paris (UTC+2)
    md = modal_day([(winter, 100.0), (summer, 200.0)], paris)
    assert md.counts[4] == 1 and md.raw[50][4] == 100.0  # 01:00-01:15
    assert md.counts[8] == 1 and md.raw[50][8] == 200.0  # 02:00-02:15


def test_daily_profiles_one_per_local_day_with_own_tir() -> None:
    readings = trace([100.0] * 288 + [250.0] * 144 + [100.0] * 144)
    report = build_agp(readings, T0, T0 + 2 * DAY)
    assert [d.day for d in report.days] == [date(2026, 1, 1), date(2026, 1, 2)]
    assert report.days[0].time_in_range_70_180_pct == 100.0
    assert report.days[1].time_in_range_70_180_pct == 50.0
    assert len(report.days[1].points) == 288 and report.days[1].points[0] == (0.0, 250.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * 288 - 1), st.floats(40, 400)), min_size=1, max_size=400))
def test_percentiles_are_ordered_and_ranges_sum_to_100(samples) -> None:
    readings = [(T0 + k * 5 * MIN, g) for k, g in samples]
    report = build_agp(readings, T0, T0 + 3 * DAY)
    for curves in (report.modal_day.raw, report.modal_day.smoothed):
        stacked = np.array([curves[p] for p in (5, 25, 50, 75, 95)])
        ok = ~np.isnan(stacked).any(axis=0)
        assert (np.diff(stacked[:, ok], axis=0) >= -1e-9).all()
    assert sum(p for _, _, p in report.range_bar.segments) == pytest.approx(100.0)
    assert sum(report.modal_day.counts) == report.summary.readings_count


# --- SVG -----------------------------------------------------------------------------------------------------
def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg" and root.find(f"{NS}title") is not None and root.get("viewBox")
    return root


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def test_svg_charts_are_well_formed_and_carry_their_parts() -> None:
    readings = trace([100.0] * 288 + [150.0] * 288 + [260.0] * 100 + [45.0] * 188)
    report = build_agp(readings, T0, T0 + 3 * DAY)

    bar = parse(svg.tir_bar_svg(report.range_bar))
    segments = by_class(bar, "tir-segment")
    assert [s.get("data-range") for s in segments] == ["very_low", "low", "target", "high", "very_high"]
    heights = {s.get("data-range"): float(s.get("height")) for s in segments}
    for key, _, pct in report.range_bar.segments:  # true proportions: 188 < 54, 576 target, 100 > 250
        assert heights[key] / heights["target"] == pytest.approx(pct / report.range_bar.percent("target"), abs=0.01)
    assert report.range_bar.percent("very_low") == pytest.approx(100 * 188 / 864)
    labels = [float(t.get("y")) for t in by_class(bar, "tir-label")]
    assert all(a - b >= 15.9 for a, b in zip(labels, labels[1:]))  # legible, bottom to top
    assert all(0 < y <= 300 for y in labels)

    modal = parse(svg.modal_day_svg(report.modal_day))
    assert len(by_class(modal, "agp-target-band")) == 1
    assert by_class(modal, "agp-band-5-95") and by_class(modal, "agp-band-25-75")
    assert len(by_class(modal, "agp-median")) == 1
    target = by_class(modal, "agp-target-band")[0]
    assert float(target.get("height")) > 0

    daily = parse(svg.daily_profiles_svg(report.days))
    assert len(by_class(daily, "agp-day")) == 3
    assert len(by_class(daily, "agp-day-trace")) == 3


def test_svg_gaps_break_lines_and_text_is_escaped() -> None:
    readings = [(T0 + i * 15 * MIN, 120.0) for i in range(96) if not 40 <= i < 48]
    md = modal_day(readings)
    modal = parse(svg.modal_day_svg(md))
    assert len(by_class(modal, "agp-median")) == 2  # one run before the 2-h gap, one after
    empty = parse(svg.modal_day_svg(modal_day([])))
    assert by_class(empty, "no-data") and not by_class(empty, "agp-median")

    series = parameter_series([(T0, {"isf_mg_dl_per_u": 40.0, "isf_sd": 2.0}),
                               (T0 + DAY, {"isf_mg_dl_per_u": 50.0, "isf_sd": 2.0})])
    points = series["isf_mg_dl_per_u"]
    assert points[0] == (T0, 40.0, pytest.approx(40 - 1.96 * 2), pytest.approx(40 + 1.96 * 2))
    chart = parse(svg.parameter_series_svg(points, "ISF <&> 'x'", "mg/dL per U"))
    assert "ISF <&> 'x'" in chart.find(f"{NS}title").text
    assert by_class(chart, "twin-band") and by_class(chart, "twin-line")
    assert by_class(parse(svg.parameter_series_svg([], "ISF")), "no-data")
    assert by_class(parse(svg.tir_bar_svg(build_agp([], T0, T0 + DAY).range_bar)), "no-data")
