"""Loop-style piecewise-linear carb absorption and carbs on board.

With absorption time T and s = t / T (Loop ``PiecewiseLinearAbsorption``): the absorption rate rises
linearly from 0 over the first 15 % of T, holds its peak until 50 %, and falls linearly to 0 at T. The peak
rate m (fraction of the entry per unit of s) makes the area 1: m * (0.15/2 + 0.35 + 0.5/2) = 1, m = 1/0.675.

    F(s) = m * s^2 / (2*0.15)                                     0    <= s <= 0.15
         = m * (0.075 + (s - 0.15))                               0.15 <  s <= 0.5
         = m * (0.425 + (0.25 - (1 - s)^2) / (2*0.5))             0.5  <  s <  1
         = 1                                                      s >= 1

Carbs on board = grams * (1 - F). Loop's default absorption time is 3 h; it also delays the start by
10 min by default (``delay_min``; 0 here unless asked for). Reference: LoopKit CarbMath.swift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_ABSORPTION_MIN = 180.0
RISE_END = 0.15
HOLD_END = 0.5
PEAK_RATE = 1.0 / (RISE_END / 2 + (HOLD_END - RISE_END) + (1 - HOLD_END) / 2)


def absorbed_fraction(t_min: ArrayLike, absorption_min: float = DEFAULT_ABSORPTION_MIN) -> NDArray[np.float64]:
    """Fraction of an entry absorbed ``t_min`` after it (0 before, 1 after ``absorption_min``)."""
    if not absorption_min > 0:
        raise ValueError(f"absorption time must be > 0 min, got {absorption_min!r}")
    s = np.clip(np.asarray(t_min, dtype=float) / absorption_min, 0.0, 1.0)
    rise = PEAK_RATE * s**2 / (2 * RISE_END)
    hold = PEAK_RATE * (RISE_END / 2 + (s - RISE_END))
    fall_start = RISE_END / 2 + (HOLD_END - RISE_END)
    fall = PEAK_RATE * (fall_start + ((1 - HOLD_END) ** 2 - (1 - s) ** 2) / (2 * (1 - HOLD_END)))
    value = np.where(s <= RISE_END, rise, np.where(s <= HOLD_END, hold, fall))
    return np.clip(value, 0.0, 1.0)


def absorption_rate_per_min(t_min: ArrayLike, absorption_min: float = DEFAULT_ABSORPTION_MIN) -> NDArray[np.float64]:
    """Fraction of an entry absorbed per minute, ``t_min`` after it; the derivative of absorbed_fraction."""
    if not absorption_min > 0:
        raise ValueError(f"absorption time must be > 0 min, got {absorption_min!r}")
    s = np.asarray(t_min, dtype=float) / absorption_min
    rate = np.where(
        s < RISE_END,
        PEAK_RATE * s / RISE_END,
        np.where(s <= HOLD_END, PEAK_RATE, PEAK_RATE * (1 - s) / (1 - HOLD_END)),
    )
    return np.where((s >= 0) & (s <= 1), rate, 0.0) / absorption_min


@dataclass(frozen=True)
class CarbEntry:
    """Carbohydrates announced at ``at_min``, expected to absorb over ``absorption_min``."""

    at_min: float
    grams: float
    absorption_min: float = DEFAULT_ABSORPTION_MIN

    def __post_init__(self) -> None:
        if not (math.isfinite(self.at_min) and math.isfinite(self.grams)) or self.grams < 0:
            raise ValueError(f"carb entry needs a finite time and grams >= 0: {self!r}")
        if not (math.isfinite(self.absorption_min) and self.absorption_min > 0):
            raise ValueError(f"carb absorption time must be > 0 min: {self!r}")


def carbs_on_board_g(entries: Sequence[CarbEntry], at_min: ArrayLike, delay_min: float = 0.0) -> NDArray[np.float64]:
    """Carbs on board (g) at each of ``at_min``; entries in the future of a time are not counted."""
    at = np.atleast_1d(np.asarray(at_min, dtype=float))
    total = np.zeros(at.shape)
    for entry in entries:
        since = at - entry.at_min
        remaining = entry.grams * (1 - absorbed_fraction(since - delay_min, entry.absorption_min))
        total += np.where(since >= 0, remaining, 0.0)
    return total


def carbs_absorbed_g(entries: Sequence[CarbEntry], at_min: ArrayLike, delay_min: float = 0.0) -> NDArray[np.float64]:
    """Cumulative grams absorbed by each of ``at_min`` from all entries."""
    at = np.atleast_1d(np.asarray(at_min, dtype=float))
    total = np.zeros(at.shape)
    for entry in entries:
        total += entry.grams * absorbed_fraction(at - entry.at_min - delay_min, entry.absorption_min)
    return total


def carb_absorption_g_per_min(
    entries: Sequence[CarbEntry], at_min: ArrayLike, delay_min: float = 0.0
) -> NDArray[np.float64]:
    """Total absorption rate (g/min) at each of ``at_min``."""
    at = np.atleast_1d(np.asarray(at_min, dtype=float))
    total = np.zeros(at.shape)
    for entry in entries:
        total += entry.grams * absorption_rate_per_min(at - entry.at_min - delay_min, entry.absorption_min)
    return total
