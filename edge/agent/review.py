"""Evidence for the clinician's settings review, computed from what the hub stored (pure over a HubStore).

Per UTC day: the median of the twin's hourly sensitivity ratios; the overnight (00:00-06:00) glucose drift on
nights with no carbs and no bolus from 20:00; and each meal's 3-h excursion (glucose 3 h after minus at the meal).
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import numpy as np

from ..settings_review import DayEvidence, SettingsReview, review_settings
from ..store import HubStore
from ..therapy_settings import TherapySettings

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def _glucose_near(times: np.ndarray, values: np.ndarray, at_ms: int, tolerance_ms: int = 10 * 60_000) -> float | None:
    if len(times) == 0:
        return None
    index = int(np.argmin(np.abs(times - at_ms)))
    return float(values[index]) if abs(int(times[index]) - at_ms) <= tolerance_ms else None


def day_evidence(store: HubStore, day_start_ms: int) -> DayEvidence:
    day = datetime.fromtimestamp(day_start_ms / 1000, UTC).date().isoformat()
    readings = store.readings_between(day_start_ms - 4 * HOUR_MS, day_start_ms + DAY_MS + 3 * HOUR_MS)
    times = np.array([r.timestamp_ms for r in readings], dtype=np.int64)
    values = np.array([r.glucose_mg_dl for r in readings], dtype=float)

    ratios = [p["sensitivity_ratio"] for _, p in store.twin_parameters_between(day_start_ms, day_start_ms + DAY_MS)
              if "sensitivity_ratio" in p]
    ratio = statistics.median(ratios) if len(ratios) >= 6 else None

    carbs = store.carbs_since(day_start_ms - 4 * HOUR_MS)
    boluses = [e for e in store.insulin_since(day_start_ms - 4 * HOUR_MS) if e.kind == "bolus"]
    night_start, night_end = day_start_ms, day_start_ms + 6 * HOUR_MS
    disturbed = any(night_start - 4 * HOUR_MS <= e.timestamp_ms < night_end for e in [*carbs, *boluses])
    drift = None
    mask = (times >= night_start) & (times < night_end)
    if not disturbed and mask.sum() >= 48:  # at least 4 of the 6 hours covered
        hours = (times[mask] - night_start) / HOUR_MS
        drift = float(np.polyfit(hours, values[mask], 1)[0])

    excursions = []
    for entry in carbs:
        if day_start_ms <= entry.timestamp_ms < day_start_ms + DAY_MS and entry.carbs_g >= 20:
            before = _glucose_near(times, values, entry.timestamp_ms)
            after = _glucose_near(times, values, entry.timestamp_ms + 3 * HOUR_MS)
            if before is not None and after is not None:
                excursions.append(after - before)
    return DayEvidence(day, ratio, drift, tuple(excursions))


def review_from_store(store: HubStore, settings: TherapySettings, end_ms: int, days: int = 14) -> SettingsReview:
    end_day = end_ms - end_ms % DAY_MS
    evidence = [day_evidence(store, end_day - k * DAY_MS) for k in range(days, 0, -1)]
    return review_settings(settings, evidence)
