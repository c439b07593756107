"""Alert engine: thresholds, hysteresis (no flapping), de-duplication, snooze and re-notification."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.alerts import AlertEngine, AlertObservation, Severity


def observe(engine: AlertEngine, minute: float, glucose: float | None = 120.0, **kw) -> list:
    return engine.evaluate(AlertObservation(now_min=minute, glucose_mg_dl=glucose, glucose_age_min=1.0, **kw))


def kinds(events: list, action: str = "raise") -> set[str]:
    return {event.kind for event in events if event.action == action}


def test_low_raises_once_and_clears_only_above_the_hysteresis_band() -> None:
    engine = AlertEngine()
    assert "low" in kinds(observe(engine, 0, 65))
    # hovering around the threshold: no new raise, no clear
    for minute, glucose in [(5, 71), (10, 69), (15, 75), (20, 68)]:
        events = observe(engine, minute, glucose)
        assert "low" not in kinds(events) and "low" not in kinds(events, "clear")
    assert "low" in kinds(observe(engine, 25, 82), "clear")


def test_urgent_low_is_urgent() -> None:
    events = observe(AlertEngine(), 0, 50)
    urgent = [event for event in events if event.kind == "urgent_low"]
    assert urgent and urgent[0].severity is Severity.URGENT


def test_urgent_low_soon_from_the_forecast() -> None:
    events = observe(AlertEngine(), 0, 95, forecast_min_mg_dl_within_horizon=48)
    assert "urgent_low_soon" in kinds(events)
    assert not observe(AlertEngine(), 0, 95, forecast_min_mg_dl_within_horizon=90)


def test_high_needs_to_be_sustained() -> None:
    engine = AlertEngine()
    assert "high" not in kinds(observe(engine, 0, 260))
    assert "high" not in kinds(observe(engine, 10, 262))
    assert "high" in kinds(observe(engine, 15, 265))
    assert "high" in kinds(observe(engine, 20, 225), "clear")


def test_stale_data_and_sensor_faults() -> None:
    engine = AlertEngine()
    events = engine.evaluate(AlertObservation(now_min=0, glucose_mg_dl=120, glucose_age_min=25))
    assert "stale_data" in kinds(events)
    events = engine.evaluate(AlertObservation(now_min=5, glucose_mg_dl=120, glucose_age_min=2))
    assert "stale_data" in kinds(events, "clear")
    events = engine.evaluate(
        AlertObservation(now_min=10, glucose_mg_dl=120, glucose_age_min=2, sensor_fault="malfunction",
                         pump_occlusion=True, pump_reservoir_u=12)
    )
    assert {"sensor_fault", "pump_occlusion", "pump_low_reservoir"} <= kinds(events)


def test_warmup_is_not_signal_loss() -> None:
    events = AlertEngine().evaluate(AlertObservation(now_min=0, sensor_warming_up=True))
    assert kinds(events) == {"sensor_warmup"}


def test_renotify_after_interval_and_snooze_delays_it() -> None:
    engine = AlertEngine()
    observe(engine, 0, 65)
    assert not kinds(observe(engine, 10, 65), "renotify")
    assert "low" in kinds(observe(engine, 30, 65), "renotify")
    engine.snooze("low", 30, 60)
    assert not kinds(observe(engine, 60, 65), "renotify")
    assert "low" in kinds(observe(engine, 90, 65), "renotify")


def test_urgent_snooze_is_capped() -> None:
    engine = AlertEngine()
    observe(engine, 0, 50)
    assert engine.snooze("urgent_low", 0, 120) == 15


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=39, max_value=401), min_size=1, max_size=200))
def test_never_more_than_one_open_alert_per_kind_and_raises_alternate_with_clears(trace: list[float]) -> None:
    engine = AlertEngine()
    open_kinds: set[str] = set()
    for minute, glucose in enumerate(trace):
        for event in observe(engine, minute * 5, glucose):
            if event.action == "raise":
                assert event.kind not in open_kinds
                open_kinds.add(event.kind)
            elif event.action == "clear":
                assert event.kind in open_kinds
                open_kinds.remove(event.kind)
        assert open_kinds == set(engine.open)
