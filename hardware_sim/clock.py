"""Simulated time for the emulated world.

Simulation time is counted in minutes since ``start`` (a timezone-aware datetime). Two modes:

* accelerated (default): sim minutes advance with the event loop's monotonic clock times ``acceleration``
  (``acceleration=60`` -> one sim hour per real minute);
* manual (``manual=True``, for tests): time stands still until :meth:`SimClock.advance_min` moves it; sleepers
  whose deadline is reached wake up in deadline order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import datetime, timedelta, timezone


class ClockError(ValueError):
    """Invalid clock parameters or use (negative durations, advancing an accelerated clock...)."""


class SimClock:
    """Simulated wall clock with an acceleration factor or manual stepping."""

    def __init__(
        self,
        start: datetime | None = None,
        acceleration: float = 1.0,
        *,
        manual: bool = False,
    ) -> None:
        if not acceleration > 0:
            raise ClockError(f"acceleration must be > 0, got {acceleration}")
        start = start or datetime.now(timezone.utc).replace(second=0, microsecond=0)
        if start.tzinfo is None:
            raise ClockError("start must be timezone-aware (use UTC)")
        self.start = start
        self.acceleration = float(acceleration)
        self.manual = manual
        self._manual_min = 0.0
        self._origin_s = time.monotonic()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    # -- reading the clock ------------------------------------------------------------------------------------
    def now_min(self) -> float:
        """Sim minutes elapsed since ``start``."""
        if self.manual:
            return self._manual_min
        return (time.monotonic() - self._origin_s) * self.acceleration / 60.0

    def now(self) -> datetime:
        """Current simulated datetime."""
        return self.start + timedelta(minutes=self.now_min())

    def real_seconds(self, sim_min: float) -> float:
        """Real seconds that ``sim_min`` sim minutes take on an accelerated clock."""
        return sim_min * 60.0 / self.acceleration

    # -- waiting ----------------------------------------------------------------------------------------------
    async def sleep_min(self, duration_min: float) -> None:
        """Sleep ``duration_min`` simulated minutes."""
        if duration_min < 0:
            raise ClockError(f"cannot sleep a negative duration ({duration_min} min)")
        await self.sleep_until_min(self.now_min() + duration_min)

    async def sleep_until_min(self, deadline_min: float) -> None:
        """Sleep until the sim clock reads ``deadline_min`` (returns at once if already past)."""
        if not self.manual:
            delay_min = deadline_min - self.now_min()
            if delay_min > 0:
                await asyncio.sleep(self.real_seconds(delay_min))
            return
        if deadline_min <= self._manual_min:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_min, next(self._sequence), waiter))
        await waiter

    def advance_min(self, duration_min: float) -> None:
        """Manual mode: move time forward and wake every sleeper whose deadline is reached."""
        if not self.manual:
            raise ClockError("advance_min is only for a manual clock")
        if duration_min < 0:
            raise ClockError(f"time does not go backwards ({duration_min} min)")
        self._manual_min += duration_min
        while self._sleepers and self._sleepers[0][0] <= self._manual_min:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def step_min(self, duration_min: float) -> None:
        """Manual mode: advance in stages, stopping at each sleeper's deadline so that woken tasks read
        the time they asked for (a periodic task sees every period, not one jump)."""
        if not self.manual:
            raise ClockError("step_min is only for a manual clock")
        if duration_min < 0:
            raise ClockError(f"time does not go backwards ({duration_min} min)")
        target_min = self._manual_min + duration_min
        while self._sleepers and self._sleepers[0][0] <= target_min:
            self.advance_min(max(0.0, self._sleepers[0][0] - self._manual_min))
            for _ in range(5):
                await asyncio.sleep(0)
        self.advance_min(target_min - self._manual_min)
        for _ in range(5):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        mode = "manual" if self.manual else f"x{self.acceleration:g}"
        return f"SimClock(start={self.start.isoformat()}, {mode}, now_min={self.now_min():.2f})"
