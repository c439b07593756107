"""Total insulin delivered over a window, from the pump's history: the TDD that a TDD-based ISF needs.

Pure arithmetic over :class:`~edge.store.records.InsulinEvent` records. Boluses count in full when given inside
the window. Basal is integrated piecewise: the scheduled rate, replaced by a temp basal or a suspension for its
duration (0 = a cancel; a temp without a duration runs 30 min, a suspension without one until the next event),
and a "basal" event (the rate the pump now delivers) sets the rate and ends any temp. Events before the window only set what was running when it opened.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..store.records import InsulinEvent

MS_PER_HOUR = 3_600_000
DAY_MS = 24 * MS_PER_HOUR
DEFAULT_TEMP_MS = 30 * 60_000  # a temp basal reported without a duration runs 30 min (as the hub's pipeline assumes)


def insulin_delivered_u(events: Iterable[InsulinEvent], start_ms: int, end_ms: int,
                        scheduled_basal_u_per_h: float) -> float:
    """Units delivered in [start_ms, end_ms): boluses plus the integrated basal (scheduled, temp or suspended)."""
    if end_ms <= start_ms:
        return 0.0
    scheduled = float(scheduled_basal_u_per_h)
    temp_rate: float | None = None
    temp_until_ms = -math.inf
    total_u = 0.0
    cursor = start_ms

    def basal_until(until_ms: float) -> None:
        """Integrate the running basal from ``cursor`` to ``until_ms`` (clipped to the window)."""
        nonlocal cursor, temp_rate, total_u
        until = min(until_ms, end_ms)
        while cursor < until:
            temp_running = temp_rate is not None and cursor < temp_until_ms
            segment_end = min(until, temp_until_ms) if temp_running else until
            rate = temp_rate if temp_running else scheduled
            total_u += float(rate) * (segment_end - cursor) / MS_PER_HOUR  # type: ignore[arg-type]
            cursor = int(segment_end) if math.isfinite(segment_end) else end_ms
            if temp_running and cursor >= temp_until_ms:
                temp_rate = None

    for event in sorted(events, key=lambda e: e.timestamp_ms):
        if event.timestamp_ms >= end_ms:
            break
        if event.timestamp_ms > cursor:
            basal_until(event.timestamp_ms)
        if event.kind == "bolus":
            if event.timestamp_ms >= start_ms and event.insulin_u:
                total_u += float(event.insulin_u)
        elif event.kind in ("temp_basal", "suspend"):
            temp_rate = 0.0 if event.kind == "suspend" else float(event.rate_u_per_h or 0.0)
            if event.duration_min is None:
                temp_until_ms = math.inf if event.kind == "suspend" else event.timestamp_ms + DEFAULT_TEMP_MS
            else:
                temp_until_ms = event.timestamp_ms + float(event.duration_min) * 60_000.0
        elif event.kind == "basal" and event.rate_u_per_h is not None:
            scheduled = float(event.rate_u_per_h)
            temp_rate, temp_until_ms = None, -math.inf
    basal_until(end_ms)
    return total_u
