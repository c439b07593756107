"""What drives the emulated devices: a glucose source for the sensor, an insulin sink for the pump.

The protocols are deliberately minimal so that a virtual patient (UVA/Padova, from another module) can
plug in later by implementing two methods. Sim time is in minutes since the simulation's epoch
(``sim_minute``), a float.

:class:`ScriptedTrace` is the deterministic source used by tests: a piecewise-linear glucose trace that a test
can also read back to check every value that crossed the radio.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class GlucoseSource(Protocol):
    """Anything that can say what the interstitial glucose is at a sim time."""

    def interstitial_glucose_mg_dl(self, sim_minute: float) -> float: ...


@runtime_checkable
class InsulinSink(Protocol):
    """Anything that receives the insulin a pump delivers (a virtual patient, or a ledger in tests)."""

    def deliver_insulin(self, units: float, sim_minute: float) -> None: ...


class TraceError(ValueError):
    """A scripted trace is empty, unordered or holds a value that is not a finite glucose."""


@dataclass(frozen=True)
class ScriptedTrace:
    """Piecewise-linear glucose trace: ``points`` are ``(sim_minute, glucose_mg_dl)`` in increasing time.

    Before the first point the first value holds, after the last point the last value holds.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise TraceError("a scripted trace needs at least one point")
        minutes = [minute for minute, _ in self.points]
        if any(later <= earlier for earlier, later in zip(minutes, minutes[1:])):
            raise TraceError("trace minutes must be strictly increasing")
        for minute, glucose in self.points:
            if not (math.isfinite(minute) and math.isfinite(glucose) and glucose > 0):
                raise TraceError(f"invalid trace point ({minute!r}, {glucose!r})")

    @classmethod
    def from_points(cls, points: Iterable[tuple[float, float]]) -> ScriptedTrace:
        return cls(tuple((float(minute), float(glucose)) for minute, glucose in points))

    @classmethod
    def from_csv(cls, path: str | Path) -> ScriptedTrace:
        """Read ``minute,glucose_mg_dl`` rows (a header row with non-numeric cells is skipped)."""
        points: list[tuple[float, float]] = []
        with open(path, newline="") as handle:
            for row_number, row in enumerate(csv.reader(handle), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                try:
                    points.append((float(row[0]), float(row[1])))
                except (ValueError, IndexError):
                    if row_number == 1:
                        continue  # header
                    raise TraceError(f"{path}:{row_number}: expected 'minute,glucose_mg_dl', got {row!r}") from None
        return cls.from_points(points)

    @classmethod
    def demo_day(cls, days: int = 1, step_min: int = 5) -> ScriptedTrace:
        """A deterministic, plausible T1D day: a fasting baseline, three meal excursions and a slow wave.

        Values are whole mg/dL (as CGMs report them), so what crosses the radio can be compared exactly.
        """
        meals_min_of_day = (7 * 60 + 30, 12 * 60 + 30, 19 * 60)
        points = []
        for minute in range(0, days * 24 * 60 + step_min, step_min):
            minute_of_day = minute % (24 * 60)
            glucose = 120.0 + 15.0 * math.sin(2 * math.pi * minute / (24 * 60))
            for meal in meals_min_of_day:
                since = minute_of_day - meal
                if 0 <= since <= 240:
                    # rise over ~60 min, fall back over ~3 h (gamma-like bump)
                    glucose += 90.0 * (since / 60.0) * math.exp(1.0 - since / 60.0)
            points.append((float(minute), float(round(glucose))))
        return cls(tuple(points))

    def interstitial_glucose_mg_dl(self, sim_minute: float) -> float:
        minutes = [minute for minute, _ in self.points]
        index = bisect.bisect_right(minutes, sim_minute)
        if index == 0:
            return self.points[0][1]
        if index == len(self.points):
            return self.points[-1][1]
        (m0, g0), (m1, g1) = self.points[index - 1], self.points[index]
        return g0 + (g1 - g0) * (sim_minute - m0) / (m1 - m0)


@dataclass
class InsulinLedger:
    """An insulin sink that only records what it received: ``(sim_minute, units)`` pairs."""

    deliveries: list[tuple[float, float]] = field(default_factory=list)

    def deliver_insulin(self, units: float, sim_minute: float) -> None:
        if units < 0 or not math.isfinite(units):
            raise ValueError(f"cannot deliver {units!r} U")
        self.deliveries.append((sim_minute, units))

    @property
    def total_u(self) -> float:
        return math.fsum(units for _, units in self.deliveries)

    def total_between_u(self, start_minute: float, end_minute: float) -> float:
        return math.fsum(units for minute, units in self.deliveries if start_minute <= minute < end_minute)


def trace_values(source: GlucoseSource, minutes: Sequence[float]) -> list[float]:
    """Sample ``source`` at ``minutes`` (a convenience for tests and plots)."""
    return [source.interstitial_glucose_mg_dl(minute) for minute in minutes]
