"""Plain records the hub stores. Times are UTC epoch milliseconds (``*_ms``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredReading:
    """One CGM reading, identified by its sensor session and time offset (so re-sent records deduplicate)."""

    sensor_session: str
    time_offset_min: int
    timestamp_ms: int
    glucose_mg_dl: float
    trend_mg_dl_min: float | None = None
    annunciations: int = 0
    source: str = "live"  # "live" notification or "backfill" from the sensor's stored records


@dataclass(frozen=True)
class InsulinEvent:
    """Insulin the pump delivered or was commanded to deliver.

    ``kind`` is "bolus" (``insulin_u``), "temp_basal" (``rate_u_per_h`` for ``duration_min``), "basal" (scheduled
    rate change) or "suspend". ``pump_sequence`` is the pump's history sequence number when it came from there.
    """

    timestamp_ms: int
    kind: str
    insulin_u: float | None = None
    rate_u_per_h: float | None = None
    duration_min: float | None = None
    pump_sequence: int | None = None
    source: str = "pump"


@dataclass(frozen=True)
class CarbEntry:
    timestamp_ms: int
    carbs_g: float
    absorption_min: float = 180.0
    source: str = "patient"
