"""Insulin delivered over a window from pump history: boluses, scheduled basal, temps and suspensions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.recommend.insulin_history import DAY_MS, MS_PER_HOUR, insulin_delivered_u
from edge.store.records import InsulinEvent

H = MS_PER_HOUR


def test_scheduled_basal_alone_is_rate_times_hours() -> None:
    assert insulin_delivered_u([], 0, DAY_MS, 1.0) == pytest.approx(24.0)
    assert insulin_delivered_u([], 5 * H, 5 * H, 1.0) == 0.0


def test_boluses_inside_the_window_count_and_those_before_do_not() -> None:
    events = [InsulinEvent(-1 * H, "bolus", insulin_u=5.0), InsulinEvent(2 * H, "bolus", insulin_u=3.0),
              InsulinEvent(25 * H, "bolus", insulin_u=7.0)]
    assert insulin_delivered_u(events, 0, DAY_MS, 0.5) == pytest.approx(12.0 + 3.0)


def test_temp_basal_and_suspension_replace_the_schedule_for_their_duration() -> None:
    events = [InsulinEvent(1 * H, "temp_basal", rate_u_per_h=3.0, duration_min=30),
              InsulinEvent(4 * H, "suspend", duration_min=60)]
    # 24 h at 1 U/h, +0.5 h at 2 U/h more, -1 h at 1 U/h
    assert insulin_delivered_u(events, 0, DAY_MS, 1.0) == pytest.approx(24.0 + 1.0 - 1.0)


def test_a_temp_running_when_the_window_opens_counts_only_inside_it() -> None:
    events = [InsulinEvent(-30 * 60_000, "temp_basal", rate_u_per_h=0.0, duration_min=60)]
    assert insulin_delivered_u(events, 0, 2 * H, 1.0) == pytest.approx(1.5)


def test_a_new_temp_cancels_the_running_one_and_a_basal_change_sets_the_schedule() -> None:
    events = [InsulinEvent(0, "temp_basal", rate_u_per_h=4.0, duration_min=120),
              InsulinEvent(1 * H, "temp_basal", rate_u_per_h=0.0, duration_min=0),  # cancel: back to schedule
              InsulinEvent(2 * H, "basal", rate_u_per_h=2.0)]
    assert insulin_delivered_u(events, 0, 4 * H, 1.0) == pytest.approx(4.0 + 1.0 + 2 * 2.0)


@given(st.lists(st.tuples(st.integers(0, 23), st.sampled_from(["bolus", "temp_basal", "suspend"]),
                          st.floats(0, 10), st.integers(0, 240)), max_size=12),
       st.floats(0.05, 5.0))
def test_never_negative_and_at_least_the_boluses(raw, scheduled) -> None:
    events = [InsulinEvent(hour * H, kind, insulin_u=amount if kind == "bolus" else None,
                           rate_u_per_h=amount if kind == "temp_basal" else None, duration_min=minutes)
              for hour, kind, amount, minutes in raw]
    total = insulin_delivered_u(events, 0, DAY_MS, scheduled)
    boluses = sum(e.insulin_u or 0.0 for e in events if e.kind == "bolus")
    highest = max([scheduled] + [e.rate_u_per_h or 0.0 for e in events])
    assert boluses - 1e-9 <= total <= boluses + 24 * highest + 1e-9
