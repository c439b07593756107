"""The alert engine: a pure state machine fed one observation at a time.

Why this shape: alarms people stop trusting are worse than none. Every alert kind has a raise condition and a
separate, easier clear condition (hysteresis), so a glucose hovering at 70 mg/dL does not flap; one alert per kind is
open at a time (de-duplication); a snooze silences re-notification but the alert stays open and is re-announced
when the snooze ends if the condition still holds. Urgent lows can be snoozed for at most 15 minutes.

Defaults follow common CGM practice: urgent low < 55 mg/dL, urgent low soon when the forecast crosses 55 within
30 min, low < 70, high > 250 (sustained 15 min), rapid fall/rise beyond 3 mg/dL/min, stale data after 20 min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    URGENT = "urgent"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class AlertSettings:
    urgent_low_mg_dl: float = 55.0
    low_mg_dl: float = 70.0
    low_clear_mg_dl: float = 80.0
    high_mg_dl: float = 250.0
    high_clear_mg_dl: float = 230.0
    high_sustained_min: float = 15.0
    urgent_low_soon_horizon_min: float = 30.0
    rapid_change_mg_dl_min: float = 3.0
    rapid_change_clear_mg_dl_min: float = 2.0
    stale_after_min: float = 20.0
    low_reservoir_u: float = 20.0
    low_reservoir_clear_u: float = 25.0
    renotify_after_min: float = 30.0
    max_urgent_snooze_min: float = 15.0


@dataclass(frozen=True)
class AlertObservation:
    """What the hub knows now. Unknown values are None; a condition on an unknown value neither raises nor clears."""

    now_min: float
    glucose_mg_dl: float | None = None
    glucose_age_min: float | None = None
    trend_mg_dl_min: float | None = None
    forecast_min_mg_dl_within_horizon: float | None = None
    sensor_warming_up: bool = False
    sensor_fault: str | None = None  # e.g. "sensor malfunction"
    sensor_battery_low: bool = False
    pump_occlusion: bool = False
    pump_reservoir_u: float | None = None
    pump_battery_low: bool = False
    pump_fault: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    kind: str
    action: str  # "raise", "renotify" or "clear"
    severity: Severity
    message: str
    at_min: float


@dataclass
class _Open:
    severity: Severity
    message: str
    raised_at_min: float
    last_notified_min: float
    snoozed_until_min: float = -math.inf


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass
class AlertEngine:
    settings: AlertSettings = field(default_factory=AlertSettings)
    open: dict[str, _Open] = field(default_factory=dict)
    _high_since_min: float | None = None

    def snooze(self, kind: str, now_min: float, duration_min: float) -> float:
        """Silence re-notification of an open alert; returns the minute the snooze ends."""
        alert = self.open.get(kind)
        if alert is None:
            raise KeyError(f"no open {kind!r} alert to snooze")
        if alert.severity is Severity.URGENT:
            duration_min = min(duration_min, self.settings.max_urgent_snooze_min)
        alert.snoozed_until_min = now_min + max(duration_min, 0.0)
        return alert.snoozed_until_min

    def evaluate(self, observation: AlertObservation) -> list[AlertEvent]:
        """Apply one observation; returns the raise / renotify / clear events to deliver."""
        events: list[AlertEvent] = []
        for kind, state, severity, message in self._conditions(observation):
            if state is None:
                continue
            if state:
                events.extend(self._raise(kind, severity, message, observation.now_min))
            elif kind in self.open:
                alert = self.open.pop(kind)
                events.append(AlertEvent(kind, "clear", alert.severity, f"{kind.replace('_', ' ')} resolved",
                                         observation.now_min))
        return events

    def _raise(self, kind: str, severity: Severity, message: str, now_min: float) -> list[AlertEvent]:
        alert = self.open.get(kind)
        if alert is None:
            self.open[kind] = _Open(severity, message, now_min, now_min)
            return [AlertEvent(kind, "raise", severity, message, now_min)]
        alert.message = message
        due = now_min >= alert.last_notified_min + self.settings.renotify_after_min
        snooze_just_ended = alert.last_notified_min < alert.snoozed_until_min <= now_min
        if now_min >= alert.snoozed_until_min and (due or snooze_just_ended):
            alert.last_notified_min = now_min
            return [AlertEvent(kind, "renotify", severity, message, now_min)]
        return []

    def _conditions(self, o: AlertObservation) -> list[tuple[str, bool | None, Severity, str]]:
        """(kind, True = active / False = clear / None = cannot tell, severity, message) for every kind."""
        s = self.settings
        glucose_ok = _known(o.glucose_mg_dl) and not o.sensor_warming_up
        fresh = _known(o.glucose_age_min) and o.glucose_age_min <= s.stale_after_min  # type: ignore[operator]
        g = o.glucose_mg_dl if glucose_ok and fresh else None
        conditions: list[tuple[str, bool | None, Severity, str]] = []

        def band(kind: str, value: float | None, on: bool, off: bool, severity: Severity, message: str) -> None:
            if value is None:
                conditions.append((kind, None, severity, message))
            elif on:
                conditions.append((kind, True, severity, message))
            elif off:
                conditions.append((kind, False, severity, message))
            else:  # inside the hysteresis band: keep whatever state the alert is in
                conditions.append((kind, True if kind in self.open else None, severity, message))

        if g is not None:
            band("urgent_low", g, g < s.urgent_low_mg_dl, g >= s.low_mg_dl, Severity.URGENT,
                 f"Urgent low: glucose {g:.0f} mg/dL. Take fast-acting carbs now.")
            band("low", g, g < s.low_mg_dl, g >= s.low_clear_mg_dl, Severity.WARNING,
                 f"Low: glucose {g:.0f} mg/dL.")
            if g > s.high_mg_dl:
                self._high_since_min = o.now_min if self._high_since_min is None else self._high_since_min
            elif g < s.high_clear_mg_dl:
                self._high_since_min = None
            sustained = self._high_since_min is not None and o.now_min - self._high_since_min >= s.high_sustained_min
            band("high", g, sustained, g < s.high_clear_mg_dl, Severity.WARNING,
                 f"High: glucose {g:.0f} mg/dL for {s.high_sustained_min:.0f}+ min.")
        else:
            for kind in ("urgent_low", "low", "high"):
                conditions.append((kind, None, Severity.WARNING, ""))

        forecast = o.forecast_min_mg_dl_within_horizon
        if g is not None and _known(forecast):
            band("urgent_low_soon", forecast, forecast < s.urgent_low_mg_dl and g >= s.urgent_low_mg_dl,  # type: ignore[operator]
                 forecast >= s.low_mg_dl, Severity.URGENT,  # type: ignore[operator]
                 f"Urgent low soon: forecast {forecast:.0f} mg/dL within {s.urgent_low_soon_horizon_min:.0f} min.")
        else:
            conditions.append(("urgent_low_soon", None, Severity.URGENT, ""))

        trend = o.trend_mg_dl_min
        if g is not None and _known(trend):
            band("rapid_fall", trend, trend <= -s.rapid_change_mg_dl_min,  # type: ignore[operator]
                 trend > -s.rapid_change_clear_mg_dl_min, Severity.WARNING,  # type: ignore[operator]
                 f"Falling fast: {trend:+.1f} mg/dL/min.")
            band("rapid_rise", trend, trend >= s.rapid_change_mg_dl_min,  # type: ignore[operator]
                 trend < s.rapid_change_clear_mg_dl_min, Severity.INFO,  # type: ignore[operator]
                 f"Rising fast: {trend:+.1f} mg/dL/min.")
        else:
            conditions.append(("rapid_fall", None, Severity.WARNING, ""))
            conditions.append(("rapid_rise", None, Severity.INFO, ""))

        age = o.glucose_age_min
        stale = (not _known(age)) or age > s.stale_after_min  # type: ignore[operator]
        age_text = "no reading yet" if not _known(age) else f"no reading for {age:.0f} min"
        conditions.append(("stale_data", stale and not o.sensor_warming_up, Severity.WARNING,
                           f"Signal loss: {age_text}. Check the sensor is in range."))
        conditions.append(("sensor_warmup", o.sensor_warming_up, Severity.INFO,
                           "Sensor warming up: no glucose values or dosing advice yet."))
        conditions.append(("sensor_fault", o.sensor_fault is not None, Severity.URGENT,
                           f"Sensor problem: {o.sensor_fault}. Use fingersticks and replace the sensor."))
        conditions.append(("sensor_battery_low", o.sensor_battery_low, Severity.INFO, "Sensor battery low."))
        conditions.append(("pump_occlusion", o.pump_occlusion, Severity.URGENT,
                           "Pump occlusion: insulin is not being delivered. Change the infusion set."))
        reservoir = o.pump_reservoir_u
        if _known(reservoir):
            band("pump_low_reservoir", reservoir, reservoir < s.low_reservoir_u,  # type: ignore[operator]
                 reservoir >= s.low_reservoir_clear_u, Severity.WARNING,  # type: ignore[operator]
                 f"Pump reservoir low: {reservoir:.0f} U left.")
        else:
            conditions.append(("pump_low_reservoir", None, Severity.WARNING, ""))
        conditions.append(("pump_battery_low", o.pump_battery_low, Severity.WARNING, "Pump battery low."))
        conditions.append(("pump_fault", o.pump_fault is not None, Severity.URGENT, f"Pump problem: {o.pump_fault}."))
        return conditions
