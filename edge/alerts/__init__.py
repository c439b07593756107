"""Alerts: conditions with hysteresis, one open alert per kind, snooze, and re-notification."""

from .engine import AlertEngine, AlertEvent, AlertObservation, AlertSettings, Severity

__all__ = ["AlertEngine", "AlertEvent", "AlertObservation", "AlertSettings", "Severity"]
